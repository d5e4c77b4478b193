"""Checking an execution request against an agent's advertised allowlist, before it is sent.

The check is the Rust verifier's own (crate ``medic-allowlist``) through its Python bindings,
the module ``medic_allowlist``, so the server and the agent can never disagree about a rule: the
server refuses up front what the agent would refuse, with the same reason code. The agent still
verifies every request itself (the file, its hash, its owner) at the moment it executes it.

Compiling an advertised summary (its patterns) costs far more than checking a request, and the
agents of a fleet usually share one allowlist file, so compiled rules are cached per allowlist
SHA-256. The cached summary is compared with the one asked about, so an agent that advertises
other rules under a known hash gets its own rules checked, never another agent's.

The same compiled rules validate every ``Hello``'s summary before anything of it is stored
(``validate``): the allowlist format's limits (hash format, name length, counts, patterns) have
one implementation, the Rust one, and the rules an agent advertises are compiled by the time an
execution is requested.

Compiling is done in a worker thread (the bindings release the GIL while they compile), one
summary at a time: the largest summary the format allows takes tens of seconds of CPU, and any
``agent`` key can advertise one. So the event loop keeps serving everything else, and at most
one core is spent compiling; what a hostile key can do is make other agents' *new* allowlists
wait their turn (known ones come from the cache), and at most ``max_waiting`` may wait:
past that, ``VerifierBusy`` (the agent's ``Hello`` is refused ``UNAVAILABLE``; it reconnects).
Callers asking for a summary that is already being compiled (or waiting its turn) await that
compilation instead of queueing another: after a restart the cache is empty and a whole fleet
says ``Hello`` with one allowlist at once, which must cost one compilation and no refusals.

A rule that a newer verifier made stricter (today: environment names it now forbids) is not a
malformed ``Hello``: an agent released before the rule advertises what its own verifier allowed,
and servers are upgraded before agents. Such a summary is stored, so the agent stays connected
and watched (no ``agent_offline`` page for an upgrade), but it cannot be compiled, so every
execution for it is refused (``allowlist_unavailable``, naming the rule) until the host's
allowlist is fixed. Failed compilations are cached like good ones, so such an agent costs one
compilation, not one per ``Hello``.

The bindings are imported when first needed: a server without them still serves everything
else, but refuses to send any execution (503) rather than send one unchecked.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from medic_core.errors import Unavailable, ValidationError

#: The code the agent uses for an allowlist it cannot use; the server uses it for an advertised
#: summary it cannot compile (see docs/agent-protocol.md, reason codes).
SUMMARY_UNUSABLE = "allowlist_unavailable"
#: Format codes of rules that newer verifiers tightened: an older agent's summary that breaks one
#: is stored (the agent stays watched) and unusable for executions, not refused as malformed.
TIGHTENED_RULES = frozenset({"forbidden_env_name"})

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request may not be sent: a stable reason code and a detail free of values."""

    reason: str
    detail: str


class VerifierBusy(Unavailable):
    """Too many advertised summaries wait to be compiled: the caller should try again later."""


def _bindings() -> ModuleType:
    try:
        return importlib.import_module("medic_allowlist")
    except ImportError:
        raise Unavailable(
            "the allowlist verifier's Python bindings (module medic_allowlist) are not "
            "installed, so no execution can be checked before it is sent: install them with "
            "`make install`",
            retry_after=60,
        ) from None


class AllowlistVerifier:
    """``check`` requests against advertised summaries; compiled rules cached per SHA-256."""

    def __init__(self, *, cache_size: int = 256, max_waiting: int = 16) -> None:
        self._cache_size = cache_size
        # sha256 -> (summary, compiled rules or the SummaryError compiling it raised)
        self._cache: OrderedDict[str, tuple[dict[str, Any], Any]] = OrderedDict()
        self._compiling = asyncio.Lock()  # one compilation at a time (see the module's doc)
        self._max_waiting = max_waiting
        self._pending: set[asyncio.Task[Any]] = set()  # compilations started, not finished
        # The pending compilation of each SHA-256 (with its summary), for callers to share.
        self._sharing: dict[str, tuple[dict[str, Any], asyncio.Task[Any]]] = {}

    def _cached(self, summary: Mapping[str, Any]) -> Any | None:
        key = str(summary.get("sha256", ""))
        cached = self._cache.get(key)
        if cached is not None and cached[0] == summary:
            self._cache.move_to_end(key)
            return cached[1]
        return None

    async def _rules(self, summary: Mapping[str, Any]) -> Any:
        """The compiled rules of ``summary`` (``SummaryError`` when it cannot be compiled;
        ``VerifierBusy`` when ``max_waiting`` summaries already wait their turn)."""
        bindings = _bindings()
        rules = self._cached(summary)
        if isinstance(rules, bindings.SummaryError):
            raise rules
        if rules is not None:
            return rules
        key = str(summary.get("sha256", ""))
        shared = self._sharing.get(key)
        if shared is not None and shared[0] == summary:
            # The same summary is already on its way: one compilation serves every caller.
            return await asyncio.shield(shared[1])
        if len(self._pending) >= self._max_waiting:
            raise VerifierBusy(
                f"{len(self._pending)} advertised allowlists are waiting to be checked: "
                "try again later",
                retry_after=10,
            )
        # A task of its own holds the lock until the compilation ends, even when the caller
        # goes away (a stream that closes), so there is never more than one at a time.
        copy = dict(summary)
        task = asyncio.create_task(self._compile(bindings, copy), name="allowlist")
        self._pending.add(task)
        if shared is None:
            self._sharing[key] = (copy, task)
        task.add_done_callback(lambda done: self._done(key, done))
        return await asyncio.shield(task)

    def _done(self, key: str, task: asyncio.Task[Any]) -> None:
        self._pending.discard(task)
        if self._sharing.get(key, (None, None))[1] is task:
            del self._sharing[key]
        if not task.cancelled():
            task.exception()  # retrieved: a caller that went away leaves no "never retrieved"

    async def _compile(self, bindings: ModuleType, summary: dict[str, Any]) -> Any:
        async with self._compiling:
            rules = self._cached(summary)  # compiled while this one waited its turn
            if rules is None:
                try:
                    rules = await asyncio.to_thread(bindings.Rules.from_summary, summary)
                except bindings.SummaryError as exc:
                    rules = exc
                self._remember(summary, rules)
        if isinstance(rules, bindings.SummaryError):
            raise rules
        return rules

    def _remember(self, summary: dict[str, Any], rules: Any) -> None:
        key = str(summary.get("sha256", ""))
        self._cache[key] = (summary, rules)
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    async def validate(self, summary: Mapping[str, Any]) -> None:
        """Refuse an advertised summary the verifier cannot use (``ValidationError`` naming the
        format's error code), or whose hashes are not lower-case hex (the agent writes them so;
        ``Execute.expected_sha256`` repeats them). ``Unavailable`` without the bindings.

        An empty summary (no file hash, no entries) is an agent without a usable allowlist: it
        refuses every execution, and says so; that is valid.
        """
        if not summary.get("sha256") and not summary.get("scripts"):
            return
        bindings = _bindings()
        try:
            await self._rules(summary)
        except bindings.SummaryError as exc:
            code = getattr(exc, "code", "invalid_summary")
            if code in TIGHTENED_RULES and _lower_case_digests(summary):
                log.warning(
                    "an agent advertises an allowlist this server's verifier refuses (%s: %s): "
                    "it stays connected, but no execution is sent to it until its allowlist "
                    "is fixed",
                    code,
                    _bounded(str(exc)),
                    extra={"allowlist_sha256": str(summary.get("sha256", ""))[:64]},
                )
                return
            # The message may quote an over-long name: bounded, never echoed whole.
            raise ValidationError(
                f"allowlist ({code}): {_bounded(str(exc))}", field="allowlist"
            ) from None
        # The verifier read every digest as 64 hexadecimal digits already; only the case is left.
        if not _lower_case_digests(summary):
            raise ValidationError(
                "allowlist (invalid_sha256): SHA-256 digests are 64 lower-case hexadecimal digits",
                field="allowlist",
            )

    async def check(
        self,
        summary: Mapping[str, Any],
        script: str,
        args: Sequence[str],
        env: Mapping[str, str],
        timeout_seconds: int | None,
    ) -> Refusal | None:
        """``None`` when the advertised rules allow the request, else why not."""
        bindings = _bindings()
        try:
            rules = await self._rules(summary)
        except bindings.SummaryError as exc:
            code = getattr(exc, "code", "invalid")
            return Refusal(
                SUMMARY_UNUSABLE,
                f"the agent's advertised allowlist cannot be checked ({code}): {exc}",
            )
        refusal = rules.check(
            script, list(args), dict(env), timeout_seconds=timeout_seconds, expected_sha256=None
        )
        if refusal is None:
            return None
        return Refusal(str(refusal.reason), str(refusal.detail))


def _lower_case_digests(summary: Mapping[str, Any]) -> bool:
    digests = [summary.get("sha256")]
    digests += [entry.get("sha256") for entry in summary.get("scripts") or []]
    return all(str(digest) == str(digest).lower() for digest in digests)


def _bounded(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def script_sha256(summary: Mapping[str, Any], script: str) -> str:
    """The SHA-256 the agent advertises for ``script`` (empty when it lists no such entry)."""
    for entry in summary.get("scripts", []) or []:
        if isinstance(entry, Mapping) and entry.get("name") == script:
            return str(entry.get("sha256", ""))
    return ""
