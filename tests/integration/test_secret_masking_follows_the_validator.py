"""A secret is masked wherever JSON Schema can apply a ``writeOnly`` to it.

One plugin config schema per keyword that can hold a subschema (Draft 2020-12): the secret is
shown back masked (create, get, list, update), never in clear (responses, audit), a masked value
sent back keeps the stored one, and a schema error about the secret does not quote it. Masking
comes from the validator itself (``medic_core.notify.secrets``), so wherever it descends masking
follows; these cases are the proof, keyword by keyword.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from medic_core.audit import Actor
from medic_core.clock import FakeClock
from medic_core.errors import ValidationError
from medic_core.notify.secrets import SECRET_MASK, SecretFields
from medic_core.notify.targets import Targets
from medic_core.plugins.interfaces import Notification
from medic_core.store import Database
from medic_core.store.models import AuditEntry, NotificationTarget

ME = Actor("test")
SECRET = "s3cr3t-0123456789-value"
OTHER_SECRET = "other-s3cr3t-9876543210"
M = SECRET_MASK
HIDDEN = {"type": "string", "minLength": 16, "writeOnly": True}

# keyword -> (config_schema, a config holding SECRET, the config as shown back)
CASES: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {
    "properties": (
        {"properties": {"token": HIDDEN, "channel": {"type": "string"}}},
        {"token": SECRET, "channel": "#ops"},
        {"token": M, "channel": "#ops"},
    ),
    "patternProperties": (
        {"patternProperties": {"^key-": HIDDEN}},
        {"key-1": SECRET, "name": "signing"},
        {"key-1": M, "name": "signing"},
    ),
    "additionalProperties": (
        {"properties": {"channel": {"type": "string"}}, "additionalProperties": HIDDEN},
        {"channel": "#ops", "X-Api-Key": SECRET},
        {"channel": "#ops", "X-Api-Key": M},
    ),
    "items": (
        {"properties": {"keys": {"type": "array", "items": HIDDEN}}},
        {"keys": [SECRET, OTHER_SECRET]},
        {"keys": [M, M]},
    ),
    "prefixItems": (
        {"properties": {"login": {"prefixItems": [{"type": "string"}, HIDDEN]}}},
        {"login": ["medic", SECRET]},
        {"login": ["medic", M]},
    ),
    "contains": (
        {"properties": {"tokens": {"type": "array", "contains": HIDDEN}}},
        {"tokens": [SECRET]},
        {"tokens": [M]},
    ),
    "allOf": (
        {"properties": {"token": {"allOf": [{"type": "string"}, HIDDEN]}}},
        {"token": SECRET},
        {"token": M},
    ),
    "anyOf": (
        {"properties": {"token": {"anyOf": [{"type": "integer"}, HIDDEN]}}},
        {"token": SECRET},
        {"token": M},
    ),
    "oneOf": (
        {"properties": {"token": {"oneOf": [{"type": "integer"}, HIDDEN]}}},
        {"token": SECRET},
        {"token": M},
    ),
    "not": (
        {"properties": {"token": {"not": {"type": "integer", "writeOnly": True}}}},
        {"token": SECRET},
        {"token": M},
    ),
    "if": (
        {"if": {"properties": {"token": HIDDEN}}, "then": {"required": ["token"]}},
        {"token": SECRET},
        {"token": M},
    ),
    "then": (
        {
            "properties": {"auth": {"enum": ["token", "basic"]}},
            "if": {"properties": {"auth": {"const": "token"}}},
            "then": {"properties": {"token": HIDDEN}},
            "else": {"properties": {"password": HIDDEN}},
        },
        {"auth": "token", "token": SECRET},
        {"auth": "token", "token": M},
    ),
    "else": (
        {
            "properties": {"auth": {"enum": ["token", "basic"]}},
            "if": {"properties": {"auth": {"const": "token"}}},
            "then": {"properties": {"token": HIDDEN}},
            "else": {"properties": {"password": HIDDEN}},
        },
        {"auth": "basic", "password": SECRET},
        {"auth": "basic", "password": M},
    ),
    "dependentSchemas": (
        {"dependentSchemas": {"auth": {"properties": {"token": HIDDEN}}}},
        {"auth": "bearer", "token": SECRET},
        {"auth": "bearer", "token": M},
    ),
    "unevaluatedProperties": (
        {"properties": {"channel": {"type": "string"}}, "unevaluatedProperties": HIDDEN},
        {"channel": "#ops", "X-Api-Key": SECRET},
        {"channel": "#ops", "X-Api-Key": M},
    ),
    "unevaluatedItems": (
        {
            "properties": {
                "login": {"prefixItems": [{"type": "string"}], "unevaluatedItems": HIDDEN}
            }
        },
        {"login": ["medic", SECRET]},
        {"login": ["medic", M]},
    ),
    "$ref": (
        {"$defs": {"secret": HIDDEN}, "properties": {"token": {"$ref": "#/$defs/secret"}}},
        {"token": SECRET},
        {"token": M},
    ),
    "$dynamicRef": (
        {
            "$defs": {"secret": {"$dynamicAnchor": "secret", **HIDDEN}},
            "properties": {"token": {"$dynamicRef": "#secret"}},
        },
        {"token": SECRET},
        {"token": M},
    ),
    "propertyNames": (  # the names are secret: the object that holds them is masked whole
        {"properties": {"headers": {"type": "object", "propertyNames": {"writeOnly": True}}}},
        {"headers": {SECRET: "1"}, "channel": "#ops"},
        {"headers": M, "channel": "#ops"},
    ),
    "nested": (  # keywords inside keywords: every layer is the validator's
        {
            "properties": {
                "routes": {
                    "type": "array",
                    "items": {
                        "dependentSchemas": {
                            "auth": {"properties": {"creds": {"prefixItems": [True, HIDDEN]}}}
                        }
                    },
                }
            }
        },
        {"routes": [{"name": "a"}, {"auth": "x", "creds": ["medic", SECRET]}]},
        {"routes": [{"name": "a"}, {"auth": "x", "creds": ["medic", M]}]},
    ),
}


class Plugin:
    """A notifier whose configuration schema is one of the cases."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.name = "case"
        self.config_schema = schema

    async def send(self, notification: Notification) -> None:
        return None


@pytest.fixture
async def db(sqlite_template: Path, tmp_path: Path) -> AsyncIterator[Database]:
    path = tmp_path / "medic.db"
    shutil.copy(sqlite_template, path)
    database = Database(f"sqlite:///{path}")
    try:
        yield database
    finally:
        await database.close()


async def _stored(db: Database) -> tuple[dict[str, Any], str]:
    async with db.sessions() as session:
        target = await session.scalar(select(NotificationTarget))
        audit = (await session.scalars(select(AuditEntry))).all()
    assert target is not None
    return target.config, repr([(a.before, a.after) for a in audit])


@pytest.mark.parametrize("keyword", list(CASES))
async def test_a_secret_is_shown_back_masked_under_every_keyword(
    keyword: str, db: Database, clock: FakeClock
) -> None:
    schema, config, shown = CASES[keyword]
    targets = Targets(db, clock, {"case": Plugin(schema)})

    created = await targets.create({"slug": "t", "notifier": "case", "config": config}, actor=ME)
    assert created["config"] == shown
    assert (await targets.get("t"))["config"] == shown
    assert (await targets.list()).items[0]["config"] == shown
    # A client sends back what it read: the stored secret is kept, and still not shown.
    updated = await targets.update("t", {"name": "renamed", "config": shown}, actor=ME)
    assert updated["config"] == shown
    stored, audit = await _stored(db)
    assert stored == config
    assert SECRET not in audit and M in audit


# Under `not` and `if` a too-short secret breaks nothing (it only changes a branch).
REFUSED = [keyword for keyword in CASES if keyword not in ("not", "if")]


@pytest.mark.parametrize("keyword", REFUSED)
async def test_a_schema_error_about_a_secret_never_quotes_it(
    keyword: str, db: Database, clock: FakeClock
) -> None:
    """The secret breaks a rule beside ``writeOnly`` (too short): the message names the rule."""
    schema, config, _ = CASES[keyword]
    short = "tiny-s3cret"  # under HIDDEN's minLength
    if keyword == "propertyNames":
        schema = {
            **schema,
            "properties": {"headers": {"propertyNames": {"writeOnly": True, "minLength": 16}}},
        }
    broken = _replace(config, SECRET, short)
    targets = Targets(db, clock, {"case": Plugin(schema)})
    with pytest.raises(ValidationError) as refused:
        await targets.create({"slug": "t", "notifier": "case", "config": broken}, actor=ME)
    assert short not in str(refused.value)
    assert refused.value.field is not None and refused.value.field.startswith("config")


def _replace(value: Any, old: str, new: str) -> Any:
    if isinstance(value, dict):
        return {_replace(k, old, new): _replace(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace(v, old, new) for v in value]
    return new if value == old else value


def test_secret_fields_redact_restore_and_collect_strings() -> None:
    schema: dict[str, Any] = {
        "definitions": {"hidden": {"writeOnly": True}},
        "properties": {
            "a": {"allOf": [{"type": "string"}, {"$ref": "#/definitions/hidden"}]},
            "b": {"anyOf": [{"type": "string"}, {"type": "integer", "writeOnly": True}]},
            "keys": {"type": "array", "items": {"$ref": "#/definitions/hidden"}},
            "self": {"$ref": "#"},
            "plain": {"type": "string"},
        },
    }
    fields = SecretFields(schema)
    config = {
        "a": "x",
        "b": 1,
        "keys": ["k1", "k2"],
        "plain": "p",
        "self": {"plain": "nested", "a": "y"},
    }
    assert fields.redact(config) == {
        "a": M,
        "b": M,
        "keys": [M, M],
        "plain": "p",
        "self": {"plain": "nested", "a": M},
    }
    assert fields.strings(config) == {"x", "k1", "k2", "y"}
    restored = fields.restore({"a": M, "keys": ["new", M], "plain": M}, config)
    assert restored == {"a": "x", "keys": ["new", "k2"], "plain": M}
    with pytest.raises(ValidationError) as caught:
        fields.restore({"keys": ["k", "k", M]}, config)
    assert caught.value.field == "config.keys[2]"


def test_a_secret_schema_at_the_top_masks_every_value() -> None:
    fields = SecretFields({"type": "object", "writeOnly": True})
    assert fields.redact({"url": "https://x", "n": 1}) == {"url": M, "n": M}
    assert fields.restore({"url": M}, {"url": "https://x"}) == {"url": "https://x"}


def test_a_schema_the_validator_cannot_apply_masks_every_value() -> None:
    """An unresolvable $ref or an invalid pattern: nothing can be told apart, so all is hidden."""
    for schema in (
        {"properties": {"a": {"$ref": "#/$defs/missing"}}},
        {"patternProperties": {"(": {"type": "string"}}},
    ):
        fields = SecretFields(schema)
        assert fields.redact({"a": "x", "b": [1]}) == {"a": M, "b": M}
        assert fields.strings({"a": "x", "b": ["y"]}) == {"x", "y"}


async def test_a_stored_secret_never_goes_back_to_a_place_that_is_no_longer_secret(
    db: Database, clock: FakeClock
) -> None:
    """Without ``auth`` the token is no secret: a mask sent there stays a mask, as sent."""
    schema, config, shown = CASES["dependentSchemas"]
    targets = Targets(db, clock, {"case": Plugin(schema)})
    await targets.create({"slug": "t", "notifier": "case", "config": config}, actor=ME)
    updated = await targets.update("t", {"config": {"token": shown["token"]}}, actor=ME)
    assert updated["config"] == {"token": M}
    stored, audit = await _stored(db)
    assert stored == {"token": M} and SECRET not in audit


async def test_a_target_of_a_schema_the_validator_cannot_apply_is_refused(
    db: Database, clock: FakeClock
) -> None:
    schema = {"properties": {"token": {"$ref": "#/$defs/missing"}}}
    targets = Targets(db, clock, {"case": Plugin(schema)})
    with pytest.raises(ValidationError) as refused:
        await targets.create({"slug": "t", "notifier": "case", "config": {"token": SECRET}},
                             actor=ME)
    assert refused.value.field == "notifier" and "invalid config_schema" in str(refused.value)
    assert SECRET not in str(refused.value)
