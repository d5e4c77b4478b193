"""``script``: run an allow-listed script on agents chosen by id or by labels.

Everything goes through the agent-execution machinery (``medic.agents``): the request is checked
with the allowlist bindings against each chosen agent's advertised rules -- the very check of
``POST /api/v1/agents/{id}/executions`` -- then stored, audited and sent as that API does.

Running takes three kinds of call of ``advance``, each ending in a persisted ``Later``:

1. **choose and check**: the agents are chosen (``mode: one``: the first that allows the
   request, online ones first; ``all``: every one, and a single refusal fails the step before
   anything is sent), and each gets an execution id derived from (playbook run, step, attempt,
   agent) -- a UUID v5, so the same attempt always names the same executions. The ids are kept
   in the step's state, and the engine commits that state *before* anything is sent.
2. **dispatch**: each execution is requested with its id as the idempotency key. An id that
   exists already is re-attached to (``delivery: existing``), never started again.
3. **poll** until every execution has ended; the output keeps a bounded tail of stdout and stderr.

Recovery: the step is idempotent by default (``idempotent_by_default``) because of the ids: if
Medic dies while a call runs, the engine runs the step again as a new attempt *with the state
the last ``Later`` kept*, so it dispatches or polls the same executions by id. The agent
executes an id at most once (docs/agent-protocol.md). A retry after ``Failed`` is a new attempt
with an empty state: new ids, the script runs again, as a retry means.

When the step's ``timeout`` is near (``run.deadline``) with executions unfinished -- an agent
offline, a script still running -- they are cancelled and the step fails saying which, so a
queued execution does not run after its playbook gave up on it.

Secrets: only ``env`` values may use ``secrets.*`` (``review`` refuses a template in ``args``
reaching for them); the kept state and the output never hold an ``env`` value.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

from jinja2 import TemplateSyntaxError, nodes
from jinja2.sandbox import SandboxedEnvironment

from medic_core.audit import Actor
from medic_core.errors import MedicError, NotFound, ValidationError
from medic_core.plugins.interfaces import Done, Failed, Later, Outcome, Remark, StepRun

#: The namespace of the execution ids a script step derives (fixed: ids must not change
#: between releases, or a re-attach after an upgrade would start a second run).
ID_NAMESPACE = uuid.UUID("6f1b4c1e-2a7e-5d0b-9c43-3a52e1d0c6a1")
#: Polling an unfinished execution: first after 1 s, doubling up to 10 s.
FIRST_POLL = 1.0
MAX_POLL = 10.0
#: Unfinished executions are cancelled this long before the step's deadline (the engine fails
#: the step at the deadline without calling ``advance``).
CANCEL_MARGIN = 5.0
#: Each stream's tail kept in the output: this share of MEDIC_PLAYBOOK_STEP_OUTPUT_BYTES per
#: agent and stream, at least MIN_TAIL characters.
MIN_TAIL = 256
DEFAULT_OUTPUT_BYTES = 65_536
FINAL = frozenset({"rejected", "succeeded", "failed", "timed_out", "cancelled"})
#: Refusals that say something about the agent's state now, not about the request: at save
#: time they are warnings (the agent may be un-paused before the playbook runs).
TRANSIENT = frozenset({"paused", "agent_revoked", "allowlist_unavailable"})
_TEMPLATE_MARK = re.compile(r"{{|{%|{#")


def execution_id(run_id: int, step: str, attempt: int, agent: str) -> str:
    """The agent execution id of one attempt of a step on one agent (stable: a UUID v5)."""
    return str(uuid.uuid5(ID_NAMESPACE, f"playbook-run/{run_id}/{step}/{attempt}/{agent}"))


def _templated(value: object) -> bool:
    return isinstance(value, str) and bool(_TEMPLATE_MARK.search(value))


class ScriptStep:
    name = "script"
    description = (
        "Run a script of the agents' allowlists on one or all of the agents chosen by id or "
        "labels; arguments go as an argument vector, never through a shell."
    )
    #: Re-running after a crash re-attaches to the same executions by id (see the module).
    idempotent_by_default = True
    params_schema: dict[str, Any] = {
        "type": "object",
        "required": ["agents", "script"],
        "properties": {
            "agents": {
                "type": "object",
                "properties": {
                    "ids": {
                        "type": "array",
                        "items": {"type": "string", "minLength": 1, "maxLength": 64},
                        "minItems": 1,
                        "maxItems": 100,
                        "uniqueItems": True,
                    },
                    "labels": {
                        "type": "object",
                        "propertyNames": {"pattern": "^[A-Za-z0-9._/-]{1,63}$"},
                        "additionalProperties": {"type": "string", "maxLength": 253},
                        "minProperties": 1,
                        "maxProperties": 20,
                    },
                },
                "oneOf": [{"required": ["ids"]}, {"required": ["labels"]}],
                "additionalProperties": False,
            },
            "mode": {
                "enum": ["one", "all"],
                "description": "one: any one matching agent; all: every one (default one)",
            },
            "script": {
                "type": "string",
                "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$",
                "description": "the script's name in the agents' allowlist",
            },
            "args": {
                "type": "array",
                "items": {"type": "string", "maxLength": 4000},
                "maxItems": 64,
                "description": "the argument vector (templates allowed, never secrets)",
            },
            "env": {
                "type": "object",
                "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]{0,127}$"},
                "additionalProperties": {"type": "string", "maxLength": 4000},
                "maxProperties": 32,
                "description": "environment values (the only place secrets may go)",
            },
            "timeout_seconds": {
                "type": "integer",
                "minimum": 1,
                "maximum": 86_400,
                "description": "the script's run-time limit at the agent (default: the "
                "allowlist entry's own; never more than it allows)",
            },
        },
        "additionalProperties": False,
    }

    # -- running --------------------------------------------------------------------------------

    async def advance(self, params: dict[str, Any], run: StepRun) -> Outcome:
        agents = getattr(run.medic, "agents", None)
        if agents is None:
            return Failed("this Medic offers no agents to plugins (medic.agents is missing)")
        kept = run.state.get("executions")
        if not isinstance(kept, list):
            return await self._choose(params, run, agents)
        if not run.state.get("dispatched"):
            return await self._dispatch(params, run, agents, kept)
        return await self._poll(params, run, agents, kept)

    async def _choose(self, params: dict[str, Any], run: StepRun, agents: Any) -> Outcome:
        chosen = params["agents"]
        mode = params.get("mode", "one")
        if "ids" in chosen:
            found = await agents.find(ids=chosen["ids"])
            unknown = sorted(set(chosen["ids"]) - {a["id"] for a in found})
            if mode == "all" and unknown:
                return Failed(f"no agent {', '.join(unknown)} is known to Medic: nothing was run")
        else:
            found = await agents.find(labels=chosen["labels"], limit=101)
            if len(found) > 100:
                return Failed(
                    f"more than 100 agents carry the labels {_labels(chosen['labels'])}: "
                    "choose fewer (a script step runs on at most 100)"
                )
        if not found:
            which = (
                f"ids {', '.join(chosen['ids'])}"
                if "ids" in chosen
                else f"labels {_labels(chosen['labels'])}"
            )
            return Failed(f"no agent matches {which}: nothing was run")
        allowed: list[dict[str, Any]] = []
        refused: list[str] = []
        for agent in found:
            try:
                refusal = await agents.check(
                    agent["id"],
                    params["script"],
                    params.get("args") or [],
                    params.get("env") or {},
                    params.get("timeout_seconds"),
                )
            except MedicError as exc:  # a rendered value too long, the verifier unavailable
                return Failed(f"script {params['script']!r} cannot be checked: {exc.message}")
            if refusal is None:
                allowed.append(agent)
            else:
                refused.append(f"agent {agent['id']} refuses ({refusal.reason}): {refusal.detail}")
        if mode == "all" and refused:
            return Failed(
                f"script {params['script']!r} is refused, so it was run on no agent: "
                + "; ".join(refused)
            )
        if not allowed:
            return Failed(
                f"no chosen agent allows script {params['script']!r}: " + "; ".join(refused)
            )
        if mode == "one":
            # An online agent runs it now; an offline one only once it reconnects.
            allowed = [min(allowed, key=lambda a: (a["status"] != "online", found.index(a)))]
        executions = [
            {"agent": a["id"], "id": execution_id(run.execution_id, run.step, run.attempt, a["id"])}
            for a in allowed
        ]
        # Kept (committed by the engine) before anything is sent: see the module's doc.
        return Later(run.clock.now(), {"executions": executions, "dispatched": False})

    async def _dispatch(
        self, params: dict[str, Any], run: StepRun, agents: Any, kept: list[dict[str, str]]
    ) -> Outcome:
        actor = Actor(f"playbook-run:{run.execution_id}:{run.step}"[:200])
        for entry in kept:
            try:
                await agents.execute(
                    entry["agent"],
                    params["script"],
                    params.get("args") or [],
                    params.get("env") or {},
                    params.get("timeout_seconds"),
                    actor=actor,
                    execution_id=entry["id"],
                )
            except MedicError as exc:
                # Refused since it was checked (the allowlist changed, the switch went on):
                # what was sent to other agents is stopped rather than left half done.
                await self._cancel_sent(agents, kept, actor)
                return Failed(
                    f"agent {entry['agent']} refused script {params['script']!r}: {exc.message}"
                )
        return Later(
            run.clock.now() + timedelta(seconds=FIRST_POLL),
            {"executions": kept, "dispatched": True, "polls": 0},
        )

    async def _cancel_sent(self, agents: Any, kept: list[dict[str, str]], actor: Actor) -> None:
        for entry in kept:
            # Never stored (refused), or already ended: nothing to stop.
            with contextlib.suppress(MedicError):
                await agents.cancel(entry["id"], actor=actor)

    async def _poll(
        self, params: dict[str, Any], run: StepRun, agents: Any, kept: list[dict[str, str]]
    ) -> Outcome:
        views = []
        for entry in kept:
            try:
                views.append(await agents.execution(entry["id"]))
            except NotFound:
                return Failed(
                    f"execution {entry['id']} on agent {entry['agent']} no longer exists (the "
                    "agent was deleted, and its executions with it)"
                )
        now: datetime = run.clock.now()
        unfinished = [v for v in views if v["state"] not in FINAL]
        if not unfinished:
            return self._ended(params, run, views)
        polls = int(run.state.get("polls", 0)) + 1
        at = now + timedelta(seconds=min(FIRST_POLL * 2.0 ** min(polls, 10), MAX_POLL))
        deadline: datetime | None = getattr(run, "deadline", None)
        if deadline is not None:
            give_up = deadline - timedelta(seconds=CANCEL_MARGIN)
            if now >= give_up:
                return await self._abandon(params, run, agents, kept, views, unfinished)
            at = min(at, give_up)
        return Later(at, {"executions": kept, "dispatched": True, "polls": polls})

    async def _abandon(
        self,
        params: dict[str, Any],
        run: StepRun,
        agents: Any,
        kept: list[dict[str, str]],
        views: list[dict[str, Any]],
        unfinished: list[dict[str, Any]],
    ) -> Outcome:
        actor = Actor(f"playbook-run:{run.execution_id}:{run.step}"[:200])
        open_ids = {v["id"] for v in unfinished}
        await self._cancel_sent(agents, [e for e in kept if e["id"] in open_ids], actor)
        found = {a["id"]: a for a in await agents.find(ids=[v["agent_id"] for v in unfinished])}
        why = []
        for view in unfinished:
            agent = found.get(view["agent_id"], {})
            if agent.get("status") != "online":
                since = agent.get("offline_since") or "unknown"
                why.append(
                    f"agent {view['agent_id']} is offline (since {since}); execution "
                    f"{view['id']} was {view['state']}"
                )
            else:
                why.append(
                    f"execution {view['id']} on agent {view['agent_id']} was {view['state']}"
                )
        return Failed(
            f"script {params['script']!r} did not end before the step's timeout, so it was "
            "cancelled: " + "; ".join(why),
            self._output(params, run, views),
        )

    def _ended(self, params: dict[str, Any], run: StepRun, views: list[dict[str, Any]]) -> Outcome:
        output = self._output(params, run, views)
        problems = [_problem(params["script"], v) for v in views]
        failed = [p for p in problems if p is not None]
        if failed:
            return Failed("; ".join(failed), output)
        return Done(output)

    def _output(self, params: dict[str, Any], run: StepRun, views: list[dict[str, Any]]) -> Any:
        settings = getattr(run.medic, "settings", None)
        budget = int(getattr(settings, "playbook_step_output_bytes", DEFAULT_OUTPUT_BYTES))
        # JSON escapes and the other fields take room too: a quarter for the tails of each.
        tail = max(MIN_TAIL, budget // (4 * 2 * len(views)))
        results = [_result(view, tail) for view in views]
        if params.get("mode", "one") == "one":
            return results[0]
        codes = [r["exit_code"] for r in results]
        worst = next((c for c in codes if c != 0), 0)
        return {"exit_code": worst, "results": results}

    # -- saving ---------------------------------------------------------------------------------

    async def review(self, params: dict[str, Any], medic: Any) -> list[Remark]:
        """Refuse secrets in ``args``; check the script against the agents chosen by id that
        Medic knows (refused: 422; an agent unknown yet, chosen by labels, paused: warnings)."""
        remarks = list(_secrets_in_args(params.get("args") or []))
        agents = getattr(medic, "agents", None)
        if agents is None:
            return remarks
        chosen = params["agents"]
        mode = params.get("mode", "one")
        script = params["script"]
        if "labels" in chosen:
            remarks.append(
                Remark(
                    f"agents chosen by labels ({_labels(chosen['labels'])}) are checked against "
                    f"their allowlists when the step runs, not now: which agents match may change",
                    "agents.labels",
                    refuse=False,
                )
            )
            return remarks
        found = await agents.find(ids=chosen["ids"])
        unknown = sorted(set(chosen["ids"]) - {a["id"] for a in found})
        if unknown:
            remarks.append(
                Remark(
                    f"no agent {', '.join(unknown)} has connected yet: its allowlist is checked "
                    "when the step runs",
                    "agents.ids",
                    refuse=False,
                )
            )
        refusals: list[str] = []
        for agent in found:
            reason, detail = await _refusal(agents, agent, params)
            if reason is None:
                continue
            said = f"agent {agent['id']} refuses ({reason}): {detail}"
            if reason in TRANSIENT:
                remarks.append(Remark(said, "agents.ids", refuse=False))
            else:
                refusals.append(said)
        if not refusals:
            return remarks
        # all: any refusal fails every run; one: only when no chosen agent may take it.
        every = mode == "all" or (not unknown and len(refusals) == len(found))
        what = f"script {script!r} is not allowed: " + "; ".join(refusals)
        remarks.append(Remark(what, "script", refuse=every))
        return remarks


async def _refusal(
    agents: Any, agent: Mapping[str, Any], params: dict[str, Any]
) -> tuple[str | None, str]:
    """Why ``agent`` would refuse the step's request; with templates in args or env values
    (rendered only at run time), only whether its allowlist lists the script at all."""
    args = params.get("args") or []
    env = params.get("env") or {}
    if any(_templated(v) for v in [*args, *env.values()]):
        names = {entry.get("name") for entry in (agent.get("allowlist") or {}).get("scripts", [])}
        if params["script"] in names:
            return None, ""
        return "not_allowlisted", f"its allowlist has no script {params['script']!r}"
    try:
        refusal = await agents.check(
            agent["id"], params["script"], args, env, params.get("timeout_seconds")
        )
    except ValidationError as exc:  # e.g. an argument longer than the agents take
        return "invalid_request", exc.message
    except MedicError as exc:  # the verifier is unavailable: the check is made when it runs
        return "allowlist_unavailable", exc.message
    return (None, "") if refusal is None else (str(refusal.reason), str(refusal.detail))


_JINJA = SandboxedEnvironment()


def _secrets_in_args(args: list[Any]) -> Iterator[Remark]:
    for index, arg in enumerate(args):
        if not _templated(arg):
            continue
        try:
            tree = _JINJA.parse(arg)
        except TemplateSyntaxError:
            continue  # the validator reports it
        if any(name.name == "secrets" for name in tree.find_all(nodes.Name)):
            yield Remark(
                "secrets may not go in a script's arguments (any user of the host can read a "
                "process's arguments, and they are stored and audited): pass it in env",
                f"args[{index}]",
            )


def _labels(labels: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _tail(text: str, limit: int) -> tuple[str, bool]:
    return (text, False) if len(text) <= limit else (text[-limit:], True)


def _result(view: Mapping[str, Any], limit: int) -> dict[str, Any]:
    output = view.get("output") or {}
    stdout, cut_out = _tail(str(output.get("stdout", "")), limit)
    stderr, cut_err = _tail(str(output.get("stderr", "")), limit)
    return {
        "agent": view["agent_id"],
        "execution_id": view["id"],
        "state": view["state"],
        "exit_code": view.get("exit_code"),
        "reason": view.get("reason"),
        "stdout": stdout,
        "stderr": stderr,
        "truncated": cut_out or cut_err or bool(view.get("output_truncated")),
        # False when chunks were lost (sent once, never replayed: a stream broken meanwhile).
        "output_complete": bool(view.get("output_complete")),
    }


def _problem(script: str, view: Mapping[str, Any]) -> str | None:
    """Why one ended execution counts as a failure (``None``: it succeeded)."""
    state, agent = view["state"], view["agent_id"]
    if state == "succeeded" and view.get("exit_code") in (0, None):
        return None
    if state in ("succeeded", "failed") and view.get("exit_code") is not None:
        last = str((view.get("output") or {}).get("stderr", "")).strip().splitlines()[-1:]
        said = f": {last[0][:200]}" if last else ""
        return f"script {script!r} on agent {agent} exited with code {view['exit_code']}{said}"
    detail = view.get("detail") or view.get("reason") or "no detail"
    if state == "timed_out":
        return f"script {script!r} on agent {agent} timed out at the agent ({detail})"
    if state == "rejected":
        return f"agent {agent} rejected script {script!r} ({view.get('reason')}): {detail}"
    return f"script {script!r} on agent {agent} ended {state} ({view.get('reason')}): {detail}"
