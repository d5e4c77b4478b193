"""Alerts reach notifier plugins; metrics, logs and spans describe what happened."""

from __future__ import annotations

import json
import logging
import types
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from conftest import make_settings
from medic_core.app import Medic
from medic_core.audit import Actor
from medic_core.clock import FakeClock
from medic_core.heartbeats import HeartbeatIn
from medic_core.observability.logs import configure_logging
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


async def test_metrics_count_heartbeats_alerts_and_requests(
    medic: Medic, client: Any, admin_token: str, clock: FakeClock
) -> None:
    await medic.services.create(
        {"slug": "job", "expectation": {"kind": "interval", "period": 60}}, actor=ME
    )
    headers = {"Authorization": f"Bearer {admin_token}"}
    assert (await client.get("/api/v1/ping/job", headers=headers)).status == 200
    assert (await client.get("/api/v1/ping/job/fail", headers=headers)).status == 200
    clock.advance(30)
    result = await medic.monitor.run_once()
    assert result.lag == 0
    text = await (await client.get("/metrics")).text()
    assert 'medic_heartbeats_total{status="ok"} 1.0' in text
    assert 'medic_heartbeats_total{status="fail"} 1.0' in text
    assert 'medic_alerts_total{cause="failed",state="open"} 1.0' in text
    assert (
        'medic_http_requests_total{method="GET",route="/api/v1/ping/{slug}",status="200"} 1.0'
        in text
    )
    assert "medic_ingest_latency_seconds_bucket" in text
    assert "medic_monitor_lag_seconds 0.0" in text


async def test_monitor_lag_is_age_of_oldest_unhandled_deadline(
    medic: Medic, clock: FakeClock
) -> None:
    await medic.services.create(
        {"slug": "a", "expectation": {"kind": "interval", "period": 60}}, actor=ME
    )
    await medic.writer.submit(HeartbeatIn("a"))
    medic.monitor._batch = 0  # claim nothing: the deadline stays unhandled
    clock.advance(90)
    result = await medic.monitor.run_once()
    assert result.lag == pytest.approx(30)


def test_logs_are_one_json_object_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", json=True)
    try:
        logging.getLogger("medic.test").info("hello", extra={"service": "job"})
    finally:
        logging.getLogger().handlers.clear()
    line = capsys.readouterr().err.strip().splitlines()[-1]
    record = json.loads(line)
    assert record["message"] == "hello" and record["level"] == "INFO"
    assert record["service"] == "job" and record["logger"] == "medic.test"


async def test_ingest_and_monitor_emit_spans(
    medic: Medic, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    import medic_core.monitor.monitor as monitor_module
    import medic_core.store.group_commit as group_commit_module  # the writer's batches

    tracer = provider.get_tracer("medic")
    monkeypatch.setattr(group_commit_module, "tracer", tracer)
    monkeypatch.setattr(monitor_module, "tracer", tracer)
    await medic.services.create(
        {"slug": "a", "expectation": {"kind": "interval", "period": 60}}, actor=ME
    )
    await medic.writer.submit(HeartbeatIn("a"))
    await medic.monitor.run_once()
    names = [s.name for s in exporter.get_finished_spans()]
    assert "heartbeats.write_batch" in names and "monitor.pass" in names


async def test_http_requests_are_spans_only_when_a_tracer_provider_is_installed(
    client: Any, admin_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opentelemetry import trace

    import medic_core.server.http.middleware as middleware
    from medic_core.observability.tracing import tracing_enabled

    assert not tracing_enabled()  # the API's proxy provider: requests skip span creation
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    assert tracing_enabled()
    monkeypatch.setattr(middleware, "tracer", provider.get_tracer("medic"))
    response = await client.get(
        "/api/v1/services", headers={"Authorization": f"Bearer {admin_token}"}
    )
    assert response.status == 200
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert spans["GET /api/v1/services"].attributes["http.status_code"] == 200
