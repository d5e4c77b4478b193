"""A playbook definition is checked whole: every error is reported, each with its path.

The validator is the API's and the CLI's (``medic_core.playbooks.definition.Validator``) over the
built-in step types, loaded through their entry point as any plugin's are. Also the limits and
the attacks of the threat model (docs/playbooks.md): size, step count, YAML aliases (billion
laughs), templates reaching for Python's insides.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from medic_core.errors import PayloadTooLarge
from medic_core.observability.metrics import Metrics
from medic_core.playbooks import InvalidPlaybook, StepTypes, Validator
from medic_core.playbooks.definition import UnreadablePlaybook
from medic_core.plugins.manager import PluginManager

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "playbooks"
GOOD: dict[str, Any] = {
    "slug": "restart-web",
    "variables": {"unit": {"type": "string", "default": "web.service"}},
    "steps": [
        {
            "name": "restart",
            "type": "script",
            "params": {"agents": {"labels": {"role": "web"}}, "script": "restart-service"},
        },
        {"name": "settle", "type": "wait", "params": {"seconds": 30}},
    ],
}


def built_ins(metrics: Metrics | None = None, **limits: int) -> Validator:
    manager = PluginManager(Metrics())
    step_types = StepTypes(manager.step_types(None))
    return Validator(
        step_types,
        max_bytes=limits.get("max_bytes", 262_144),
        max_steps=limits.get("max_steps", 100),
        metrics=metrics or Metrics(),
    )


def refused(validator: Validator, document: dict[str, Any]) -> dict[str, str]:
    """``{field: message}`` of every error ``document`` has."""
    with pytest.raises(InvalidPlaybook) as raised:
        validator.check(document)
    return {p.field: p.message for p in raised.value.problems}


def changed(**steps: Any) -> dict[str, Any]:
    document = copy.deepcopy(GOOD)
    for index, values in steps.items():
        document["steps"][int(index.removeprefix("s"))].update(values)
    return document


def test_a_valid_definition_passes_and_is_left_as_written() -> None:
    document = copy.deepcopy(GOOD)
    built_ins().check(document)
    assert document == GOOD  # no defaults filled in: what is saved is what was written


def test_every_example_playbook_is_valid() -> None:
    validator = built_ins()
    files = sorted(p for p in EXAMPLES.iterdir() if p.suffix in (".yaml", ".yml", ".json"))
    assert len(files) >= 3
    for path in files:
        fmt = "json" if path.suffix == ".json" else "yaml"
        validator.read(path.read_bytes(), fmt)  # raises with every error if not


def test_all_errors_come_at_once_with_their_paths() -> None:
    document = copy.deepcopy(GOOD)
    document["steps"] += [
        {"name": "restart", "type": "wait", "params": {"seconds": 5}},  # a duplicate name
        {"name": "poke", "type": "nope", "params": {}},  # an unknown type
        {"name": "hook", "type": "webhook", "params": {"url": "ftp://x"}, "on_failure": "goto z"},
    ]
    document["variables"]["retries"] = {"type": "integer", "default": "three"}
    errors = refused(built_ins(), document)
    assert set(errors) == {
        "steps[2].name",
        "steps[3].type",
        "steps[4].params.url",
        "steps[4].on_failure",
        "variables.retries.default",
    }
    assert "already the name of steps[0]" in errors["steps[2].name"]
    loaded = "approval, condition, notify, script, wait, webhook"
    assert errors["steps[3].type"] == f"steps[3].type must be one of {loaded}, not 'nope'"
    assert "no step 'z' to go to" in errors["steps[4].on_failure"]
    assert "not of the variable's type, integer" in errors["variables.retries.default"]


def test_a_steps_params_are_checked_by_its_types_schema() -> None:
    errors = refused(built_ins(), changed(s1={"params": {"seconds": 0, "extra": True}}))
    assert errors == {
        "steps[1].params.extra": "unknown field(s) in params of a wait step: extra; "
        "allowed: seconds, until",
        "steps[1].params.seconds": "steps[1].params.seconds must be between 1 and 604800",
    }


def test_a_goto_to_itself_is_refused() -> None:
    errors = refused(built_ins(), changed(s1={"on_failure": "goto settle"}))
    assert "cannot go to itself" in errors["steps[1].on_failure"]


def test_a_required_variable_may_not_have_a_default() -> None:
    document = copy.deepcopy(GOOD)
    document["variables"]["unit"]["required"] = True
    assert "required variable has no default" in refused(built_ins(), document)[
        "variables.unit.default"
    ]


def test_a_variable_type_that_is_not_a_name_is_one_schema_error_not_a_crash() -> None:
    # Found by the fuzzing run: an unhashable type ({}) reached a dict lookup (500).
    document = copy.deepcopy(GOOD)
    document["variables"] = {"flag": {"type": {}, "default": False}}
    errors = refused(built_ins(), document)
    assert list(errors) == ["variables.flag.type"]


@pytest.mark.parametrize(
    ("when", "message"),
    [("vars.x ==", "not a valid expression"), ("a }} {{ b", "not a valid expression")],
)
def test_a_when_that_does_not_compile_is_refused(when: str, message: str) -> None:
    assert message in refused(built_ins(), changed(s1={"when": when}))["steps[1].when"]


def test_a_template_that_does_not_compile_is_refused_with_its_line() -> None:
    params = {"agents": {"ids": ["a1"]}, "script": "x", "args": ["ok", "{% if %}"]}
    errors = refused(built_ins(), changed(s0={"params": params}))
    assert "steps[0].params.args[1] is not a valid template (line 1)" in errors[
        "steps[0].params.args[1]"
    ]


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ vars['__class__'] }}",
        "{{ vars | attr('__globals__') }}",
        "{% for c in ().__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    ],
)
def test_a_template_reaching_for_pythons_insides_is_refused_when_saved(template: str) -> None:
    params = {"agents": {"ids": ["a1"]}, "script": "x", "args": [template]}
    errors = refused(built_ins(), changed(s0={"params": params}))
    assert "names starting with '_'" in errors["steps[0].params.args[0]"]
    # The sandbox alone compiles such a template; only rendering it is refused (SecurityError,
    # or an undefined value where the lookup has a fallback). Refusing at save time is the
    # point of the check above (docs/playbooks.md: the real behaviour).
    sandbox = SandboxedEnvironment()
    sandbox.compile(template)
    try:
        shown = sandbox.from_string(template).render(vars="")
    except SecurityError:
        shown = ""
    assert shown == ""


def test_a_definition_over_the_byte_limit_is_413_and_counted() -> None:
    metrics = Metrics()
    validator = built_ins(metrics, max_bytes=2048)
    text = yaml.safe_dump({**GOOD, "description": "x" * 3000})
    with pytest.raises(PayloadTooLarge) as raised:
        validator.read(text, "yaml")
    assert "at most 2048 are accepted (MEDIC_PLAYBOOK_MAX_BYTES)" in raised.value.message
    assert metrics.playbooks_refused.labels("too_large")._value.get() == 1


def test_too_many_steps_is_one_error_and_counted() -> None:
    metrics = Metrics()
    document = copy.deepcopy(GOOD)
    document["steps"] = [
        {"name": f"s{i}", "type": "wait", "params": {"seconds": 1}} for i in range(6)
    ]
    errors = refused(built_ins(metrics, max_steps=5), document)
    assert errors == {"steps": "steps must hold 1 to 5 item(s), got 6"}
    assert metrics.playbooks_refused.labels("too_many_steps")._value.get() == 1


def test_a_billion_laughs_document_is_refused_at_its_first_alias() -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    bomb = "\n".join(lines) + "\nslug: boom\nsteps: *a9\n"
    assert len(bomb) < 1000  # small text; 9**10 values once expanded
    metrics = Metrics()
    with pytest.raises(UnreadablePlaybook) as raised:
        built_ins(metrics).read(bomb, "yaml")
    assert "YAML aliases (*a0) are not accepted" in raised.value.message
    assert "line 2" in raised.value.message
    assert metrics.playbooks_refused.labels("unreadable")._value.get() == 1


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("- a\n- b\n", "a mapping"),
        ("", "an empty document"),
        ("slug: [unclosed\n", "not valid YAML (line 2"),
        ("slug: x\n1: one\n", "the key 1 is not a string"),
        ("slug: x\nsteps: !!binary aGVsbG8=\n", "a YAML bytes is not a JSON value"),
        ("slug: x\nsteps: .nan\n", "steps: nan is not a number JSON can hold"),
        (f"slug: x\nsteps: {2**64}\n", f"steps: the integer {2**64} is beyond 64 bits"),
        (f"slug: x\nsteps: [{-(2**63) - 1}]\n", "steps[0]: the integer"),
        ("[" * 5000, "nested too deeply"),
    ],
)
def test_what_is_not_a_json_document_is_refused_clearly(text: str, said: str) -> None:
    with pytest.raises(UnreadablePlaybook) as raised:
        built_ins().read(text, "yaml")
    assert said in raised.value.message


def test_bytes_that_are_not_utf8_are_said_to_be_so_in_either_format() -> None:
    with pytest.raises(UnreadablePlaybook) as raised:
        built_ins().read(b"slug: caf\xe9\n", "yaml")
    assert raised.value.message == "the playbook definition is not UTF-8 text (byte 9)"
    with pytest.raises(UnreadablePlaybook, match="not valid JSON"):
        built_ins().read(b'{"slug": "caf\xe9"}', "json")


def test_dates_stay_strings_and_nul_is_refused() -> None:
    text = yaml.safe_dump(GOOD) + "description: 2026-03-01\n"
    assert built_ins().read(text, "yaml")["description"] == "2026-03-01"
    with pytest.raises(UnreadablePlaybook, match="NUL"):
        built_ins().read('{"slug": "a\\u0000b", "steps": []}', "json")


def test_a_template_nested_too_deeply_is_an_error_not_a_crash() -> None:
    deep = "{{ " + "(" * 600 + "1" + ")" * 600 + " }}"
    params = {"agents": {"ids": ["a1"]}, "script": "x", "args": [deep]}
    document = changed(s0={"params": params}, s1={"when": "-" * 1000 + "1"})
    errors = refused(built_ins(), document)
    assert errors["steps[0].params.args[0]"] == "steps[0].params.args[0] is nested too deeply"
    assert errors["steps[1].when"] == "steps[1].when is nested too deeply"
