"""Each step run is a span (``playbook.step``) naming the playbook, run, step, type and attempt,
with its outcome; a failed step's span is an error with the step's reason -- when a tracer
provider is installed (the engine uses the shared ``medic`` tracer)."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import medic_core.playbooks.engine as engine_module
from medic_core.app import Medic
from medic_core.audit import SYSTEM
from medic_core.clock import FakeClock

PLAYBOOK = {
    "slug": "spans",
    "steps": [
        {"name": "pause", "type": "wait", "params": {"seconds": 5}},
        # Loopback is refused by the outbound guard: the step fails without a request.
        {"name": "call", "type": "webhook", "params": {"url": "http://127.0.0.1:9/"}},
    ],
}


async def test_every_step_run_is_a_span_with_its_outcome(
    medic: Medic, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(engine_module, "tracer", provider.get_tracer("medic"))
    await medic.playbooks.apply(PLAYBOOK, actor=SYSTEM)
    run = await medic.runs.start("spans", {}, actor=SYSTEM)
    await medic.engine.run_once()
    clock.advance(5)
    await medic.engine.run_once()

    spans = [s for s in exporter.get_finished_spans() if s.name == "playbook.step"]
    seen = [
        (s.attributes["medic.step"], s.attributes["medic.outcome"], s.status.status_code)
        for s in spans
        if s.attributes is not None
    ]
    assert seen == [
        ("pause", "later", StatusCode.UNSET),
        ("pause", "done", StatusCode.UNSET),
        ("call", "failed", StatusCode.ERROR),
    ]
    first = spans[0].attributes
    assert first is not None
    assert first["medic.playbook"] == "spans"
    assert first["medic.execution_id"] == run["id"]
    assert first["medic.step_type"] == "wait"
    assert first["medic.attempt"] == 1
    assert spans[2].status.description and "127.0.0.1" in spans[2].status.description
