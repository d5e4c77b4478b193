"""Metrics, logs and spans describe what happened."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from medic_core.app import Medic
from medic_core.audit import Actor
from medic_core.clock import FakeClock
from medic_core.heartbeats import HeartbeatIn
from medic_core.observability.logs import configure_logging

ME = Actor("test")


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
