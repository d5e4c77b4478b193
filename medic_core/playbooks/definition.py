"""Reading and checking a playbook definition: text -> document -> every error, with its path.

Three stages, each bounded:

1. ``parse``: the text (YAML or JSON) is at most ``max_bytes`` long, then read with PyYAML's
   ``safe_load`` rules (no Python objects) or orjson. YAML anchors and aliases are refused: an
   alias shares a node, so a few hundred bytes can stand for a billion values once the
   document is walked (the "billion laughs"); a byte limit alone cannot see that. Dates stay
   strings (a playbook is JSON: what is saved is what ``GET`` returns), and a value JSON cannot
   hold (a binary, a set, a non-string key, NaN) is refused with its path.
2. The composed JSON Schema (``schema.compose``): every violation, not only the first, each
   worded by ``medic_core.schema_errors`` with a path such as ``steps[2].params.url``.
3. The rules a schema cannot say: unique step names, ``goto`` targets that exist, variable
   defaults of the variable's type, and templates that compile.

Templates (``when`` and every string in a step's ``params`` holding ``{{``, ``{%`` or ``{#``)
are compiled by Jinja's ``SandboxedEnvironment`` and never rendered here. Compiling does not run
anything; the sandbox itself acts only when a template is rendered (``''.__class__`` compiles,
and rendering it raises ``SecurityError``). So that such a template is refused when it is saved,
not when it runs at 3 a.m., any reach for a name starting with ``_`` (``x.__class__``,
``x['_y']``, ``x|attr('_y')``) is refused here as well.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import orjson
import yaml
from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.parser import Parser
from jinja2.sandbox import SandboxedEnvironment
from jsonschema import Draft202012Validator
from jsonschema.exceptions import relevance

from medic_core.errors import PayloadTooLarge, ValidationError
from medic_core.observability.metrics import Metrics
from medic_core.playbooks.schema import compose
from medic_core.playbooks.steptypes import StepTypes
from medic_core.schema_errors import FORMATS, explain, field_path
from medic_core.validation import quote

Format = Literal["yaml", "json"]
#: Most errors one answer lists (a document of 100 broken steps still gets a readable answer).
MAX_ERRORS = 50
_TEMPLATE_MARK = re.compile(r"{{|{%|{#")
_GOTO = "goto "


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a definition: where (``steps[2].params.url``; empty: the whole
    document) and what."""

    field: str
    message: str

    def document(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class InvalidPlaybook(ValidationError):
    """A definition that breaks the schema or a rule: ``problems`` lists every error found.

    The message and ``field`` are the most relevant schema error's -- exactly what a request body
    breaking the same schema would get -- and the problem document carries ``errors``, all of them.
    """

    def __init__(self, problems: list[Problem], headline: Problem | None = None) -> None:
        first = headline or problems[0]
        shown = problems[:MAX_ERRORS]
        more = len(problems) - len(shown)
        super().__init__(
            first.message,
            field=first.field or None,
            errors=[p.document() for p in shown],
            **({"errors_not_shown": more} if more else {}),
        )
        self.problems = problems


class UnreadablePlaybook(ValidationError):
    """The text is not a YAML or JSON document Medic accepts."""


class _Loader(yaml.SafeLoader):
    """``safe_load``'s rules, with dates left as strings and aliases refused."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise UnreadablePlaybook(
                f"YAML aliases (*{event.anchor}) are not accepted in a playbook (line "
                f"{event.start_mark.line + 1}): write the value out; aliases let a small "
                "document stand for a huge one"
            )
        return super().compose_node(parent, index)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def parse(text: bytes | str, fmt: Format, *, max_bytes: int) -> dict[str, Any]:
    """The document in ``text``; ``PayloadTooLarge`` past ``max_bytes``, ``UnreadablePlaybook``
    when it is not a YAML/JSON object of JSON values."""
    raw = text.encode() if isinstance(text, str) else text
    if len(raw) > max_bytes:
        raise PayloadTooLarge(
            f"the playbook definition is {len(raw)} bytes; at most {max_bytes} are accepted "
            "(MEDIC_PLAYBOOK_MAX_BYTES): split it into several playbooks"
        )
    try:
        if fmt == "json":
            data = orjson.loads(raw)
        else:
            data = yaml.load(raw.decode("utf-8"), Loader=_Loader)  # noqa: S506 (a SafeLoader)
    except UnreadablePlaybook:
        raise
    except RecursionError:
        raise UnreadablePlaybook("the playbook definition is nested too deeply") from None
    except UnicodeDecodeError as exc:
        raise UnreadablePlaybook(
            f"the playbook definition is not UTF-8 text (byte {exc.start})"
        ) from None
    except orjson.JSONDecodeError as exc:
        raise UnreadablePlaybook(f"the playbook definition is not valid JSON: {exc}") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" (line {where.line + 1}, column {where.column + 1})" if where else ""
        what = getattr(exc, "problem", None) or type(exc).__name__
        raise UnreadablePlaybook(f"the playbook definition is not valid YAML{at}: {what}") from None
    if not isinstance(data, dict):
        raise UnreadablePlaybook(
            "a playbook definition is a mapping (slug: ..., steps: [...]), not "
            + ("an empty document" if data is None else f"a {type(data).__name__}")
        )
    _json_values(data)
    return data


class _Dumper(yaml.SafeDumper):
    """Never writes anchors: what Medic writes, Medic (which refuses aliases) can read back."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_yaml(document: dict[str, Any]) -> str:
    """``document`` as block YAML, keys in their order (``medic playbook show``)."""
    return yaml.dump(
        document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False
    )


def _fits(value: int) -> bool:
    """Whether an integer fits the JSON encoder of the answers (signed or unsigned 64 bits)."""
    return -(2**63) <= value < 2**64


def _json_values(document: dict[str, Any]) -> None:
    """Refuse what JSON cannot hold, naming where it is (iteratively: depth is bounded by the
    parser, not by Python's stack here)."""
    stack: list[tuple[Any, list[str | int]]] = [(document, [])]
    while stack:
        value, path = stack.pop()
        where = field_path(path) or "the document"
        if isinstance(value, dict):
            for key, child in value.items():
                if not isinstance(key, str) or "\x00" in key:
                    raise UnreadablePlaybook(
                        f"{where}: the key {quote(key)} is not a string without NUL characters"
                    )
                stack.append((child, [*path, key]))
        elif isinstance(value, list):
            stack.extend((child, [*path, index]) for index, child in enumerate(value))
        elif isinstance(value, float) and not math.isfinite(value):
            raise UnreadablePlaybook(f"{where}: {value} is not a number JSON can hold")
        elif isinstance(value, int) and not isinstance(value, bool) and not _fits(value):
            raise UnreadablePlaybook(
                f"{where}: the integer {value} is beyond 64 bits, which JSON readers (and Medic's "
                "answers) cannot hold exactly: write it as a string"
            )
        elif isinstance(value, str) and "\x00" in value:
            raise UnreadablePlaybook(f"{where} must not contain NUL (\\u0000) characters")
        elif value is not None and not isinstance(value, str | int | float | bool):
            raise UnreadablePlaybook(
                f"{where}: a YAML {type(value).__name__} is not a JSON value: use a string"
            )


class Validator:
    """Checks definitions against the schema composed from ``step_types`` and the rules."""

    def __init__(
        self, step_types: StepTypes, *, max_bytes: int, max_steps: int, metrics: Metrics
    ) -> None:
        if not 1024 <= max_bytes <= 16 * 1024 * 1024:
            raise ValueError("MEDIC_PLAYBOOK_MAX_BYTES must be between 1024 and 16777216")
        if not 1 <= max_steps <= 1000:
            raise ValueError("MEDIC_PLAYBOOK_MAX_STEPS must be between 1 and 1000")
        self.step_types = step_types
        self.max_bytes = max_bytes
        self.max_steps = max_steps
        self.schema = compose(step_types, max_steps=max_steps)
        self._validator = Draft202012Validator(self.schema, format_checker=FORMATS)
        self._metrics = metrics
        # Compiling only: nothing is rendered here (the engine renders, in its own sandbox).
        self._jinja = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)

    def parse(self, text: bytes | str, fmt: Format) -> dict[str, Any]:
        try:
            return parse(text, fmt, max_bytes=self.max_bytes)
        except PayloadTooLarge:
            self._metrics.playbooks_refused.labels("too_large").inc()
            raise
        except UnreadablePlaybook:
            self._metrics.playbooks_refused.labels("unreadable").inc()
            raise

    def check(self, document: dict[str, Any]) -> None:
        """Raise ``InvalidPlaybook`` listing every error of ``document``."""
        errors = list(self._validator.iter_errors(document))
        problems = [_problem(explain(error)) for error in _ordered(errors)]
        headline = _problem(explain(max(errors, key=relevance))) if errors else None
        problems += list(self._rules(document))
        if problems:
            steps = document.get("steps")
            too_many = isinstance(steps, list) and len(steps) > self.max_steps
            self._metrics.playbooks_refused.labels(
                "too_many_steps" if too_many else "invalid"
            ).inc()
            raise InvalidPlaybook(problems, headline)

    def refused(self, reason: str) -> None:
        """Count a definition refused after ``check`` (a step type's review)."""
        self._metrics.playbooks_refused.labels(reason).inc()

    def read(self, text: bytes | str, fmt: Format) -> dict[str, Any]:
        """``parse`` then ``check``: the valid document in ``text``."""
        document = self.parse(text, fmt)
        self.check(document)
        return document

    # -- the rules a schema cannot say ---------------------------------------------------------

    def _rules(self, document: dict[str, Any]) -> Iterator[Problem]:
        variables = document.get("variables")
        if isinstance(variables, dict):
            for name, variable in variables.items():
                yield from _variable(name, variable)
        steps = document.get("steps")
        if not isinstance(steps, list):
            return
        steps = steps[: self.max_steps + 1]  # a refused count is reported once, by the schema
        names: dict[str, int] = {}
        for index, step in enumerate(steps):
            if not isinstance(step, dict):
                continue
            name = step.get("name")
            if isinstance(name, str):
                if name in names:
                    yield Problem(
                        f"steps[{index}].name",
                        f"steps[{index}].name {quote(name)} is already the name of "
                        f"steps[{names[name]}]: step names must be unique",
                    )
                else:
                    names[name] = index
        for index, step in enumerate(steps):
            if isinstance(step, dict):
                yield from self._step(index, step, names)
        approval = document.get("approval")
        if isinstance(approval, dict):
            yield from self._templates(approval.get("message"), ["approval", "message"])

    def _step(self, index: int, step: dict[str, Any], names: dict[str, int]) -> Iterator[Problem]:
        where = f"steps[{index}]"
        on_failure = step.get("on_failure")
        if isinstance(on_failure, str) and on_failure.startswith(_GOTO):
            target = on_failure[len(_GOTO) :]
            if target == step.get("name"):
                yield Problem(
                    f"{where}.on_failure",
                    f"{where}.on_failure: a step cannot go to itself on failure; use retry "
                    "to try it again",
                )
            elif target not in names:
                known = ", ".join(names) or "none"
                yield Problem(
                    f"{where}.on_failure",
                    f"{where}.on_failure: there is no step {quote(target)} to go to "
                    f"(the steps are {known})",
                )
        when = step.get("when")
        if isinstance(when, str):
            yield from self._expression(when, f"{where}.when")
        yield from self._templates(step.get("params"), [*_parts(where), "params"])
        approval = step.get("approval")
        if isinstance(approval, dict):
            yield from self._templates(
                approval.get("message"), [*_parts(where), "approval", "message"]
            )

    def _expression(self, source: str, where: str) -> Iterator[Problem]:
        # What ``compile_expression`` does, keeping the tree to look into.
        try:
            parser = Parser(self._jinja, source, state="variable")
            tree = parser.parse_expression()
            if not parser.stream.eos:
                parser.fail("there is more after the expression")
        except TemplateSyntaxError as exc:
            yield Problem(where, f"{where} is not a valid expression: {exc.message}")
            return
        except RecursionError:  # Jinja's parser and compiler recurse per nesting level
            yield Problem(where, f"{where} is nested too deeply")
            return
        yield from _unsafe(tree, where)

    def _templates(self, value: Any, path: list[str | int]) -> Iterator[Problem]:
        stack: list[tuple[Any, list[str | int]]] = [(value, path)]
        while stack:
            item, at = stack.pop()
            if isinstance(item, dict):
                stack.extend((child, [*at, key]) for key, child in item.items())
            elif isinstance(item, list):
                stack.extend((child, [*at, i]) for i, child in enumerate(item))
            elif isinstance(item, str) and _TEMPLATE_MARK.search(item):
                where = field_path(at)
                try:
                    tree = self._jinja.parse(item)
                    self._jinja.compile(item)
                except TemplateSyntaxError as exc:
                    yield Problem(
                        where, f"{where} is not a valid template (line {exc.lineno}): {exc.message}"
                    )
                    continue
                except RecursionError:
                    yield Problem(where, f"{where} is nested too deeply")
                    continue
                yield from _unsafe(tree, where)


def _parts(where: str) -> list[str | int]:
    """``steps[3]`` as path parts."""
    name, _, rest = where.partition("[")
    return [name, int(rest.rstrip("]"))]


def _unsafe(tree: nodes.Node, where: str) -> Iterator[Problem]:
    reached: list[str] = [node.attr for node in tree.find_all(nodes.Getattr)]
    for item in tree.find_all(nodes.Getitem):
        if isinstance(item.arg, nodes.Const) and isinstance(item.arg.value, str):
            reached.append(item.arg.value)
    for call in tree.find_all(nodes.Filter):
        if call.name == "attr":
            reached += [a.value for a in call.args if isinstance(a, nodes.Const)]
    hidden = sorted({name for name in reached if isinstance(name, str) and name.startswith("_")})
    if hidden:
        yield Problem(
            where,
            f"{where} reaches for {', '.join(hidden)}: names starting with '_' are Python's "
            "insides, which templates may not use",
        )


def _variable(name: str, variable: Any) -> Iterator[Problem]:
    if not isinstance(variable, dict) or "default" not in variable:
        return
    where = f"variables.{name}.default"
    kind, default = variable.get("type"), variable["default"]
    fits = {
        "string": isinstance(default, str),
        "integer": isinstance(default, int) and not isinstance(default, bool),
        "number": isinstance(default, int | float) and not isinstance(default, bool),
        "boolean": isinstance(default, bool),
    }
    # A type that is not a string (``type: {}``) is the schema's error to report.
    if isinstance(kind, str) and kind in fits and not fits[kind]:
        yield Problem(where, f"{where} {quote(default)} is not of the variable's type, {kind}")
    if variable.get("required") is True:
        yield Problem(
            where,
            f"{where}: a required variable has no default (a run must give it); drop one",
        )


def _problem(error: ValidationError) -> Problem:
    return Problem(error.field or "", error.message)


def _ordered(errors: list[Any]) -> list[Any]:
    """Errors in document order (by path), so a list of them reads top to bottom."""
    return sorted(errors, key=lambda e: [(isinstance(p, str), p) for p in e.absolute_path])
