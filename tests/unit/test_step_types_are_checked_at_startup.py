"""Step types come from plugins and are checked when Medic starts: a name two plugins offer, or a
``params_schema`` that is not a JSON Schema, stops the start with a message naming the plugin."""

from __future__ import annotations

from typing import Any

import pytest

from medic_core.observability.metrics import Metrics
from medic_core.playbooks import StepTypeError, StepTypes
from medic_core.plugins import hookimpl
from medic_core.plugins.manager import PluginManager


class Kind:
    def __init__(self, name: str, schema: Any = None) -> None:
        self.name = name
        self.description = f"the {name} step"
        self.params_schema = schema if schema is not None else {"type": "object"}


class Offers:
    def __init__(self, *kinds: Kind) -> None:
        self.kinds = list(kinds)

    @hookimpl
    def medic_step_types(self) -> list[Any]:
        return self.kinds


def loaded(*plugins: tuple[str, object], entry_points: bool = False) -> StepTypes:
    manager = PluginManager(Metrics(), entry_points=entry_points, plugins=plugins)
    return StepTypes(manager.step_types(None))


def test_the_built_in_step_types_load_through_their_entry_point() -> None:
    types = loaded(entry_points=True)
    assert types.names() == ["approval", "condition", "notify", "script", "wait", "webhook"]
    assert {t.plugin for t in types} == {"steps"}
    assert all(t.description for t in types)


def test_a_name_offered_by_two_plugins_stops_the_start_naming_both() -> None:
    with pytest.raises(StepTypeError) as raised:
        loaded(entry_points=True, *[("acme", Offers(Kind("webhook")))])
    message = str(raised.value)
    assert "step type 'webhook' is offered by two plugins" in message
    assert "'steps'" in message and "'acme'" in message


def test_an_invalid_params_schema_stops_the_start_naming_the_plugin() -> None:
    with pytest.raises(StepTypeError) as raised:
        loaded(("acme", Offers(Kind("reboot", {"type": "objekt"}))))
    message = str(raised.value)
    assert "step type 'reboot' of plugin 'acme' has an invalid params_schema" in message
    assert "Draft 2020-12" in message


@pytest.mark.parametrize(
    ("kind", "said"),
    [
        (Kind("Bad Name"), "offers a step type named 'Bad Name'"),
        (Kind("ok", ["not", "a", "dict"]), "params_schema must be a JSON Schema object"),
    ],
)
def test_a_malformed_step_type_is_refused(kind: Kind, said: str) -> None:
    with pytest.raises(StepTypeError, match=said):
        loaded(("acme", Offers(kind)))


def test_a_step_type_without_a_description_is_refused() -> None:
    kind = Kind("quiet")
    kind.description = " "
    with pytest.raises(StepTypeError, match="has no description"):
        loaded(("acme", Offers(kind)))
