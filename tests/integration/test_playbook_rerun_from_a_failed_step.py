"""Rerunning a failed playbook run from a step, on SQLite and PostgreSQL: a new attempt of the
step it stopped at (or of a named earlier step), every earlier step run kept, on the version
the run pinned; only a failed or timed-out run (an ``outcome_unknown`` one included), never
while another run of its playbook is active; audited with its actor; over the API with a
``write`` key (a ``read`` key is refused), and through ``medic playbook rerun``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from conftest import auth
from medic_core.app import Medic
from medic_core.audit import Actor
from medic_core.clock import FakeClock
from medic_core.errors import Conflict, ValidationError
from support.fakes.webhook_receiver import WebhookReceiver
from support.playbook_rig import ACTOR, engine_medic, run_until_settled, save


def two_hooks(fake: WebhookReceiver, **second: Any) -> dict[str, Any]:
    return {
        "slug": "fix",
        "steps": [
            {"name": "first", "type": "webhook", "params": {"url": fake.url("/first")}},
            {"name": "second", "type": "webhook", "params": {"url": fake.url("/second")}, **second},
        ],
    }


def attempts(run: dict[str, Any]) -> list[tuple[str, int, str]]:
    return [(s["name"], s["attempt"], s["state"]) for s in run["steps"]]


async def test_a_failed_run_reruns_its_failed_step_as_a_new_attempt_keeping_earlier_runs(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    async with WebhookReceiver() as fake, engine_medic(db_url, tmp_path, clock) as medic:
        await save(medic, two_hooks(fake))
        fake.respond(200)
        fake.respond(500)
        run = await medic.runs.start("fix", {}, actor=ACTOR)
        failed = await run_until_settled(medic, clock)
        assert (failed["state"], failed["reason"]) == ("failed", "step_failed")
        # A new version of the playbook does not change what the rerun runs.
        await save(
            medic,
            {"slug": "fix", "steps": [{"name": "x", "type": "wait", "params": {"seconds": 1}}]},
        )

        again = await medic.runs.rerun(run["id"], actor=Actor("key:ops"))
        assert (again["state"], again["reason"], again["detail"]) == ("pending", None, None)
        done = await run_until_settled(medic, clock)
        assert done["id"] == run["id"] and done["state"] == "succeeded", done
        assert attempts(done) == [
            ("first", 1, "succeeded"),
            ("second", 1, "failed"),
            ("second", 2, "succeeded"),
        ]
        assert fake.paths() == ["/first", "/second", "/second"]  # the first step ran once
        audit = await medic.audit.list(resource_type="playbook_execution", action="playbook.rerun")
        [listed] = audit.items
        entry = await medic.audit.get(listed["id"])
        assert entry["actor"] == "key:ops"
        assert entry["after"] == {"from_step": "second", "step_index": 1}
        assert entry["before"]["state"] == "failed"


async def test_a_rerun_from_an_earlier_step_runs_it_and_what_follows_again(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    async with WebhookReceiver() as fake, engine_medic(db_url, tmp_path, clock) as medic:
        await save(medic, two_hooks(fake))
        fake.respond(200)
        fake.respond(500)
        run = await medic.runs.start("fix", {}, actor=ACTOR)
        await run_until_settled(medic, clock)
        with pytest.raises(ValidationError, match="has no step 'nope'"):
            await medic.runs.rerun(run["id"], from_step="nope", actor=ACTOR)
        await medic.runs.rerun(run["id"], from_step="first", actor=ACTOR)
        done = await run_until_settled(medic, clock)
    assert done["state"] == "succeeded"
    assert attempts(done) == [
        ("first", 1, "succeeded"),
        ("second", 1, "failed"),
        ("first", 2, "succeeded"),  # the rerun step: its next attempt
        ("second", 1, "succeeded"),  # what follows: a fresh visit, as after a goto
    ]


async def test_only_a_failed_run_reruns_and_never_beside_an_active_one(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    async with WebhookReceiver() as fake, engine_medic(db_url, tmp_path, clock) as medic:
        await save(medic, two_hooks(fake))
        ok = await medic.runs.start("fix", {}, actor=ACTOR)
        with pytest.raises(Conflict, match="is pending: only a failed or timed out run"):
            await medic.runs.rerun(ok["id"], actor=ACTOR)
        assert (await run_until_settled(medic, clock))["state"] == "succeeded"
        with pytest.raises(Conflict, match="is succeeded"):
            await medic.runs.rerun(ok["id"], actor=ACTOR)

        fake.respond(500)
        failed = await medic.runs.start("fix", {}, actor=ACTOR)
        assert (await run_until_settled(medic, clock))["state"] == "failed"
        active = await medic.runs.start("fix", {}, actor=ACTOR)
        with pytest.raises(Conflict, match=f"while run {active['id']}") as refused:
            await medic.runs.rerun(failed["id"], actor=ACTOR)
        assert refused.value.extra["active_execution"] == active["id"]
        assert (await medic.runs.get(failed["id"]))["state"] == "failed"  # untouched


async def test_a_run_stopped_with_an_unknown_outcome_reruns_once_a_human_checked(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    async with WebhookReceiver() as fake, engine_medic(db_url, tmp_path, clock) as medic:
        fake.hold("/first", times=1)
        await save(medic, two_hooks(fake))
        run = await medic.runs.start("fix", {}, actor=ACTOR)
        task = asyncio.create_task(medic.engine.run_once())
        await asyncio.wait_for(fake.arrived.wait(), 30)
        task.cancel()  # what a SIGKILL leaves: the step run "running", the lease held
        await asyncio.gather(task, return_exceptions=True)
        clock.advance(medic.settings.playbook_lease + 1)
        unknown = await run_until_settled(medic, clock)
        assert (unknown["state"], unknown["reason"]) == ("failed", "outcome_unknown")

        await medic.runs.rerun(run["id"], actor=ACTOR)
        done = await run_until_settled(medic, clock)
    assert done["state"] == "succeeded"
    assert attempts(done)[:2] == [("first", 1, "unknown"), ("first", 2, "succeeded")]


async def test_rerun_over_the_api_needs_a_write_key(
    client: TestClient, admin_token: str, medic: Medic
) -> None:
    # Loopback is refused by the outbound guard here: the webhook step fails.
    await medic.playbooks.apply(
        {
            "slug": "hook",
            "steps": [
                {"name": "call", "type": "webhook", "params": {"url": "http://127.0.0.1:9/"}}
            ],
        },
        actor=Actor("test"),
    )
    run = await medic.runs.start("hook", {}, actor=Actor("test"))
    await medic.engine.run_once()
    assert (await medic.runs.get(run["id"]))["state"] == "failed"
    _, reader = await medic.keys.create(name="r", scopes=["read"], actor=Actor("test"))
    path = f"/api/v1/playbook-runs/{run['id']}/rerun"

    assert (await client.post(path, headers=auth(reader))).status == 403
    bad = await client.post(path, json={"from_step": "nope"}, headers=auth(admin_token))
    assert bad.status == 422, await bad.text()
    answer = await client.post(path, headers=auth(admin_token))  # no body: the failed step
    assert answer.status == 200, await answer.text()
    assert (await answer.json())["state"] == "pending"
    again = await client.post(path, json={"from_step": "call"}, headers=auth(admin_token))
    assert again.status == 409  # pending now
    await medic.engine.run_once()
    rerun = await medic.runs.get(run["id"])
    assert attempts(rerun) == [("call", 1, "failed"), ("call", 2, "failed")]
