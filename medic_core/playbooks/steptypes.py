"""The step types playbooks may use: every ``medic_step_types`` hook's offer, checked once.

A step type is a plugin's (Medic's own ``webhook``, ``wait``, ... are plugins too, in
``medic_plugins/steps/``). Two rules hold at start-up, each a ``StepTypeError`` that stops Medic
with a message naming the plugin(s): a name is offered by one plugin only (a playbook saved with
``type: X`` must mean one thing, so a clash is never resolved by load order), and each
``params_schema`` is a valid JSON Schema (Draft 2020-12), so a broken plugin is found when Medic
starts rather than when someone saves a playbook.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

#: A step type's name: what a step's ``type`` says.
NAME_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")


class StepTypeError(ValueError):
    """A step type Medic cannot load (a start-up error: the message names the plugin)."""


@dataclass(frozen=True, slots=True)
class LoadedStepType:
    name: str
    description: str
    params_schema: Mapping[str, Any]
    #: The plugin that offered it (its entry-point name).
    plugin: str
    implementation: object

    def document(self) -> dict[str, Any]:
        """How ``GET /api/v1/step-types`` shows it."""
        return {
            "name": self.name,
            "description": self.description,
            "plugin": self.plugin,
            "params_schema": dict(self.params_schema),
        }


class StepTypes:
    """The loaded step types, by name (sorted)."""

    def __init__(self, offered: Iterable[tuple[str, Any]]) -> None:
        found: dict[str, LoadedStepType] = {}
        for plugin, item in offered:
            loaded = _check(plugin, item)
            if loaded.name in found:
                first = found[loaded.name].plugin
                raise StepTypeError(
                    f"step type {loaded.name!r} is offered by two plugins, {first!r} and "
                    f"{plugin!r}: a step type's name must be unique; disable one of them "
                    "(MEDIC_DISABLED_PLUGINS) or rename its step type"
                )
            found[loaded.name] = loaded
        self._types = dict(sorted(found.items()))

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __iter__(self) -> Iterator[LoadedStepType]:
        return iter(self._types.values())

    def __len__(self) -> int:
        return len(self._types)

    def names(self) -> list[str]:
        return list(self._types)

    def get(self, name: str) -> LoadedStepType | None:
        return self._types.get(name)

    def documents(self) -> list[dict[str, Any]]:
        return [step_type.document() for step_type in self]


def _check(plugin: str, item: Any) -> LoadedStepType:
    name = getattr(item, "name", None)
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise StepTypeError(
            f"plugin {plugin!r} offers a step type named {name!r}: a step type's name is 1-64 "
            "lower-case letters, digits, '.', '_' or '-', starting with a letter"
        )
    description = getattr(item, "description", None)
    if not isinstance(description, str) or not description.strip():
        raise StepTypeError(
            f"step type {name!r} of plugin {plugin!r} has no description: give it one sentence "
            "for people"
        )
    schema = getattr(item, "params_schema", None)
    if not isinstance(schema, Mapping):
        raise StepTypeError(
            f"step type {name!r} of plugin {plugin!r}: params_schema must be a JSON Schema "
            "object (a dict)"
        )
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(part) for part in exc.absolute_path) or "(top)"
        raise StepTypeError(
            f"step type {name!r} of plugin {plugin!r} has an invalid params_schema at {where}: "
            f"{exc.message} (a JSON Schema, Draft 2020-12, is required)"
        ) from None
    return LoadedStepType(name, description.strip(), schema, plugin, item)
