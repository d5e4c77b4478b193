"""The built-in step types' ``advance``, called directly: ``wait`` until an instant (kept in its
state, refused when not an instant with an offset) and ``webhook`` (success_codes, method,
headers and JSON body sent, a transport error is a failure, the answer's body is bounded)."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime

from medic_core.clock import FakeClock
from medic_core.net.guard import OutboundPolicy
from medic_core.plugins.interfaces import Done, Failed, Later, StepRun
from medic_plugins.steps.wait import WaitStep
from medic_plugins.steps.webhook import BODY_BYTES, WebhookStep
from support.fakes.webhook_receiver import WebhookReceiver
from support.postgres import free_port

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LOOPBACK = OutboundPolicy(allow_networks=[ipaddress.ip_network("127.0.0.1/32")])


def run(state: dict[str, object] | None = None, clock: FakeClock | None = None) -> StepRun:
    return StepRun(1, "s", 1, state or {}, clock or FakeClock(NOW))


async def test_wait_until_an_instant_keeps_it_and_ends_there() -> None:
    clock = FakeClock(NOW)
    step = WaitStep()
    first = await step.advance({"until": "2026-03-01T13:00:00+01:00"}, run(clock=clock))
    assert first == Done({"waited_until": "2026-03-01T13:00:00+01:00"})  # 12:00Z: already due
    later = await step.advance({"until": "2026-03-01T12:30:00Z"}, run(clock=clock))
    assert isinstance(later, Later) and later.at == datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    clock.advance(1800)
    assert isinstance(await step.advance({}, run(later.state, clock)), Done)


async def test_wait_refuses_an_instant_without_an_offset() -> None:
    for text in ("2026-03-01T12:00:00", "soon"):
        outcome = await WaitStep().advance({"until": text}, run())
        assert isinstance(outcome, Failed) and "with an offset" in outcome.error


async def test_webhook_sends_method_headers_body_and_honours_success_codes() -> None:
    step = WebhookStep(LOOPBACK)
    try:
        async with WebhookReceiver() as fake:
            fake.respond(404, text="gone" * 10_000)
            params = {
                "url": fake.url("/x"),
                "method": "PUT",
                "headers": {"X-Token": "t"},
                "body": {"a": [1, 2]},
                "success_codes": [404],
            }
            outcome = await step.advance(params, run())
            assert isinstance(outcome, Done)
            assert outcome.output["status"] == 404
            assert len(outcome.output["body"]) == BODY_BYTES
            (request,) = fake.requests
            assert (request.method, request.json()) == ("PUT", {"a": [1, 2]})
            assert request.headers["X-Token"] == "t"
            assert request.headers["X-Medic-Execution"] == "1"
            fake.respond(500)
            failed = await step.advance({"url": fake.url("/x")}, run())
            assert isinstance(failed, Failed) and failed.error == "the endpoint answered 500"
    finally:
        await step.close()


async def test_webhook_transport_errors_fail_the_step() -> None:
    step = WebhookStep(LOOPBACK)
    try:
        outcome = await step.advance({"url": f"http://127.0.0.1:{free_port()}/"}, run())
    finally:
        await step.close()
    assert isinstance(outcome, Failed) and "failed: ClientConnectorError" in outcome.error
