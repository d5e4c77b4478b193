"""Secrets: set (create or replace), list (names only), delete, resolve (for the engine), rotate.

A secret is a name and a value; the value is stored only as ciphertext (``box.py``) and leaves
this module in exactly one way: ``resolve``, which the playbook engine calls to render webhook
headers and bodies and script environments. Lists, API answers, audit entries
(``secret.set``, ``secret.delete``, ``secret.rotate``) and events (``secret.changed``) carry
the name, never the value or its ciphertext.

Limits, each refused with a clear error and counted in ``medic_secrets_refused_total``: the
name (like an environment variable's), the value's size (``MEDIC_SECRET_MAX_BYTES``) and
length (``redact.MIN_LENGTH``: a shorter value cannot be redacted), the number of secrets
(``MEDIC_SECRETS_MAX``), and a key to encrypt with (``MEDIC_SECRET_KEY``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from medic_core.audit import Actor, record_audit
from medic_core.clock import Clock, isoformat
from medic_core.errors import Conflict, NotFound, PayloadTooLarge, ValidationError
from medic_core.events import EventBus
from medic_core.observability.metrics import Metrics
from medic_core.secrets.box import Box, SecretsNotConfigured, UnreadableSecret
from medic_core.secrets.redact import MIN_LENGTH, redactable
from medic_core.store import Database
from medic_core.store.models import Playbook, Secret
from medic_core.store.pagination import Page, check_limit, keyset, rows_page

#: A secret's name: what an environment variable's may be, so ``secrets.NAME`` is a plain
#: template attribute and a script's environment can take the same name.
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
NAME_PATTERN = f"^{NAME.pattern}$"
#: Secrets re-encrypted per transaction by ``rotate``.
ROTATE_BATCH = 100


def secret_summary(secret: Secret) -> dict[str, Any]:
    """What anyone may see of a secret: never its value or ciphertext."""
    return {
        "name": secret.name,
        "created_at": isoformat(secret.created_at),
        "updated_at": isoformat(secret.updated_at),
        "updated_by": secret.updated_by,
    }


class Secrets:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        bus: EventBus,
        metrics: Metrics,
        box: Box | None,
        *,
        max_bytes: int,
        max_count: int,
    ) -> None:
        if not 16 <= max_bytes <= 1_048_576:
            raise ValueError("MEDIC_SECRET_MAX_BYTES must be between 16 and 1048576")
        if not 1 <= max_count <= 1_000_000:
            raise ValueError("MEDIC_SECRETS_MAX must be between 1 and 1000000")
        self._db = db
        self._clock = clock
        self._bus = bus
        self._metrics = metrics
        self._box = box
        self.max_bytes = max_bytes
        self.max_count = max_count

    @property
    def configured(self) -> bool:
        """Whether ``MEDIC_SECRET_KEY`` is set (secrets can be set and resolved)."""
        return self._box is not None

    def _refuse(self, reason: str, error: Exception) -> Exception:
        self._metrics.secrets_refused.labels(reason=reason).inc()
        return error

    def _require_box(self) -> Box:
        if self._box is None:
            raise SecretsNotConfigured()
        return self._box

    def check_name(self, name: str) -> None:
        if not NAME.fullmatch(name):
            raise self._refuse(
                "bad_name",
                ValidationError(
                    f"secret name {name[:80]!r} is not valid: 1 to 64 of A-Z, a-z, 0-9 and _, "
                    "not starting with a digit (like an environment variable's)",
                    field="name",
                ),
            )

    def _check_value(self, value: str) -> None:
        size = len(value.encode("utf-8"))
        if size > self.max_bytes:
            raise self._refuse(
                "too_large",
                PayloadTooLarge(
                    f"the secret value is {size} bytes; at most {self.max_bytes} are accepted "
                    "(MEDIC_SECRET_MAX_BYTES)"
                ),
            )
        if not redactable(value):
            raise self._refuse(
                "too_short",
                ValidationError(
                    f"a secret value must be at least {MIN_LENGTH} characters and not only '*': "
                    "a shorter one could not be told apart from ordinary text when it is "
                    "redacted from logs and outputs",
                    field="value",
                ),
            )

    # -- changing ------------------------------------------------------------------------------

    async def set(self, name: str, value: str, *, actor: Actor) -> tuple[dict[str, Any], bool]:
        """Create or replace secret ``name``; the summary and whether it was created."""
        self.check_name(name)
        if self._box is None:
            raise self._refuse("no_key", SecretsNotConfigured())
        self._check_value(value)
        ciphertext = self._box.encrypt(value)
        try:
            return await self._set(name, ciphertext, actor)
        except IntegrityError:
            # Two first sets of one name raced (the unique name refused the second): the
            # secret exists now, so this set replaces it.
            return await self._set(name, ciphertext, actor)

    async def _set(self, name: str, ciphertext: str, actor: Actor) -> tuple[dict[str, Any], bool]:
        now = self._clock.now()
        async with self._db.transaction() as session:
            query = select(Secret).where(Secret.name == name)
            if self._db.is_postgres:
                query = query.with_for_update()
            secret = await session.scalar(query)
            created = secret is None
            if secret is None:
                count = await session.scalar(select(func.count()).select_from(Secret)) or 0
                if count >= self.max_count:
                    raise self._refuse(
                        "too_many",
                        Conflict(
                            f"there are already {count} secrets, the most allowed "
                            "(MEDIC_SECRETS_MAX): delete one first"
                        ),
                    )
                secret = Secret(name=name, created_at=now)
                session.add(secret)
            secret.ciphertext = ciphertext
            secret.updated_at = now
            secret.updated_by = actor.name
            await session.flush()
            summary = secret_summary(secret)
            record_audit(
                session,
                actor=actor,
                at=now,
                action="secret.set",
                resource_type="secret",
                resource_id=name,
                after={"name": name, "created": created},
            )
        self._bus.publish(
            "secret.changed", now, name=name, change="created" if created else "updated"
        )
        return summary, created

    async def delete(self, name: str, *, actor: Actor) -> None:
        self.check_name(name)
        now = self._clock.now()
        async with self._db.transaction() as session:
            secret = await session.scalar(select(Secret).where(Secret.name == name))
            if secret is None:
                raise NotFound(f"no secret {name!r}")
            await session.delete(secret)
            record_audit(
                session,
                actor=actor,
                at=now,
                action="secret.delete",
                resource_type="secret",
                resource_id=name,
                before={"name": name},
            )
        self._bus.publish("secret.changed", now, name=name, change="deleted")

    async def rotate(self, *, actor: Actor, on_batch: Callable[[int], None] | None = None) -> int:
        """Re-encrypt with the first key every value the box encrypted -- the named secrets,
        then the playbooks' webhook secrets -- ``ROTATE_BATCH`` per transaction; the number
        rotated. ``on_batch`` hears the running count after each batch.

        A value no key opens stops the rotation with ``UnreadableSecret`` (the batches before
        it are kept: running it again goes on). A value set meanwhile is not overwritten: a
        row is rewritten only if its ciphertext is still the one read.
        """
        box = self._require_box()
        done = 0

        def progress(count: int) -> None:
            if on_batch is not None:
                on_batch(done + count)

        named = await self._rotate_column(box, Secret.ciphertext, Secret.name, progress)
        done = named
        hooks = await self._rotate_column(
            box, Playbook.webhook_secret, Playbook.slug, progress, label="webhook of "
        )
        now = self._clock.now()
        async with self._db.transaction() as session:
            record_audit(
                session,
                actor=actor,
                at=now,
                action="secret.rotate",
                resource_type="secret",
                resource_id="*",
                after={"rotated": named, "webhook_secrets": hooks},
            )
        return named + hooks

    async def _rotate_column(
        self,
        box: Box,
        column: Any,
        name: Any,
        on_batch: Callable[[int], None],
        *,
        label: str = "",
    ) -> int:
        """Rotate the non-null ciphertexts of ``column`` (its table's rows named by ``name``,
        read by primary key order), batch by batch; how many."""
        model = column.class_
        rotated = 0
        after = 0
        while True:
            async with self._db.sessions() as session:
                rows = (
                    await session.execute(
                        select(model.id, name, column)
                        .where(model.id > after, column.is_not(None))
                        .order_by(model.id)
                        .limit(ROTATE_BATCH)
                    )
                ).all()
            if not rows:
                return rotated
            fresh = []
            for row_id, row_name, old in rows:
                try:
                    fresh.append((row_id, old, box.rotate(f"{label}{row_name}", old)))
                except UnreadableSecret:
                    self._metrics.secret_decrypt_failures.inc()
                    raise
            async with self._db.transaction() as session:
                for row_id, old, new in fresh:
                    await session.execute(
                        update(model)
                        .where(model.id == row_id, column == old)
                        .values({column.key: new})
                    )
            rotated += len(rows)
            after = rows[-1][0]
            on_batch(rotated)

    # -- reading -------------------------------------------------------------------------------

    async def list(
        self, *, cursor: str | None = None, limit: int | None = None
    ) -> Page[dict[str, Any]]:
        """Names and metadata, oldest first, cursor-paged: never values."""
        limit = check_limit(limit)
        async with self._db.sessions() as session:
            rows = (await session.scalars(keyset(select(Secret), Secret.id, cursor, limit))).all()
        return rows_page(rows, limit, secret_summary, lambda row: row.id)

    async def resolve(self, names: Iterable[str]) -> dict[str, str]:
        """The values of ``names`` (for the playbook engine only; never answered to a client).

        ``NotFound`` lists every unknown name; ``UnreadableSecret`` names a secret no key opens.
        """
        wanted = sorted(set(names))
        for name in wanted:
            self.check_name(name)
        box = self._require_box()
        if not wanted:
            return {}
        async with self._db.sessions() as session:
            rows = (
                await session.execute(
                    select(Secret.name, Secret.ciphertext).where(Secret.name.in_(wanted))
                )
            ).all()
        found = {row.name: row.ciphertext for row in rows}
        missing = [name for name in wanted if name not in found]
        if missing:
            raise NotFound(f"no secret {', '.join(map(repr, missing))}: set it first")
        values = {}
        for name in wanted:
            try:
                values[name] = box.decrypt(name, found[name])
            except UnreadableSecret:
                self._metrics.secret_decrypt_failures.inc()
                raise
        return values
