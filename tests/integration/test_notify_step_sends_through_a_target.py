"""The ``notify`` step, through the engine on SQLite and PostgreSQL: its rendered message goes
to the named target's notifier (kind ``playbook``, a dedup key stable across the step's
attempts); a failing receiver fails the step and its ``retry`` sends again; an unknown or
disabled target fails the run naming it; the Slack and email notifiers render the message
plainly, with no alert actions.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

from medic_core.audit import Actor
from medic_core.clock import FakeClock
from medic_core.plugins import hookimpl
from medic_core.plugins.interfaces import DeliveryError, Notification
from medic_plugins.notifiers.email.message import headline
from medic_plugins.notifiers.slack.blocks import render_message
from support.playbook_rig import ACTOR, engine_medic, run_until_settled, save

ME = Actor("test")


class Channel:
    name = "channel"
    config_schema: dict[str, Any] = {}

    def __init__(self) -> None:
        self.sent: list[Notification] = []
        self.failures: list[Exception] = []

    async def send(self, notification: Notification) -> dict[str, Any]:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(notification)
        return {}


def plugin(channel: Channel) -> tuple[str, object]:
    return ("test-channel", types.SimpleNamespace(medic_notifiers=hookimpl(lambda: [channel])))


def telling(target: str, **extra: Any) -> dict[str, Any]:
    return {
        "slug": "tell",
        "variables": {"who": {"type": "string", "default": "db-1"}},
        "steps": [
            {
                "name": "say",
                "type": "notify",
                "params": {"target": target, "message": "restarting {{ vars.who }}"},
                **extra,
            }
        ],
    }


async def test_a_notify_step_sends_its_rendered_message_through_the_target(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    channel = Channel()
    async with engine_medic(db_url, tmp_path, clock, plugins=[plugin(channel)]) as medic:
        await medic.targets.create({"slug": "ops", "notifier": "channel", "config": {}}, actor=ME)
        await save(medic, telling("ops"))
        run = await medic.runs.start("tell", {"who": "db-2"}, actor=ACTOR)
        done = await run_until_settled(medic, clock)
    assert done["state"] == "succeeded", done
    assert done["steps"][0]["output"]["ok"] is True
    [sent] = channel.sent
    assert (sent.kind, sent.target, sent.message) == ("playbook", "ops", "restarting db-2")
    assert sent.alert["summary"] == "restarting db-2"
    assert sent.dedup_key == f"medic-playbook-{run['id']}-say"
    assert sent.service["slug"] == "playbook-tell"


async def test_a_receiver_failure_fails_the_step_and_its_retry_sends_again(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    channel = Channel()
    channel.failures.append(DeliveryError("busy", status_code=503))
    async with engine_medic(db_url, tmp_path, clock, plugins=[plugin(channel)]) as medic:
        await medic.targets.create({"slug": "ops", "notifier": "channel", "config": {}}, actor=ME)
        await save(medic, telling("ops", retry={"attempts": 2, "backoff": {"initial": 5}}))
        run = await medic.runs.start("tell", {}, actor=ACTOR)
        done = await run_until_settled(medic, clock)
    assert done["state"] == "succeeded", done
    assert [(s["attempt"], s["state"]) for s in done["steps"]] == [(1, "failed"), (2, "succeeded")]
    assert "did not take the message (retryable): busy" in done["steps"][0]["error"]
    assert [n.dedup_key for n in channel.sent] == [f"medic-playbook-{run['id']}-say"]


async def test_an_unknown_or_disabled_target_fails_the_run_naming_it(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    channel = Channel()
    async with engine_medic(db_url, tmp_path, clock, plugins=[plugin(channel)]) as medic:
        await save(medic, telling("nobody"))
        await medic.runs.start("tell", {}, actor=ACTOR)
        missing = await run_until_settled(medic, clock)
        assert (missing["state"], missing["reason"]) == ("failed", "step_failed")
        assert "no target 'nobody'" in missing["detail"]

        await medic.targets.create(
            {"slug": "off", "notifier": "channel", "config": {}, "enabled": False}, actor=ME
        )
        await save(medic, telling("off"))
        await medic.runs.start("tell", {}, actor=ACTOR)
        disabled = await run_until_settled(medic, clock)
    assert "target 'off' is disabled" in disabled["detail"]
    assert channel.sent == []


def test_slack_and_email_show_a_playbook_message_plainly() -> None:
    note = Notification(
        kind="playbook",
        alert={"id": 0, "summary": "restarting db-2", "priority": "p5", "cause": "playbook"},
        service={"slug": "playbook-tell", "name": "Playbook tell"},
        target="ops",
        message="restarting db-2",
    )
    slack = render_message(note)
    assert "restarting db-2" in slack["text"]
    assert "actions" not in str(slack)  # no acknowledge/resolve buttons
    assert headline(note).startswith("P5 PLAYBOOK")
