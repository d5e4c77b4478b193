"""Secrets in a notifier's configuration: the places its ``config_schema`` says ``writeOnly``.

Configuration values the notifier's schema marks ``"writeOnly": true`` never leave Medic
unmasked -- responses and audit entries carry ``SECRET_MASK`` instead -- and sending
``SECRET_MASK`` back for such a value on update keeps the stored value, so a client can send back
what it read. ``medic_core.notify.targets`` uses this for the API and to keep secrets out of
validation messages.

Where the secrets are is what the JSON Schema validator itself says, not a walk of our own: the
Draft 2020-12 validator is extended with a ``writeOnly`` keyword that, where it applies, yields a
mark (``_Secret``, a ``ValidationError`` subclass that is not an error). jsonschema prefixes the
instance path of every error as it climbs back out of ``properties``, ``items``,
``prefixItems``, ``additionalProperties``, ``patternProperties``, ``dependentSchemas``,
``allOf``, ``$ref``, ``$dynamicRef``, ``propertyNames`` (the names are secret: the object holding
them is masked whole) and any keyword added later, so a mark arrives carrying the place of the
value it applied to. One validation pass yields the real errors and the marks.

Keywords that *decide* on their subschemas' errors (``anyOf``, ``oneOf``, ``not``,
``if``/``then``/``else``, ``contains``, ``unevaluatedProperties``, ``unevaluatedItems``) must not
see marks, or a mark would count as a failure and change the verdict. They run exactly as
jsonschema's own with marks switched off, and then walk their subschemas again with marks on,
keeping only the marks. That second walk errs towards hiding: every branch of
``anyOf``/``oneOf``, ``not``'s subschema, ``if`` and both ``then`` and ``else``, ``contains``
over every item -- a value under a branch that failed is still treated as secret, because a
failing secret is exactly what a validation message would otherwise quote.

A schema the validator cannot apply (an unresolvable ``$ref``, an invalid pattern, endless
recursion) tells nothing apart: every top-level value is treated as secret.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema._utils import (
    find_evaluated_item_indexes_by_schema,
    find_evaluated_property_keys_by_schema,
)
from jsonschema.exceptions import ValidationError as SchemaViolation

from medic_core.errors import ValidationError

log = logging.getLogger(__name__)

#: What a secret configuration value reads as, and what a client sends back to keep it.
SECRET_MASK = "********"  # noqa: S105 - a placeholder, not a password
#: Stands for "no stored value" in ``SecretFields.restore``.
MISSING: Any = object()

Path = tuple[str | int, ...]
Keyword = Callable[[Any, Any, Any, Any], Iterable[SchemaViolation]]


class UnusableSchema(Exception):
    """The validator cannot apply the schema at all (see the module docstring)."""


# -- the validator that marks secrets -----------------------------------------------------------


class _Secret(SchemaViolation):
    """Not an error: the mark ``writeOnly: true`` leaves on the value it applies to."""


# Off while a deciding keyword computes its verdict (see the module docstring). Validation is
# synchronous, so a context variable set and reset around a fully consumed call is enough.
_MARKING: ContextVar[bool] = ContextVar("medic_secret_marking", default=True)


@contextmanager
def _unmarked() -> Iterator[None]:
    token = _MARKING.set(False)
    try:
        yield
    finally:
        _MARKING.reset(token)


def _write_only(
    validator: Any, value: Any, instance: Any, schema: Any
) -> Iterator[SchemaViolation]:
    if value is True and _MARKING.get():
        yield _Secret("writeOnly")


def _deciding(keyword: Keyword, walk: Keyword) -> Keyword:
    """``keyword`` as jsonschema runs it (no marks), then the marks ``walk`` finds."""

    def run(validator: Any, value: Any, instance: Any, schema: Any) -> Iterator[SchemaViolation]:
        marking = _MARKING.get()
        with _unmarked():
            errors = list(keyword(validator, value, instance, schema))
        yield from errors
        if marking:
            yield from (
                found
                for found in walk(validator, value, instance, schema)
                if isinstance(found, _Secret)
            )

    return run


def _branches(validator: Any, value: Any, instance: Any, schema: Any) -> Iterator[SchemaViolation]:
    for index, branch in enumerate(value):
        yield from validator.descend(instance, branch, schema_path=index)


def _negated(validator: Any, value: Any, instance: Any, schema: Any) -> Iterator[SchemaViolation]:
    yield from validator.descend(instance, value)


def _conditional(
    validator: Any, value: Any, instance: Any, schema: Any
) -> Iterator[SchemaViolation]:
    yield from validator.descend(instance, value)
    for branch in ("then", "else"):
        if branch in schema:
            yield from validator.descend(instance, schema[branch], schema_path=branch)


def _every_item(
    validator: Any, value: Any, instance: Any, schema: Any
) -> Iterator[SchemaViolation]:
    if validator.is_type(instance, "array"):
        for index, item in enumerate(instance):
            yield from validator.descend(item, value, path=index)


# The unevaluated* subschemas apply to what the rest of the schema left unevaluated; jsonschema's
# own helpers say which (private, but they are what its unevaluated* keywords use, so the marks
# follow the validator's reading). The keyword itself is left out of the schema asked about:
# a value is unevaluated by the *other* keywords whether or not it passes this one.


def _unevaluated_properties(
    validator: Any, value: Any, instance: Any, schema: Any
) -> Iterator[SchemaViolation]:
    if not validator.is_type(instance, "object"):
        return
    others = {k: v for k, v in schema.items() if k != "unevaluatedProperties"}
    with _unmarked():
        evaluated = set(find_evaluated_property_keys_by_schema(validator, instance, others))
    for key, item in instance.items():
        if key not in evaluated:
            yield from validator.descend(item, value, path=key)


def _unevaluated_items(
    validator: Any, value: Any, instance: Any, schema: Any
) -> Iterator[SchemaViolation]:
    if not validator.is_type(instance, "array"):
        return
    others = {k: v for k, v in schema.items() if k != "unevaluatedItems"}
    with _unmarked():
        evaluated = set(find_evaluated_item_indexes_by_schema(validator, instance, others))
    for index, item in enumerate(instance):
        if index not in evaluated:
            yield from validator.descend(item, value, path=index)


_OWN = Draft202012Validator.VALIDATORS
_Marking: Any = validators.extend(  # type: ignore[no-untyped-call]  # untyped in the stubs
    Draft202012Validator,
    {
        "writeOnly": _write_only,
        "anyOf": _deciding(_OWN["anyOf"], _branches),
        "oneOf": _deciding(_OWN["oneOf"], _branches),
        "not": _deciding(_OWN["not"], _negated),
        "if": _deciding(_OWN["if"], _conditional),
        "contains": _deciding(_OWN["contains"], _every_item),
        "unevaluatedProperties": _deciding(_OWN["unevaluatedProperties"], _unevaluated_properties),
        "unevaluatedItems": _deciding(_OWN["unevaluatedItems"], _unevaluated_items),
    },
)


# -- secret places and what to do there ---------------------------------------------------------


class SecretFields:
    """The secrets of configurations checked against one notifier's ``config_schema``.

    Each method validates the configuration it is given (the places of secrets can depend on
    it: ``dependentSchemas``, ``if``, the keys ``patternProperties`` match).
    """

    def __init__(self, schema: object) -> None:
        self._validator = _Marking(schema)
        self._warned = False

    def check(self, config: Any) -> tuple[list[SchemaViolation], frozenset[Path]]:
        """The schema's errors for ``config`` (as Draft 2020-12 gives them) and its secrets.

        Raises ``UnusableSchema`` when the validator cannot apply the schema.
        """
        errors: list[SchemaViolation] = []
        places: set[Path] = set()
        try:
            for found in self._validator.iter_errors(config):
                if isinstance(found, _Secret):
                    places.add(tuple(found.absolute_path))
                else:
                    errors.append(found)
        # Whatever jsonschema raises here (re.error, RecursionError, referencing's Unresolvable,
        # UnknownType, ...) means the same thing: this schema cannot be applied.
        except Exception as exc:
            raise UnusableSchema(f"{type(exc).__name__}: {exc}"[:300]) from exc
        if () in places and isinstance(config, dict):
            # A secret configuration: every value is secret, and it keeps its shape (an object).
            places = {(key,) for key in config}
        return errors, frozenset(places)

    def places(self, config: Any) -> frozenset[Path]:
        """Where ``config`` holds secrets (every top-level value if the schema is unusable)."""
        try:
            return self.check(config)[1]
        except UnusableSchema as exc:
            if not self._warned:
                self._warned = True
                log.warning("a config_schema cannot be applied, every value is masked: %s", exc)
            if isinstance(config, dict):
                return frozenset((key,) for key in config)
            return frozenset({()})

    def redact(self, config: Any) -> Any:
        """``config`` with every secret replaced by ``SECRET_MASK``."""
        return _redact(config, (), self.places(config))

    def restore(self, config: Any, stored: Any, where: str = "config") -> Any:
        """``config`` with each ``SECRET_MASK`` in a secret place replaced by the stored value.

        ``stored`` is the stored configuration, or ``MISSING`` when there is none to use. A
        place is secret if it is in what the client sent or in what it read (a secret object is
        read as a mask string, and ``propertyNames`` does not apply to a string); a stored
        value is kept only where the result still has a secret, so a secret never goes back to
        a place that would show it (the mask stays there, as sent).
        """
        places = self.places(config)
        if stored is not MISSING:
            places |= self.places(stored)
        restored: list[Path] = []
        result = _restore(config, stored, (), where, places, restored)
        if restored:
            kept = self.places(result)
            for place in restored:
                if covers(kept, place):
                    continue
                if not place:
                    return SECRET_MASK
                _put(result, place, SECRET_MASK)
        return result

    def strings(self, config: Any) -> set[str]:
        """Every non-empty string inside a secret (to keep them out of messages)."""
        return secret_strings(config, self.places(config))


def secret_strings(config: Any, places: frozenset[Path]) -> set[str]:
    """Every non-empty string inside the secrets at ``places`` of ``config``."""
    found: set[str] = set()
    for place in places:
        _strings(_at(config, place), found)
    return found


def touches(places: frozenset[Path], path: Iterable[str | int]) -> bool:
    """Whether the value at ``path`` is a secret, lies inside one or holds one."""
    place = tuple(path)
    return any(p[: len(place)] == place or place[: len(p)] == p for p in places)


def covers(places: frozenset[Path], path: Iterable[str | int]) -> bool:
    """Whether the value at ``path`` is a secret or lies inside one."""
    place = tuple(path)
    return any(place[:length] in places for length in range(len(place) + 1))


def config_path(parts: Iterable[str | int]) -> str:
    """``config.login.keys[2]``: a place in a configuration as error fields name it."""
    path = "config"
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _redact(value: Any, path: Path, places: frozenset[Path]) -> Any:
    if path in places:
        return SECRET_MASK
    if isinstance(value, dict):
        return {k: _redact(v, (*path, k), places) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v, (*path, i), places) for i, v in enumerate(value)]
    return value


def _restore(
    value: Any,
    stored: Any,
    path: Path,
    where: str,
    places: frozenset[Path],
    restored: list[Path],
) -> Any:
    if value == SECRET_MASK and path in places:
        if stored is MISSING:
            raise ValidationError(
                f"{where} is {SECRET_MASK!r}, which stands for the stored secret, but none "
                "is stored for this target and notifier: send the value itself",
                field=where,
            )
        restored.append(path)
        return stored
    if isinstance(value, dict):
        old = stored if isinstance(stored, dict) else {}
        return {
            k: _restore(v, old.get(k, MISSING), (*path, k), f"{where}.{k}", places, restored)
            for k, v in value.items()
        }
    if isinstance(value, list):
        items = stored if isinstance(stored, list) else []
        return [
            _restore(
                v,
                items[i] if i < len(items) else MISSING,
                (*path, i),
                f"{where}[{i}]",
                places,
                restored,
            )
            for i, v in enumerate(value)
        ]
    return value


def _at(value: Any, path: Path) -> Any:
    for key in path:
        value = value[key]  # a place the validator reported: it exists
    return value


def _put(value: Any, path: Path, new: Any) -> None:
    for key in path[:-1]:
        value = value[key]
    value[path[-1]] = new


def _strings(value: Any, found: set[str]) -> None:
    """Every string in ``value``, keys included (``propertyNames`` can make a key secret)."""
    if isinstance(value, dict):
        for k, v in value.items():
            _strings(k, found)
            _strings(v, found)
    elif isinstance(value, list):
        for v in value:
            _strings(v, found)
    elif isinstance(value, str) and value:
        found.add(value)
