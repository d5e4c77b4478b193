"""The webhook notifier against ``WebhookReceiver``, which verifies signatures from the docs alone.

Covers the body and headers, the signature (verifiable, tamper-evident, replay-bounded), custom
headers, configuration validation, the outbound guard (loopback, metadata, allow-hosts, DNS
answers), redirects, reply-to-error mapping, ``check_target`` and the plugin hook. The receivers
run on loopback, so most notifiers here are built with a policy that allows 127.0.0.1/32.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import socket
import time
import types
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from jsonschema import Draft202012Validator

import medic_core
from medic_core.clock import FakeClock, SystemClock
from medic_core.net.guard import OutboundPolicy
from medic_core.observability.metrics import Metrics
from medic_core.plugins.interfaces import DeliveryError, Notification
from medic_core.plugins.manager import PluginManager
from medic_core.settings import Settings
from medic_plugins.notifiers import webhook as webhook_plugin
from medic_plugins.notifiers.webhook import WebhookNotifier
from support.fakes.webhook_receiver import WebhookReceiver, verify
from support.postgres import free_port

SECRET = "whsec-0123456789abcdef-medic"
ALERT_URL = "https://medic.example.org/alerts/42"
LOOPBACK = OutboundPolicy(allow_networks=[ipaddress.ip_network("127.0.0.1/32")])


class FakeResolver(AbstractResolver):
    """DNS answers from a table (the names exist nowhere else)."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.calls: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.calls.append(host)
        if host not in self.table:
            raise OSError(f"no such host {host}")
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
            )
            for address in self.table[host]
        ]

    async def close(self) -> None:
        pass


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver(secret=SECRET) as fake:
        yield fake


@pytest.fixture
async def open_receiver() -> AsyncIterator[WebhookReceiver]:
    """A receiver that checks no signature."""
    async with WebhookReceiver() as fake:
        yield fake


@pytest.fixture
async def notifier() -> AsyncIterator[WebhookNotifier]:
    found = WebhookNotifier(LOOPBACK, timeout=5.0)
    yield found
    await found.close()


def alert_doc(**changes: Any) -> dict[str, Any]:
    alert: dict[str, Any] = {
        "id": 42,
        "service": {
            "id": 7,
            "slug": "nightly-backup",
            "name": "Nightly backup",
            "priority": "p2",
            "team_id": None,
            "tags": ["backup"],
            "runbook_url": None,
        },
        "cause": "missed",
        "state": "open",
        "priority": "p2",
        "summary": "Nightly backup missed its deadline — ünïcödé",
        "details": {},
        "opened_at": "2026-03-01T11:59:58Z",
        "acknowledged_at": None,
        "acknowledged_by": None,
        "resolved_at": None,
        "resolved_by": None,
        "resolution": None,
        "suppressed": False,
        "suppressed_reason": None,
        "notify_at": None,
        "notified_at": "2026-03-01T11:59:58Z",
    }
    alert.update(changes)
    return alert


def note(url: str, kind: str = "opened", **config: Any) -> Notification:
    alert = alert_doc()
    return Notification(
        kind=kind,  # type: ignore[arg-type]
        alert=alert,
        service=alert["service"],
        config={"url": url, **config},
        target="ops-webhook",
        dedup_key="medic-7-missed-42",
        links={"alert": ALERT_URL},
        delivery_id=8121,
    )


# -- body and headers ------------------------------------------------------------------------------


async def test_body_and_headers_follow_the_documented_format(
    receiver: WebhookReceiver, notifier: WebhookNotifier
) -> None:
    before = int(time.time())
    assert await notifier.send(note(receiver.url(), secret=SECRET)) is None
    [request] = receiver.requests
    assert request.method == "POST" and request.path == "/hook"
    assert request.verified is True, request.reason
    headers = request.headers
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == f"Medic/{medic_core.__version__}"
    assert headers["X-Medic-Event"] == "alert.opened"
    assert headers["X-Medic-Delivery"] == "8121"
    assert before <= int(headers["X-Medic-Timestamp"]) <= int(time.time())
    assert headers["X-Medic-Signature"].startswith("v1=")
    body = request.json()
    assert set(body) == {
        "version",
        "event",
        "delivery_id",
        "sent_at",
        "target",
        "dedup_key",
        "alert",
        "service",
        "links",
    }
    assert body["version"] == 1
    assert body["event"] == "alert.opened"
    assert body["delivery_id"] == "8121"
    sent_at = datetime.fromisoformat(body["sent_at"])
    assert sent_at.tzinfo is not None and body["sent_at"].endswith("Z")
    assert body["target"] == "ops-webhook"
    assert body["dedup_key"] == "medic-7-missed-42"
    assert body["alert"] == alert_doc()
    assert body["service"] == alert_doc()["service"]
    assert body["links"] == {"alert": ALERT_URL}


@pytest.mark.parametrize(
    "kind", ["opened", "acknowledged", "resolved", "escalated", "reminder", "test"]
)
async def test_every_notification_kind_names_its_event(
    open_receiver: WebhookReceiver, notifier: WebhookNotifier, kind: str
) -> None:
    await notifier.send(note(open_receiver.url(), kind))
    [request] = open_receiver.requests
    assert request.headers["X-Medic-Event"] == f"alert.{kind}"
    assert request.json()["event"] == f"alert.{kind}"


async def test_the_delivery_id_is_the_same_on_every_retry(
    open_receiver: WebhookReceiver, notifier: WebhookNotifier
) -> None:
    open_receiver.respond(503)
    notification = note(open_receiver.url())
    with pytest.raises(DeliveryError):
        await notifier.send(notification)
    await notifier.send(notification)
    first, second = open_receiver.requests
    assert first.headers["X-Medic-Delivery"] == second.headers["X-Medic-Delivery"] == "8121"
    # Without a delivery id from Medic, each send gets a fresh one.
    anonymous = dataclasses.replace(notification, delivery_id=None)
    await notifier.send(anonymous)
    await notifier.send(anonymous)
    ids = [r.headers["X-Medic-Delivery"] for r in open_receiver.requests[2:]]
    assert len(set(ids)) == 2 and all(len(i) == 32 for i in ids)
    assert [r.json()["delivery_id"] for r in open_receiver.requests[2:]] == ids


async def test_without_a_secret_nothing_is_signed(
    open_receiver: WebhookReceiver, notifier: WebhookNotifier
) -> None:
    await notifier.send(note(open_receiver.url()))
    headers = open_receiver.requests[0].headers
    assert "X-Medic-Signature" not in headers and "X-Medic-Timestamp" not in headers


# -- signature -------------------------------------------------------------------------------------


async def test_a_tampered_body_or_timestamp_or_wrong_secret_fails_verification(
    receiver: WebhookReceiver, notifier: WebhookNotifier
) -> None:
    await notifier.send(note(receiver.url(), secret=SECRET))
    [request] = receiver.requests
    body, headers = request.body, request.headers
    assert verify(SECRET, headers, body) == (True, "")
    tampered = body.replace(b'"p2"', b'"p5"', 1)
    assert tampered != body
    assert verify(SECRET, headers, tampered) == (False, "signature mismatch")
    shifted = {**headers, "X-Medic-Timestamp": str(int(headers["X-Medic-Timestamp"]) - 1)}
    assert verify(SECRET, shifted, body) == (False, "signature mismatch")
    assert verify("another-secret-of-length", headers, body) == (False, "signature mismatch")
    assert verify(SECRET, {**headers, "X-Medic-Signature": "v0=abc"}, body)[0] is False
    # Several signatures (secret rotation): any matching v1 is accepted.
    rotated = {**headers, "X-Medic-Signature": "v1=00ff, " + headers["X-Medic-Signature"]}
    assert verify(SECRET, rotated, body) == (True, "")


async def test_a_stale_timestamp_is_refused_by_the_receiver() -> None:
    async with WebhookReceiver(secret=SECRET) as receiver:
        stale = FakeClock(datetime.now(UTC) - timedelta(minutes=6))
        notifier = WebhookNotifier(LOOPBACK, timeout=5.0, clock=stale)
        try:
            with pytest.raises(DeliveryError) as caught:
                await notifier.send(note(receiver.url(), secret=SECRET))
        finally:
            await notifier.close()
    assert (caught.value.status_code, caught.value.retryable) == (401, False)
    assert receiver.requests[0].reason == "timestamp outside the 5-minute window"


async def test_the_signature_covers_the_exact_bytes_sent(
    receiver: WebhookReceiver,
) -> None:
    # A fixed clock makes the request reproducible: the signature is HMAC(secret, "ts." + body).
    now = datetime.now(UTC).replace(microsecond=0)
    notifier = WebhookNotifier(LOOPBACK, timeout=5.0, clock=FakeClock(now))
    try:
        await notifier.send(note(receiver.url(), secret=SECRET))
    finally:
        await notifier.close()
    [request] = receiver.requests
    assert request.headers["X-Medic-Timestamp"] == str(int(now.timestamp()))
    assert request.verified is True
    assert json.loads(request.body)["sent_at"] == now.isoformat().replace("+00:00", "Z")


# -- custom headers and configuration --------------------------------------------------------------


async def test_custom_headers_are_sent(
    receiver: WebhookReceiver, notifier: WebhookNotifier
) -> None:
    headers = {"Authorization": "Bearer abc123", "X-Team": "ops"}
    await notifier.send(note(receiver.url(), secret=SECRET, headers=headers))
    [request] = receiver.requests
    assert request.headers["Authorization"] == "Bearer abc123"
    assert request.headers["X-Team"] == "ops"
    assert request.verified is True


@pytest.mark.parametrize(
    "header",
    [
        "Host",
        "host",
        "Content-Type",
        "CONTENT-LENGTH",
        "Transfer-Encoding",
        "User-Agent",
        "X-Medic-Signature",
        "x-medic-timestamp",
        "X-Medic-Event",
        "X-Medic-Delivery",
        "X-Medic-Anything",
    ],
)
def test_reserved_headers_cannot_be_overridden(notifier: WebhookNotifier, header: str) -> None:
    config = {"url": "https://hooks.example.org/x", "headers": {header: "evil"}}
    with pytest.raises(ValueError, match="cannot be set"):
        notifier.validate_config(config)


async def test_send_refuses_a_configuration_that_overrides_reserved_headers(
    receiver: WebhookReceiver, notifier: WebhookNotifier
) -> None:
    bad = note(receiver.url(), secret=SECRET, headers={"X-Medic-Signature": "v1=forged"})
    with pytest.raises(DeliveryError) as caught:
        await notifier.send(bad)
    assert caught.value.retryable is False
    assert receiver.requests == []


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "'url' is a required property"),
        ({"url": "ftp://hooks.example.org/"}, "does not match"),
        ({"url": "https://hooks.example.org/", "secret": "short"}, "secret"),
        ({"url": "https://hooks.example.org/", "headers": {"Bad Name": "x"}}, "headers"),
        ({"url": "https://hooks.example.org/", "headers": {"X-A": "a\r\nX-B: b"}}, "line break"),
        ({"url": "https://hooks.example.org/", "extra": 1}, "Additional properties"),
        ({"url": "https://user:pw@hooks.example.org/"}, "user name or password"),
    ],
)
def test_validate_config_explains_what_is_wrong(
    notifier: WebhookNotifier, config: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        notifier.validate_config(config)
    assert message in str(caught.value)


def test_config_schema_marks_secrets_write_only() -> None:
    schema = WebhookNotifier.config_schema
    Draft202012Validator.check_schema(schema)
    assert schema["properties"]["secret"]["writeOnly"] is True
    assert schema["properties"]["headers"]["writeOnly"] is True
    assert schema["required"] == ["url"]


# -- the outbound guard ----------------------------------------------------------------------------


async def test_loopback_is_refused_unless_allowed(open_receiver: WebhookReceiver) -> None:
    strict = WebhookNotifier(OutboundPolicy(), timeout=5.0)
    try:
        with pytest.raises(ValueError, match="loopback"):
            strict.validate_config({"url": open_receiver.url()})
        with pytest.raises(DeliveryError) as caught:
            await strict.send(note(open_receiver.url()))
        assert caught.value.retryable is False
        assert "127.0.0.0/8" in str(caught.value)
        assert open_receiver.requests == []
    finally:
        await strict.close()

    allowed = WebhookNotifier(
        OutboundPolicy(allow_networks=[ipaddress.ip_network("127.0.0.0/8")]), timeout=5.0
    )
    try:
        allowed.validate_config({"url": open_receiver.url()})
        await allowed.send(note(open_receiver.url()))
    finally:
        await allowed.close()
    assert len(open_receiver.requests) == 1


async def test_a_name_resolving_to_loopback_is_refused_at_connect_time(
    open_receiver: WebhookReceiver,
) -> None:
    fake = FakeResolver({"hooks.example.test": ["127.0.0.1"]})
    strict = WebhookNotifier(OutboundPolicy(), timeout=5.0, resolver=fake)
    url = open_receiver.url(host="hooks.example.test")
    try:
        strict.validate_config({"url": url})  # saving is fine: DNS is not consulted then
        with pytest.raises(DeliveryError) as caught:
            await strict.send(note(url))
    finally:
        await strict.close()
    assert caught.value.retryable is False
    assert "every address 'hooks.example.test' resolves to is refused" in str(caught.value)
    assert open_receiver.requests == []
    assert fake.calls == ["hooks.example.test"]


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
        "http://169.254.170.2/v2/credentials",
    ],
)
async def test_metadata_addresses_are_refused(url: str) -> None:
    strict = WebhookNotifier(OutboundPolicy(), timeout=5.0, resolver=FakeResolver({}))
    try:
        with pytest.raises(ValueError, match="refused"):
            strict.validate_config({"url": url})
        with pytest.raises(DeliveryError) as caught:
            await strict.send(note(url))
        assert caught.value.retryable is False
        result = await strict.check_target({"url": url})
        assert result.status == "down"
    finally:
        await strict.close()


async def test_a_name_resolving_to_the_metadata_address_is_refused() -> None:
    fake = FakeResolver({"metadata.example.test": ["169.254.169.254"]})
    strict = WebhookNotifier(OutboundPolicy(), timeout=5.0, resolver=fake)
    try:
        with pytest.raises(DeliveryError, match=r"169\.254\.169\.254") as caught:
            await strict.send(note("http://metadata.example.test/latest/meta-data/"))
        assert caught.value.retryable is False
    finally:
        await strict.close()


async def test_allow_hosts_limits_destinations_to_listed_names(
    open_receiver: WebhookReceiver,
) -> None:
    fake = FakeResolver({"hooks.example.test": ["127.0.0.1"], "other.example.test": ["127.0.0.1"]})
    policy = OutboundPolicy(
        allow_hosts=["hooks.example.test"],
        allow_networks=[ipaddress.ip_network("127.0.0.1/32")],
    )
    notifier = WebhookNotifier(policy, timeout=5.0, resolver=fake)
    try:
        await notifier.send(note(open_receiver.url(host="hooks.example.test")))
        assert open_receiver.requests[0].headers["Host"].startswith("hooks.example.test:")
        for url in (open_receiver.url(host="other.example.test"), open_receiver.url()):
            with pytest.raises(ValueError, match="MEDIC_OUTBOUND_ALLOW_HOSTS"):
                notifier.validate_config({"url": url})
            with pytest.raises(DeliveryError) as caught:
                await notifier.send(note(url))
            assert caught.value.retryable is False
    finally:
        await notifier.close()
    assert len(open_receiver.requests) == 1
    assert fake.calls == ["hooks.example.test"]


async def test_wildcard_allow_hosts_admit_subdomains(open_receiver: WebhookReceiver) -> None:
    fake = FakeResolver({"a.hooks.example.test": ["127.0.0.1"]})
    policy = OutboundPolicy(
        allow_hosts=["*.hooks.example.test"],
        allow_networks=[ipaddress.ip_network("127.0.0.1/32")],
    )
    notifier = WebhookNotifier(policy, timeout=5.0, resolver=fake)
    try:
        await notifier.send(note(open_receiver.url(host="a.hooks.example.test")))
        with pytest.raises(ValueError, match="MEDIC_OUTBOUND_ALLOW_HOSTS"):
            notifier.validate_config({"url": open_receiver.url(host="hooks.example.test")})
    finally:
        await notifier.close()
    assert len(open_receiver.requests) == 1


async def test_redirects_are_not_followed(
    open_receiver: WebhookReceiver, notifier: WebhookNotifier
) -> None:
    open_receiver.redirect_to("/elsewhere")
    with pytest.raises(DeliveryError) as caught:
        await notifier.send(note(open_receiver.url("/hook")))
    assert (caught.value.status_code, caught.value.retryable) == (302, False)
    assert "redirected" in str(caught.value) and "/elsewhere" in str(caught.value)
    assert open_receiver.paths() == ["/hook"]  # the Location was never fetched


# -- replies ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 410, 413, 422])
async def test_client_errors_are_not_retried(
    open_receiver: WebhookReceiver, notifier: WebhookNotifier, status: int
) -> None:
    open_receiver.respond(status, text="nope: bad payload")
    with pytest.raises(DeliveryError) as caught:
        await notifier.send(note(open_receiver.url()))
    assert (caught.value.status_code, caught.value.retryable) == (status, False)
    assert "nope: bad payload" in str(caught.value)


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
async def test_transient_errors_are_retried(
    open_receiver: WebhookReceiver, notifier: WebhookNotifier, status: int
) -> None:
    open_receiver.respond(status)
    with pytest.raises(DeliveryError) as caught:
        await notifier.send(note(open_receiver.url()))
    assert (caught.value.status_code, caught.value.retryable) == (status, True)
    await notifier.send(note(open_receiver.url()))
    assert len(open_receiver.requests) == 2


async def test_retry_after_is_honoured_in_seconds_and_as_a_date(
    open_receiver: WebhookReceiver,
) -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    notifier = WebhookNotifier(LOOPBACK, timeout=5.0, clock=FakeClock(now))
    try:
        open_receiver.respond(429, headers={"Retry-After": "12"})
        with pytest.raises(DeliveryError) as caught:
            await notifier.send(note(open_receiver.url()))
        assert caught.value.retry_after == 12.0
        open_receiver.respond(503, headers={"Retry-After": "Sun, 01 Mar 2026 12:01:30 GMT"})
        with pytest.raises(DeliveryError) as caught:
            await notifier.send(note(open_receiver.url()))
        assert caught.value.retry_after == 90.0
    finally:
        await notifier.close()


@pytest.mark.parametrize("status", [200, 201, 202, 204])
async def test_any_2xx_is_delivered(
    open_receiver: WebhookReceiver, notifier: WebhookNotifier, status: int
) -> None:
    open_receiver.respond(status)
    assert await notifier.send(note(open_receiver.url())) is None


async def test_an_unreachable_receiver_is_retryable(notifier: WebhookNotifier) -> None:
    with pytest.raises(DeliveryError) as caught:
        await notifier.send(note(f"http://127.0.0.1:{free_port()}/hook"))
    assert caught.value.retryable is True
    assert caught.value.status_code is None


async def test_an_unknown_host_is_retryable() -> None:
    notifier = WebhookNotifier(OutboundPolicy(), timeout=5.0, resolver=FakeResolver({}))
    try:
        with pytest.raises(DeliveryError) as caught:
            await notifier.send(note("https://gone.example.test/hook"))
    finally:
        await notifier.close()
    assert caught.value.retryable is True


# -- check_target and hook -------------------------------------------------------------------------


async def test_check_target_resolves_through_the_guard_and_sends_nothing(
    open_receiver: WebhookReceiver,
) -> None:
    fake = FakeResolver(
        {
            "public.example.test": ["93.184.216.34", "10.0.0.5"],
            "private.example.test": ["10.0.0.5"],
        }
    )
    notifier = WebhookNotifier(OutboundPolicy(), timeout=5.0, resolver=fake)
    try:
        ok = await notifier.check_target({"url": "https://public.example.test/hook"})
        assert ok.status == "ok" and "93.184.216.34" in ok.detail and "10.0.0.5" not in ok.detail
        down = await notifier.check_target({"url": "https://private.example.test/hook"})
        assert down.status == "down" and "RFC 1918" in down.detail
        unknown = await notifier.check_target({"url": "https://gone.example.test/hook"})
        assert unknown.status == "down" and "cannot resolve" in unknown.detail
        literal = await notifier.check_target({"url": "https://93.184.216.34/hook"})
        assert literal.status == "ok"
        bad = await notifier.check_target({"url": "https://hooks.example.org/", "secret": "x"})
        assert bad.status == "down" and "secret" in bad.detail
        loop = await notifier.check_target({"url": open_receiver.url()})
        assert loop.status == "down"
    finally:
        await notifier.close()
    assert open_receiver.requests == []


def test_the_hook_builds_the_notifier_from_settings() -> None:
    settings = Settings.load(
        {},
        outbound_allow_hosts="hooks.example.org",
        outbound_allow_networks="10.20.0.0/16",
        notify_timeout=4.0,
    )
    host = types.SimpleNamespace(settings=settings, clock=SystemClock())
    manager = PluginManager(Metrics(), entry_points=False, plugins=[("wh", webhook_plugin)])
    found = manager.notifiers(medic=host)["webhook"]
    assert isinstance(found, WebhookNotifier)
    assert found.policy.allow_hosts == ("hooks.example.org",)
    assert found.policy.allow_networks == (ipaddress.ip_network("10.20.0.0/16"),)
    [default] = webhook_plugin.medic_notifiers(medic=None)
    assert isinstance(default, WebhookNotifier)
    assert default.policy.allow_networks == ()


def test_a_bad_allow_network_setting_fails_the_hook_loudly() -> None:
    settings = Settings.load({}, outbound_allow_networks="10.20.0.1/16")
    metrics = Metrics()
    manager = PluginManager(metrics, entry_points=False, plugins=[("wh", webhook_plugin)])
    assert "webhook" not in manager.notifiers(medic=types.SimpleNamespace(settings=settings))
    [failure] = manager.failures
    assert "did you mean 10.20.0.0/16" in failure.error
