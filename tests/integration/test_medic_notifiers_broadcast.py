"""MEDIC_NOTIFIERS: every alert change people were told of reaches the config-less notifiers
named in the setting, in process and best effort, beside the outbox (docs/alert-delivery.md).

Moved from test_notifications_and_observability.py when notify/dispatcher.py became
notify/broadcast.py (issue 17).
"""

from __future__ import annotations

import logging
import types
from pathlib import Path
from typing import Any

import pytest

from conftest import make_settings
from medic_core.app import Medic
from medic_core.audit import Actor
from medic_core.clock import FakeClock
from medic_core.heartbeats import HeartbeatIn
from medic_core.plugins import hookimpl
from medic_core.plugins.interfaces import Notification

ME = Actor("test")


class Recorder:
    name = "recorder"
    config_schema: dict[str, Any] = {}

    def __init__(self) -> None:
        self.kinds: list[tuple[str, str]] = []

    async def send(self, notification: Notification) -> None:
        self.kinds.append((notification.kind, notification.alert["cause"]))


class Broken:
    name = "broken"
    config_schema: dict[str, Any] = {}

    async def send(self, notification: Notification) -> None:
        raise ConnectionError("endpoint down")


@pytest.fixture
async def wired(db_url: str, tmp_path: Path, clock: FakeClock):
    recorder = Recorder()
    plugin = types.SimpleNamespace(medic_notifiers=hookimpl(lambda: [recorder, Broken()]))
    app = Medic(
        make_settings(db_url, tmp_path, notifiers="broken,recorder,log"),
        clock=clock,
        plugins=[("test-notifiers", plugin)],
    )
    await app.start(monitor=False)
    try:
        yield app, recorder
    finally:
        await app.stop()


async def test_alert_transitions_reach_every_configured_notifier(
    wired: tuple[Medic, Recorder], clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    medic, recorder = wired
    caplog.set_level(logging.INFO)
    await medic.services.create(
        {"slug": "job", "expectation": {"kind": "interval", "period": 60}}, actor=ME
    )
    await medic.writer.submit(HeartbeatIn("job"))
    clock.advance(61)
    await medic.monitor.run_once()
    await medic.writer.submit(HeartbeatIn("job"))
    await medic.bus.drain()
    # The broken notifier failed first; the others were still called.
    assert recorder.kinds == [("opened", "missed"), ("resolved", "missed")]
    log_lines = [r for r in caplog.records if r.name == "medic.notify.log"]
    assert [r.getMessage() for r in log_lines] == [
        "alert opened: job missed its deadline",
        "alert resolved: job missed its deadline",
    ]
    errors = medic.metrics.registry.get_sample_value(
        "medic_notifications_total", {"notifier": "broken", "outcome": "error"}
    )
    assert errors == 2


async def test_suppressed_alert_is_not_notified_until_released(
    wired: tuple[Medic, Recorder], clock: FakeClock
) -> None:
    medic, recorder = wired
    await medic.services.create(
        {"slug": "job", "expectation": {"kind": "interval", "period": 60}}, actor=ME
    )
    await medic.services.mute("job", until=None, reason="noisy", actor=ME)
    await medic.writer.submit(HeartbeatIn("job"))
    clock.advance(61)
    await medic.monitor.run_once()
    await medic.bus.drain()
    assert recorder.kinds == []
    await medic.services.unmute("job", actor=ME)
    await medic.monitor.run_once()
    await medic.bus.drain()
    assert recorder.kinds == [("opened", "missed")]


def test_unknown_notifier_name_fails_at_start_with_the_loaded_names(
    db_url: str, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=r"unknown notifier.*pigeon.*loaded: .*log.*slack"):
        Medic(make_settings(db_url, tmp_path, notifiers="pigeon"))


async def test_an_acknowledgement_is_broadcast_and_nothing_enters_the_outbox(
    wired: tuple[Medic, Recorder], clock: FakeClock
) -> None:
    medic, recorder = wired
    await medic.services.create(
        {"slug": "job", "expectation": {"kind": "interval", "period": 60}}, actor=ME
    )
    await medic.writer.submit(HeartbeatIn("job"))
    clock.advance(61)
    await medic.monitor.run_once()
    [alert] = (await medic.alerts.list()).items
    await medic.alerts.acknowledge(alert["id"], actor=ME)
    await medic.alerts.resolve(alert["id"], actor=ME)
    await medic.bus.drain()
    assert recorder.kinds == [
        ("opened", "missed"),
        ("acknowledged", "missed"),
        ("resolved", "missed"),
    ]
    # Best effort, in process: no target is routed, so the outbox holds nothing.
    assert (await medic.delivery.list()).items == []
