"""Secrets in a notifier's configuration: where its ``config_schema`` says ``writeOnly``.

Configuration values the notifier's schema marks ``"writeOnly": true`` never leave Medic
unmasked -- responses and audit entries carry ``SECRET_MASK`` instead -- and sending
``SECRET_MASK`` back for such a value on update keeps the stored value, so a client can send back
what it read. ``medic_core.notify.targets`` uses this for the API and for validation messages
(which must never quote a secret).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from medic_core.errors import ValidationError

#: What a secret configuration value reads as, and what a client sends back to keep it.
SECRET_MASK = "********"  # noqa: S105 - a placeholder, not a password
MISSING: Any = object()
_MAX_DEPTH = 16  # $ref chains and nested combinators deeper than this are not followed


class SecretFields:
    """Where a notifier's ``config_schema`` marks values ``writeOnly``, and what to do there.

    A place in a configuration is described by every schema that applies to it: the schema
    itself, what its local ``$ref`` points to and the branches of ``allOf``/``anyOf``/``oneOf``.
    A value is secret when any of them says ``writeOnly: true`` (erring towards hiding).
    Children come from ``properties``, ``patternProperties``, ``additionalProperties`` and
    ``items``.
    """

    def __init__(self, schema: object) -> None:
        self._root = schema
        self._top = self._expand(schema)

    def _pointer(self, ref: str) -> object:
        node: object = self._root
        for part in ref[1:].split("/")[1:]:
            if not isinstance(node, dict):
                return None
            node = node.get(part.replace("~1", "/").replace("~0", "~"))
        return node

    def _expand(self, schema: object, depth: int = 0) -> list[dict[str, Any]]:
        """``schema`` and every schema it pulls in, each once."""
        found: list[dict[str, Any]] = []
        pending = [(schema, depth)]
        while pending:
            node, level = pending.pop()
            if not isinstance(node, dict) or level > _MAX_DEPTH or any(node is f for f in found):
                continue
            found.append(node)
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#"):
                pending.append((self._pointer(ref), level + 1))
            for combinator in ("allOf", "anyOf", "oneOf"):
                branches = node.get(combinator)
                if isinstance(branches, list):
                    pending += [(branch, level + 1) for branch in branches]
        return found

    def _children(self, schemas: list[dict[str, Any]], key: str | int) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for schema in schemas:
            if isinstance(key, int):
                found += self._expand(schema.get("items"))
                continue
            properties = schema.get("properties")
            if isinstance(properties, dict) and key in properties:
                found += self._expand(properties[key])
                continue
            matched = False
            patterns = schema.get("patternProperties")
            if isinstance(patterns, dict):
                for pattern, sub in patterns.items():
                    try:
                        hit = re.search(pattern, key) is not None
                    except re.error:
                        hit = True  # cannot tell: treat it as applying (hides more, not less)
                    if hit:
                        matched = True
                        found += self._expand(sub)
            if not matched:
                found += self._expand(schema.get("additionalProperties"))
        return found

    @staticmethod
    def _secret(schemas: list[dict[str, Any]]) -> bool:
        return any(schema.get("writeOnly") is True for schema in schemas)

    def secret_at(self, path: Iterable[str | int]) -> bool:
        """Whether the place at ``path`` is, or lies inside, a secret."""
        schemas = self._top
        for key in path:
            if self._secret(schemas):
                return True
            schemas = self._children(schemas, key)
        return self._secret(schemas)

    def redact(self, value: Any) -> Any:
        """``value`` with every secret replaced by ``SECRET_MASK``."""
        return self._redact(value, self._top)

    def _redact(self, value: Any, schemas: list[dict[str, Any]]) -> Any:
        if self._secret(schemas):
            return SECRET_MASK
        if isinstance(value, dict):
            return {k: self._redact(v, self._children(schemas, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self._redact(v, self._children(schemas, i)) for i, v in enumerate(value)]
        return value

    def restore(self, value: Any, stored: Any, where: str = "config") -> Any:
        """``value`` with each ``SECRET_MASK`` in a secret place replaced by the stored value.

        ``stored`` is the stored configuration, or ``MISSING`` when there is none to use.
        """
        return self._restore(value, stored, self._top, where)

    def _restore(self, value: Any, stored: Any, schemas: list[dict[str, Any]], where: str) -> Any:
        if value == SECRET_MASK and self._secret(schemas):
            if stored is MISSING:
                raise ValidationError(
                    f"{where} is {SECRET_MASK!r}, which stands for the stored secret, but none "
                    "is stored for this target and notifier: send the value itself",
                    field=where,
                )
            return stored
        if isinstance(value, dict):
            old = stored if isinstance(stored, dict) else {}
            return {
                k: self._restore(v, old.get(k, MISSING), self._children(schemas, k), f"{where}.{k}")
                for k, v in value.items()
            }
        if isinstance(value, list):
            items = stored if isinstance(stored, list) else []
            return [
                self._restore(
                    v,
                    items[i] if i < len(items) else MISSING,
                    self._children(schemas, i),
                    f"{where}[{i}]",
                )
                for i, v in enumerate(value)
            ]
        return value

    def strings(self, value: Any) -> set[str]:
        """Every non-empty string inside a secret (to keep them out of messages)."""
        found: set[str] = set()
        self._strings(value, self._top, False, found)
        return found

    def _strings(
        self, value: Any, schemas: list[dict[str, Any]], inside: bool, found: set[str]
    ) -> None:
        inside = inside or self._secret(schemas)
        if isinstance(value, dict):
            for k, v in value.items():
                self._strings(v, self._children(schemas, k), inside, found)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                self._strings(v, self._children(schemas, i), inside, found)
        elif inside and isinstance(value, str) and value:
            found.add(value)


def value_at(value: Any, path: Sequence[str | int]) -> Any:
    """The part of a JSON document at ``path`` (a jsonschema error's ``absolute_path``).

    ``MISSING`` where the path does not lead anywhere (in a redacted copy, a secret object is
    a mask string): compared with the real value, that reads as "holds a secret".
    """
    for key in path:
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            return MISSING
    return value


def config_path(parts: Iterable[str | int]) -> str:
    path = "config"
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path
