"""The ``script`` step in process, on SQLite and PostgreSQL: agents chosen and checked with the
real allowlist verifier before anything is sent, execution ids kept before dispatch, a crash
while dispatching re-attached by id (one agent execution, never two), ``mode: all`` refused as
a whole, and a step timeout that cancels what an offline agent never ran.

The agents are rows as their ``Hello`` would have stored them (no stream: every execution is
queued); an agent's answer is written as the hub records it. The real agent binary runs the same
step in tests/integration/test_script_step_real_agent.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select, update

from medic_core.app import Medic
from medic_core.clock import FakeClock
from medic_core.playbooks.engine import PlaybookEngine
from medic_core.store.models import Agent, Execution, ExecutionOutput
from medic_plugins.steps.script import execution_id
from support.agent_rows import add_agent
from support.playbook_rig import ACTOR, engine_medic, run_until_settled, save

LEASE = 30


def script_step(**params: Any) -> dict[str, Any]:
    return {
        "name": "fix",
        "type": "script",
        "params": {"agents": {"ids": ["web-1"]}, "script": "restart", "args": ["nginx"], **params},
    }


async def executions(medic: Medic) -> list[Execution]:
    async with medic.db.sessions() as session:
        return list((await session.scalars(select(Execution).order_by(Execution.id))).all())


async def answer(medic: Medic, ident: str, *, exit_code: int = 0, stdout: bytes = b"") -> None:
    """What the hub records once the agent reports the end of ``ident``."""
    now = medic.clock.now()
    async with medic.db.transaction() as session:
        row = await session.scalar(select(Execution).where(Execution.execution_id == ident))
        assert row is not None
        row.state = "succeeded" if exit_code == 0 else "failed"
        row.exit_code, row.finished_at, row.output_chunks = exit_code, now, 1
        session.add(
            ExecutionOutput(
                execution_id=row.id, sequence=0, stream="stdout", data=stdout, received_at=now
            )
        )


async def test_a_script_step_checks_dispatches_once_and_records_the_output(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    async with engine_medic(db_url, tmp_path, clock) as medic:
        await add_agent(medic, "web-1")
        await save(medic, {"slug": "s", "steps": [script_step(env={"TOKEN": "t0ken"})]})
        run = await medic.runs.start("s", {}, actor=ACTOR)
        await medic.engine.run_once()
        [row] = await executions(medic)
        assert row.execution_id == execution_id(run["id"], "fix", 1, "web-1")
        assert (row.agent_id, row.script, row.args) == ("web-1", "restart", ["nginx"])
        assert row.requested_by == f"playbook-run:{run['id']}:fix"
        waiting = await medic.runs.get(run["id"])
        assert waiting["state"] == "waiting"

        await answer(medic, row.execution_id, stdout=b"restarted nginx\n")
        done = await run_until_settled(medic, clock)
        assert done["state"] == "succeeded", done
        [step] = done["steps"]
        assert step["output"]["stdout"] == "restarted nginx\n"
        assert (step["output"]["exit_code"], step["output"]["agent"]) == (0, "web-1")
        assert "t0ken" not in str(done)  # env values are never kept nor shown
        assert len(await executions(medic)) == 1


async def test_a_crash_while_dispatching_reattaches_by_id_and_never_runs_twice(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    async with engine_medic(db_url, tmp_path, clock) as medic:
        await add_agent(medic, "web-1")
        await save(medic, {"slug": "c", "steps": [script_step()]})
        run = await medic.runs.start("c", {}, actor=ACTOR)
        # The engine dies right after the execution was stored (and would have been sent),
        # before the step's outcome is recorded: what a SIGKILL at the worst moment leaves.
        actions = medic.plugin_context.agents
        real = actions.execute
        sent = asyncio.Event()

        async def execute_then_die(*args: Any, **kwargs: Any) -> dict[str, Any]:
            body = await real(*args, **kwargs)
            sent.set()
            await asyncio.Event().wait()  # never returns: the task is cancelled here
            return body

        actions.execute = execute_then_die  # type: ignore[method-assign]
        task = asyncio.create_task(medic.engine.run_once())
        await asyncio.wait_for(sent.wait(), 30)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        actions.execute = real  # type: ignore[method-assign]
        [first] = await executions(medic)

        other = PlaybookEngine(
            medic.db,
            medic.clock,
            medic.bus,
            medic.metrics,
            medic.step_types,
            medic.settings,
            plugin_context=medic.plugin_context,
        )
        clock.advance(LEASE + 1)
        await other.run_once()
        # Re-attached: the same execution, still one, with the first attempt's id.
        [again] = await executions(medic)
        assert again.execution_id == first.execution_id
        assert first.execution_id == execution_id(run["id"], "fix", 1, "web-1")
        await answer(medic, first.execution_id, stdout=b"once\n")
        done = await run_until_settled(medic, clock)
        assert done["state"] == "succeeded", done
        assert [(s["attempt"], s["state"]) for s in done["steps"]] == [
            (1, "unknown"),
            (2, "succeeded"),
        ]
        assert done["steps"][1]["output"]["execution_id"] == first.execution_id
        async with medic.db.sessions() as session:
            requested = await session.scalar(
                select(func.count()).select_from(Execution).where(Execution.agent_id == "web-1")
            )
        assert requested == 1


async def test_mode_all_is_refused_as_a_whole_when_one_agent_refuses(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    async with engine_medic(db_url, tmp_path, clock) as medic:
        await add_agent(medic, "web-1")
        await add_agent(medic, "web-2", ("other",))
        await save(
            medic,
            {
                "slug": "a",
                "steps": [
                    script_step(agents={"labels": {"role": "web"}}, mode="all"),
                ],
            },
        )
        run = await medic.runs.start("a", {}, actor=ACTOR)
        done = await run_until_settled(medic, clock)
        assert (done["id"], done["state"]) == (run["id"], "failed")
        error = done["steps"][0]["error"]
        assert "run on no agent" in error
        assert "agent web-2 refuses (not_allowlisted)" in error
        assert await executions(medic) == []


async def test_mode_all_runs_on_every_agent_and_reports_each(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    async with engine_medic(db_url, tmp_path, clock) as medic:
        await add_agent(medic, "web-1")
        await add_agent(medic, "web-2")
        await add_agent(medic, "db-1", labels={"role": "db"})
        await save(
            medic,
            {"slug": "b", "steps": [script_step(agents={"labels": {"role": "web"}}, mode="all")]},
        )
        await medic.runs.start("b", {}, actor=ACTOR)
        await medic.engine.run_once()
        rows = await executions(medic)
        assert sorted(r.agent_id for r in rows) == ["web-1", "web-2"]
        await answer(medic, rows[0].execution_id)
        await answer(medic, rows[1].execution_id, exit_code=3)
        done = await run_until_settled(medic, clock)
        assert done["state"] == "failed"
        output = done["steps"][0]["output"]
        assert output["exit_code"] == 3
        assert sorted((r["agent"], r["exit_code"]) for r in output["results"]) == [
            ("web-1", 0),
            ("web-2", 3),
        ]
        assert f"on agent {rows[1].agent_id} exited with code 3" in done["steps"][0]["error"]


async def test_mode_one_picks_an_online_agent_that_allows_the_script(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    async with engine_medic(db_url, tmp_path, clock) as medic:
        await add_agent(medic, "web-1", ("other",))
        await add_agent(medic, "web-2", status="offline")
        await add_agent(medic, "web-3")
        await save(medic, {"slug": "o", "steps": [script_step(agents={"labels": {"role": "web"}})]})
        await medic.runs.start("o", {}, actor=ACTOR)
        await medic.engine.run_once()
        assert [r.agent_id for r in await executions(medic)] == ["web-3"]


async def test_a_step_timeout_cancels_what_an_offline_agent_never_ran(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    async with engine_medic(db_url, tmp_path, clock) as medic:
        await add_agent(medic, "web-1", status="offline")
        await save(medic, {"slug": "t", "steps": [{**script_step(), "timeout": 60}]})
        await medic.runs.start("t", {}, actor=ACTOR)
        done = await run_until_settled(medic, clock)
        assert done["state"] == "failed", done
        error = done["steps"][0]["error"]
        assert "did not end before the step's timeout, so it was cancelled" in error
        assert "agent web-1 is offline" in error
        [row] = await executions(medic)
        # Never sent, so it ended at once: it will not run when the agent comes back.
        assert (row.state, row.reason) == ("cancelled", "cancelled_before_start")


async def test_a_paused_agent_fails_the_step_with_its_reason_and_runs_nothing(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    async with engine_medic(db_url, tmp_path, clock) as medic:
        await add_agent(medic, "web-1")
        await save(medic, {"slug": "p", "steps": [script_step()]})
        await medic.runs.start("p", {}, actor=ACTOR)
        async with medic.db.transaction() as session:
            await session.execute(
                update(Agent).where(Agent.agent_id == "web-1").values(paused=True)
            )
        done = await run_until_settled(medic, clock)
        assert done["state"] == "failed"
        assert "agent web-1 refuses (paused)" in done["steps"][0]["error"]
        assert await executions(medic) == []


async def test_a_rendered_argument_the_agents_cannot_take_fails_the_step_clearly(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    async with engine_medic(db_url, tmp_path, clock) as medic:
        await add_agent(medic, "web-1")
        await save(
            medic,
            {
                "slug": "l",
                "variables": {"service": {"type": "string", "default": "é" * 3000}},
                "steps": [script_step(args=["{{ vars.service }}"])],
            },
        )
        await medic.runs.start("l", {}, actor=ACTOR)
        done = await run_until_settled(medic, clock)
        assert done["state"] == "failed"
        assert done["steps"][0]["error"] == (
            "script 'restart' cannot be checked: args[0] is longer than 4096 bytes"
        )
        assert await executions(medic) == []


async def test_an_agent_deleted_mid_step_fails_the_step_saying_so(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    async with engine_medic(db_url, tmp_path, clock) as medic:
        await add_agent(medic, "web-1")
        await save(medic, {"slug": "d", "steps": [script_step()]})
        await medic.runs.start("d", {}, actor=ACTOR)
        await medic.engine.run_once()
        [row] = await executions(medic)
        async with medic.db.transaction() as session:
            await session.execute(delete(Execution))
        done = await run_until_settled(medic, clock)
        assert done["state"] == "failed"
        assert done["steps"][0]["error"] == (
            f"execution {row.execution_id} on agent web-1 no longer exists (the agent was "
            "deleted, and its executions with it)"
        )
