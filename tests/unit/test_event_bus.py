"""The in-process event bus."""

from __future__ import annotations

import asyncio

from medic_core.clock import FakeClock
from medic_core.events import Event, EventBus
from medic_core.observability.metrics import Metrics

NOW = FakeClock().now()


async def test_every_subscriber_gets_every_event_in_order() -> None:
    bus = EventBus(Metrics())
    a: list[int] = []
    b: list[int] = []

    async def to_a(e: Event) -> None:
        a.append(e.data["n"])

    async def to_b(e: Event) -> None:
        b.append(e.data["n"])

    bus.subscribe("a", to_a)
    await bus.start()
    bus.subscribe("b", to_b)  # a late subscriber starts receiving at once
    for n in range(5):
        bus.publish("x.happened", NOW, n=n)
    await bus.drain()
    assert a == b == [0, 1, 2, 3, 4]
    await bus.stop()


async def test_a_failing_subscriber_is_counted_and_keeps_receiving() -> None:
    metrics = Metrics()
    bus = EventBus(metrics)
    seen: list[int] = []

    async def flaky(e: Event) -> None:
        if e.data["n"] == 0:
            raise RuntimeError("first one fails")
        seen.append(e.data["n"])

    bus.subscribe("flaky", flaky)
    await bus.start()
    bus.publish("x", NOW, n=0)
    bus.publish("x", NOW, n=1)
    await bus.drain()
    assert seen == [1]
    assert (
        metrics.registry.get_sample_value(
            "medic_event_handler_errors_total", {"subscriber": "flaky"}
        )
        == 1
    )
    await bus.stop()


async def test_a_full_subscriber_queue_drops_and_counts_without_blocking() -> None:
    metrics = Metrics()
    bus = EventBus(metrics, queue_size=2)
    gate = asyncio.Event()

    async def slow(e: Event) -> None:
        await gate.wait()

    bus.subscribe("slow", slow)
    for n in range(5):
        bus.publish("x", NOW, n=n)  # not started: nothing drains, publish must not block
    assert (
        metrics.registry.get_sample_value("medic_events_dropped_total", {"subscriber": "slow"}) == 3
    )
    gate.set()
    await bus.start()
    await bus.stop()


async def test_stream_yields_events_published_after_it_starts() -> None:
    bus = EventBus(Metrics())
    await bus.start()
    stream = bus.stream("ws")
    first = asyncio.ensure_future(stream.__anext__())
    await asyncio.sleep(0)
    event = bus.publish("alert.opened", NOW, id=7)
    received = await asyncio.wait_for(first, 1)
    assert received.to_dict() == {
        "id": event.id,
        "type": "alert.opened",
        "at": "2026-01-01T00:00:00Z",
        "data": {"id": 7},
    }
    await stream.aclose()
    assert "ws" not in bus.subscribers
    await bus.stop()
