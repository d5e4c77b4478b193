"""How a JSON Schema violation reads: a 422 naming the field by its path, worded for a person.

One wording for every place Medic checks a document against a JSON Schema: request bodies
(``server/http/bodies.py``, before a handler runs) and documents the domain checks itself
(playbook definitions, ``playbooks/definition.py``, which report every violation at once). So
the same mistake reads the same wherever it is made. An input value is quoted only through
``validation.quote`` (cut when long).

``explain(error)`` words one ``jsonschema`` error (``field_path`` names where it is:
``expectation.period``, ``steps[2].params.url``); ``FORMATS`` is the format checker every
validator uses; ``NAME`` (``x-medic-name``) is how a schema says what its document is called
in messages ("unknown field(s) in step ...").
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from jsonschema import FormatChecker
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


def field_path(parts: Iterable[str | int], prefix: str = "") -> str:
    out = prefix
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out and not out.endswith(".") else part
    return out


def explain(error: SchemaError, prefix: str = "", where: str = "the body") -> ValidationError:
    """``error`` (one of jsonschema's) as a 422 naming the field by its path, for a person."""
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
