"""Request bodies checked against the route table's JSON Schema: the documented shape is the
enforced one.

Each route's ``body`` schema (``medic_core/server/http/schemas.py``) is what the OpenAPI document
shows and what ``BodySchema.check`` enforces before the handler runs, so the two cannot drift.
Handlers receive a body whose shape is known and keep only the rules a schema cannot express
(a service that must exist, a contradicting status/exit code, a time zone that must be known).

A schema violation becomes a 422 problem naming the field by its path (``expectation.period``,
``heartbeats[3].status``) with a message written for a person, built here from the validator's
error; an input value is quoted only through ``validation.quote`` (cut when long).

Speed: ``jsonschema`` takes ~14 µs to accept one heartbeat, a tenth of the ingest path's CPU. A
schema that uses only keywords whose meaning is the same in draft-07 and 2020-12 (``FAST``) is
also compiled by ``fastjsonschema`` (~1 µs): a body it accepts is accepted; anything it refuses
(or cannot judge) goes to ``jsonschema``, which alone decides and words the 422. So the fast path
can only ever skip work, never change a verdict, as long as it accepts nothing ``jsonschema``
refuses -- ``tests/unit/test_body_schema_fast_path.py`` checks exactly that on every route.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import fastjsonschema
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError as SchemaError
from jsonschema.exceptions import relevance

from medic_core.errors import ValidationError
from medic_core.validation import SLUG_RE, instant, quote

#: Formats the validator checks. ``date-time`` is parsed the way the domain parses instants (an
#: offset is required); ``uri`` stays an annotation: the domain's http(s) rule says more.
FORMATS = FormatChecker(formats=())


@FORMATS.checks("date-time", raises=ValidationError)
def _is_instant(value: object) -> bool:
    if isinstance(value, str):
        instant(value, "value")
    return True


#: How an error message names a body ("unknown field(s) in schedule update ..."): an OpenAPI
#: extension, not ``title``, which client generators take as the model's name.
NAME = "x-medic-name"
_KINDS = {
    "array": "a list",
    "object": "a JSON object",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}
_SLUG_RULE = (
    "use 1-100 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit "
    "(for example 'nightly-backup')"
)


#: Keywords that mean the same to fastjsonschema (draft-07) as to jsonschema (2020-12) here.
#: ``format`` (ours parses instants), ``oneOf`` and array-form ``items`` stay with jsonschema.
FAST = frozenset(
    {
        "type", "properties", "required", "additionalProperties", "enum", "const", "pattern",
        "minLength", "maxLength", "minimum", "maximum", "minItems", "maxItems", "maxProperties",
        "uniqueItems", "items", "description", "default", "examples", "title", NAME,
    }
)  # fmt: skip
_SUBSCHEMA_MAPS = ("properties",)
_SUBSCHEMAS = ("items", "additionalProperties")


def fast_eligible(schema: object) -> bool:
    """Whether every keyword of ``schema`` (and of its subschemas) is in ``FAST``."""
    if isinstance(schema, bool):
        return True
    if not isinstance(schema, Mapping) or not set(schema) <= FAST:
        return False
    for key in _SUBSCHEMA_MAPS:
        if not all(fast_eligible(sub) for sub in schema.get(key, {}).values()):
            return False
    return all(fast_eligible(schema[key]) for key in _SUBSCHEMAS if key in schema)


_ANNOTATIONS = frozenset({"description", "default", "examples", "title", NAME})


def _checks_only(schema: Any) -> Any:
    """``schema`` without annotations: fastjsonschema's code generator fails on a subschema that
    holds nothing but a description (the batch's ``items``)."""
    if not isinstance(schema, Mapping):
        return schema
    out = {k: v for k, v in schema.items() if k not in _ANNOTATIONS}
    if "properties" in out:
        out["properties"] = {k: _checks_only(v) for k, v in out["properties"].items()}
    for key in _SUBSCHEMAS:
        if key in out:
            out[key] = _checks_only(out[key])
    return out


def _fast_validator(schema: Mapping[str, Any]) -> Any:
    try:
        return fastjsonschema.compile(_checks_only(schema))
    except Exception:  # another shape its generator cannot take: jsonschema alone, as before
        return None


class BodySchema:
    """A compiled body schema; ``check`` raises the first violation as a field-named 422."""

    def __init__(self, schema: Mapping[str, Any], *, where: str = "the body") -> None:
        Draft202012Validator.check_schema(schema)  # a bad declaration fails at import, not later
        self.schema = schema
        self.where = where
        self._validator = Draft202012Validator(schema, format_checker=FORMATS)
        self._fast = _fast_validator(schema) if fast_eligible(schema) else None

    def fast_accepts(self, data: object) -> bool:
        """True when the fast path accepts ``data`` (False: refused, or no fast path)."""
        if self._fast is None:
            return False
        try:
            self._fast(data)
        except fastjsonschema.JsonSchemaException:
            return False
        return True

    def check(self, data: object, *, prefix: str = "") -> None:
        if self.fast_accepts(data):
            return
        # jsonschema's ranking (the shallowest, most specific error first), without its descent
        # into oneOf branches: ``_branch`` picks the branch the value was meant for.
        error = max(self._validator.iter_errors(data), key=relevance, default=None)
        if error is not None:
            raise _problem(error, prefix, self.where)


def field_path(parts: Iterable[str | int], prefix: str = "") -> str:
    out = prefix
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out and not out.endswith(".") else part
    return out


def _problem(error: SchemaError, prefix: str, where: str) -> ValidationError:
    error = _branch(error)
    field = field_path(error.absolute_path, prefix) or prefix.rstrip(".")
    name = field or where
    keyword, schema = str(error.validator), error.schema
    value: Any = error.instance
    wanted: Any = error.validator_value
    assert isinstance(schema, dict)
    if keyword == "required":
        missing = [key for key in wanted if key not in value]
        key = field_path([missing[0]], field + "." if field else prefix)
        about = schema.get("properties", {}).get(missing[0], {}).get("description")
        return ValidationError(f"{key} is required" + (f": {about}" if about else ""), field=key)
    if keyword == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        unknown = sorted(key for key in value if key not in allowed)
        return ValidationError(
            f"unknown field(s) in {schema.get(NAME, name)}: {', '.join(unknown)}; "
            f"allowed: {', '.join(allowed)}",
            field=field_path([unknown[0]], field + "." if field else prefix),
        )
    if keyword in ("pattern", "type") and schema.get("pattern") == SLUG_RE.pattern:
        return ValidationError(f"{name} {quote(value)} is not valid: {_SLUG_RULE}", field=name)
    return ValidationError(_message(keyword, schema, value, name), field=name or None)


def _message(keyword: str, schema: dict[str, Any], value: object, name: str) -> str:
    about = schema.get("description")
    if keyword == "type":
        kinds = schema["type"]
        allowed = [kinds] if isinstance(kinds, str) else list(kinds)
        said = f"{name} must be {' or '.join(_KINDS.get(kind, kind) for kind in allowed)}"
        return said + (f": {about}" if about else "")
    if keyword == "enum":
        choices = ", ".join("null" if c is None else str(c) for c in schema["enum"])
        return f"{name} must be one of {choices}, not {quote(value)}"
    if keyword == "const":
        return f"{name} must be {quote(schema['const'])}"
    if keyword in ("minimum", "maximum"):
        low, high = schema.get("minimum"), schema.get("maximum")
        if low is not None and high is not None:
            return f"{name} must be between {low} and {high}"
        if low is not None:
            return f"{name} must be at least {low}"
        return f"{name} must be at most {high}"
    if keyword == "minLength":
        if schema["minLength"] == 1:
            return f"{name} must not be empty"
        return f"{name} must be at least {schema['minLength']} characters"
    if keyword == "maxLength":
        return f"{name} is longer than {schema['maxLength']} characters"
    if keyword in ("minItems", "maxItems"):
        low, high = schema.get("minItems", 0), schema.get("maxItems")
        count = len(value) if isinstance(value, list) else "?"
        if high is None:
            wanted = f"at least {low}"
        else:
            wanted = f"{low} to {high}" if low else f"at most {high}"
        return f"{name} must hold {wanted} item(s), got {count}"
    if keyword == "maxProperties":
        return f"{name} holds at most {schema['maxProperties']} entries"
    if keyword == "pattern":
        rule = about or f"it must match {schema['pattern']}"
        return f"{name} {quote(value)} is not valid: {rule}"
    if keyword == "format" and schema.get("format") == "date-time":
        return f"{name} must be an ISO 8601 instant with an offset, e.g. '2026-03-01T02:00:00Z'"
    if keyword == "uniqueItems":
        return f"{name} must not repeat an item"
    if keyword in ("oneOf", "anyOf"):
        return f"{name} is not valid" + (f": {about}" if about else "")
    return f"{name} is not valid ({keyword})"


def _branch(error: SchemaError) -> SchemaError:
    """For a ``oneOf``/``anyOf`` failure, the error of the branch the value was meant for.

    A nullable value (``oneOf: [X, {"type": "null"}]``) reports X's error; a tagged union
    (``expectation``: branches told apart by a ``const`` such as ``kind``) reports the error of
    the branch whose tag the value carries, or a clear "must be one of" for an unknown tag.
    """
    while error.validator in ("oneOf", "anyOf") and error.context:
        branches: Any = error.validator_value
        value: Any = error.instance
        chosen = _chosen_branch(branches, value)
        if chosen is None:
            tag = _tag(branches)
            if tag is not None and isinstance(value, dict):
                choices = [b["properties"][tag]["const"] for b in branches]
                key = field_path([*error.absolute_path, tag])
                if tag not in value:
                    return SchemaError(
                        "required",
                        validator="required",
                        validator_value=[tag],
                        instance=value,
                        schema={},
                        path=error.absolute_path,
                    )
                return SchemaError(
                    f"{key} must be one of {', '.join(choices)}",
                    validator="enum",
                    validator_value=choices,
                    instance=value.get(tag),
                    schema={"enum": choices},
                    path=[*error.absolute_path, tag],
                )
            return error
        inner = [e for e in error.context if e.relative_schema_path[0] == chosen]
        if not inner:
            return error
        error = max(inner, key=relevance)
    return error


def _chosen_branch(branches: list[dict[str, Any]], value: object) -> int | None:
    non_null = [i for i, b in enumerate(branches) if b.get("type") != "null"]
    if value is not None and len(non_null) == 1:
        return non_null[0]
    tag = _tag(branches)
    if tag is not None and isinstance(value, dict):
        for index, branch in enumerate(branches):
            if value.get(tag) == branch["properties"][tag]["const"]:
                return index
    if isinstance(value, dict):
        # Branches told apart by the key they require (a selector: all, services, tags, team).
        keyed = [i for i, b in enumerate(branches) if set(b.get("required", ())) & set(value)]
        if len(keyed) == 1:
            return keyed[0]
    return None


def _tag(branches: list[dict[str, Any]]) -> str | None:
    """The property every branch fixes with a ``const`` (``kind``), if there is one."""
    common: set[str] | None = None
    for branch in branches:
        consts = {
            key
            for key, sub in branch.get("properties", {}).items()
            if isinstance(sub, dict) and "const" in sub
        }
        common = consts if common is None else common & consts
    return sorted(common)[0] if common else None
