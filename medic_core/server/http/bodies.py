"""Request bodies checked against the route table's JSON Schema: the documented shape is the
enforced one.

Each route's ``body`` schema (``medic_core/server/http/schemas.py``) is what the OpenAPI document
shows and what ``BodySchema.check`` enforces before the handler runs, so the two cannot drift.
Handlers receive a body whose shape is known and keep only the rules a schema cannot express
(a service that must exist, a contradicting status/exit code, a time zone that must be known).

A schema violation becomes a 422 problem naming the field by its path (``expectation.period``,
``heartbeats[3].status``) with a message written for a person: ``medic_core.schema_errors``
words it (the domain words the documents it checks itself the same way).

Speed: ``jsonschema`` takes ~14 µs to accept one heartbeat, a tenth of the ingest path's CPU. A
schema that uses only keywords whose meaning is the same in draft-07 and 2020-12 (``FAST``) is
also compiled by ``fastjsonschema`` (~1 µs): a body it accepts is accepted; anything it refuses
(or cannot judge) goes to ``jsonschema``, which alone decides and words the 422. So the fast path
can only ever skip work, never change a verdict, as long as it accepts nothing ``jsonschema``
refuses -- ``tests/unit/test_body_schema_fast_path.py`` checks exactly that on every route.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import fastjsonschema
from jsonschema import Draft202012Validator
from jsonschema.exceptions import relevance

from medic_core.schema_errors import FORMATS, NAME, explain

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
            raise explain(error, prefix, self.where)
