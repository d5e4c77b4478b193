"""The PagerDuty notifier against ``FakePagerDuty``, a local Events API v2 that validates events.

Covers the wire format, the trigger/acknowledge/resolve flow on one dedup key, the severity map,
how PagerDuty's replies map to delivery errors, ``check_target`` and the plugin hook.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from medic_core.clock import FakeClock
from medic_core.observability.metrics import Metrics
from medic_core.plugins.interfaces import DeliveryError, Notification
from medic_core.plugins.manager import PluginManager
from medic_core.settings import Settings
from medic_plugins.notifiers import pagerduty as pagerduty_plugin
from medic_plugins.notifiers.pagerduty import PagerDutyNotifier
from support.fakes.pagerduty import FakePagerDuty
from support.postgres import free_port

ROUTING_KEY = "R0123456789abcdef0123456789ABCDX"  # 32 characters, as PagerDuty issues them
PUBLIC_URL = "https://medic.example.org"
ALERT_URL = "https://medic.example.org/alerts/42"
RUNBOOK_URL = "https://wiki.example.org/runbooks/backup"
NOW = datetime(2026, 3, 1, 12, 0, 5, tzinfo=UTC)


def plugin_host(**settings: Any) -> Any:
    """What the hook receives as ``medic`` (it reads ``settings`` and ``clock``)."""
    return types.SimpleNamespace(settings=Settings.load({}, **settings), clock=FakeClock(NOW))


@pytest.fixture
async def pd() -> AsyncIterator[FakePagerDuty]:
    async with FakePagerDuty() as fake:
        yield fake


@pytest.fixture
async def notifier(pd: FakePagerDuty) -> AsyncIterator[PagerDutyNotifier]:
    host = plugin_host(pagerduty_events_url=pd.url, public_url=PUBLIC_URL, notify_timeout=5.0)
    [found] = pagerduty_plugin.medic_notifiers(medic=host)
    assert isinstance(found, PagerDutyNotifier)
    yield found
    await found.close()


def alert_doc(**changes: Any) -> dict[str, Any]:
    """An alert as ``alert_to_dict`` shapes it."""
    alert: dict[str, Any] = {
        "id": 42,
        "service": service_doc(),
        "cause": "missed",
        "state": "open",
        "priority": "p2",
        "summary": "Nightly backup missed its deadline",
        "details": {"expected_at": "2026-03-01T03:00:00Z"},
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


def service_doc(**changes: Any) -> dict[str, Any]:
    service: dict[str, Any] = {
        "id": 7,
        "slug": "nightly-backup",
        "name": "Nightly backup",
        "priority": "p2",
        "team_id": None,
        "tags": [],
        "runbook_url": RUNBOOK_URL,
    }
    service.update(changes)
    return service


def note(kind: str = "opened", *, config: dict[str, Any] | None = None, **kw: Any) -> Notification:
    alert = kw.pop("alert", None) or alert_doc()
    return Notification(
        kind=kind,  # type: ignore[arg-type]
        alert=alert,
        service=alert["service"],
        config={"routing_key": ROUTING_KEY, **(config or {})},
        target="pd-oncall",
        dedup_key=kw.pop("dedup_key", "medic-7-missed-42"),
        links=kw.pop("links", {"alert": ALERT_URL, "runbook": RUNBOOK_URL}),
        delivery_id=kw.pop("delivery_id", 1),
    )


# -- wire format ---------------------------------------------------------------------------------


async def test_trigger_event_has_the_events_v2_shape(
    pd: FakePagerDuty, notifier: PagerDutyNotifier
) -> None:
    state = await notifier.send(note("opened"))
    assert state == {"dedup_key": "medic-7-missed-42"}
    [event] = pd.requests
    assert set(event) == {
        "routing_key",
        "event_action",
        "dedup_key",
        "payload",
        "links",
        "client",
        "client_url",
    }
    assert event["routing_key"] == ROUTING_KEY
    assert event["event_action"] == "trigger"
    assert event["dedup_key"] == "medic-7-missed-42"
    assert event["client"] == "Medic"
    assert event["client_url"] == PUBLIC_URL
    assert event["links"] == [
        {"href": ALERT_URL, "text": "Alert in Medic"},
        {"href": RUNBOOK_URL, "text": "Runbook"},
    ]
    payload = event["payload"]
    assert payload["summary"] == "Nightly backup missed its deadline"
    assert payload["source"] == "nightly-backup"
    assert payload["severity"] == "error"
    assert payload["timestamp"] == "2026-03-01T11:59:58Z"
    assert payload["class"] == "missed"
    assert "component" not in payload and "group" not in payload
    assert payload["custom_details"] == {
        "notification": "opened",
        "alert_id": 42,
        "service": "nightly-backup",
        "service_name": "Nightly backup",
        "cause": "missed",
        "state": "open",
        "priority": "p2",
        "opened_at": "2026-03-01T11:59:58Z",
        "details": {"expected_at": "2026-03-01T03:00:00Z"},
    }
    assert pd.headers[0]["Content-Type"].startswith("application/json")


async def test_configured_component_group_and_class_override_the_defaults(
    pd: FakePagerDuty, notifier: PagerDutyNotifier
) -> None:
    config = {"component": "postgres", "group": "prod-datapipe", "class": "backup"}
    await notifier.send(note(config=config))
    payload = pd.requests[0]["payload"]
    assert (payload["component"], payload["group"], payload["class"]) == (
        "postgres",
        "prod-datapipe",
        "backup",
    )


async def test_summary_is_cut_to_pagerdutys_limit(
    pd: FakePagerDuty, notifier: PagerDutyNotifier
) -> None:
    await notifier.send(note(alert=alert_doc(summary="x" * 5000)))
    summary = pd.requests[0]["payload"]["summary"]
    assert len(summary) == 1024
    assert summary.endswith("…")
    assert pd.alerts  # PagerDuty accepted it


async def test_test_and_repeat_triggers_are_marked_and_timestamped_now(
    pd: FakePagerDuty, notifier: PagerDutyNotifier
) -> None:
    await notifier.send(note("test"))
    await notifier.send(note("reminder"))
    test_event, reminder = pd.requests
    assert test_event["payload"]["summary"].startswith("[test] ")
    assert test_event["event_action"] == reminder["event_action"] == "trigger"
    assert reminder["payload"]["timestamp"] == "2026-03-01T12:00:05Z"
    assert reminder["payload"]["custom_details"]["notification"] == "reminder"


async def test_dedup_key_falls_back_to_the_alert_id(
    pd: FakePagerDuty, notifier: PagerDutyNotifier
) -> None:
    state = await notifier.send(note(dedup_key=""))
    assert pd.requests[0]["dedup_key"] == "medic-alert-42"
    assert state == {"dedup_key": "medic-alert-42"}


async def test_links_fall_back_to_the_service_runbook_and_may_be_absent(
    pd: FakePagerDuty, notifier: PagerDutyNotifier
) -> None:
    await notifier.send(note(links={}))
    assert pd.requests[0]["links"] == [{"href": RUNBOOK_URL, "text": "Runbook"}]
    no_runbook = alert_doc(service=service_doc(runbook_url=None))
    await notifier.send(note(links={}, alert=no_runbook, dedup_key="other"))
    assert "links" not in pd.requests[1]


async def test_acknowledge_and_resolve_use_the_key_pagerduty_confirmed(
    pd: FakePagerDuty, notifier: PagerDutyNotifier
) -> None:
    state = await notifier.send(note("opened", dedup_key="first-key"))
    assert state == {"dedup_key": "first-key"}
    later = dataclasses.replace(note("resolved", dedup_key="changed-key"), state=state)
    await notifier.send(later)
    assert pd.requests[1]["dedup_key"] == "first-key"
    assert pd.alerts["first-key"].status == "resolved"


@pytest.mark.parametrize(
    ("priority", "severity"),
    [("p1", "critical"), ("p2", "error"), ("p3", "warning"), ("p4", "info"), ("p5", "info")],
)
async def test_priority_maps_to_severity(
    pd: FakePagerDuty, notifier: PagerDutyNotifier, priority: str, severity: str
) -> None:
    await notifier.send(note(alert=alert_doc(priority=priority)))
    assert pd.requests[0]["payload"]["severity"] == severity


async def test_severity_map_overrides_single_priorities(
    pd: FakePagerDuty, notifier: PagerDutyNotifier
) -> None:
    config = {"severity_map": {"p3": "critical"}}
    await notifier.send(note(config=config, alert=alert_doc(priority="p3"), dedup_key="a"))
    await notifier.send(note(config=config, alert=alert_doc(priority="p1"), dedup_key="b"))
    assert [r["payload"]["severity"] for r in pd.requests] == ["critical", "critical"]
    await notifier.send(note(config=config, alert=alert_doc(priority="p4"), dedup_key="c"))
    assert pd.requests[2]["payload"]["severity"] == "info"


# -- the alert's life on one dedup key -----------------------------------------------------------


async def test_one_alert_is_one_pagerduty_alert_through_its_life(
    pd: FakePagerDuty, notifier: PagerDutyNotifier
) -> None:
    await notifier.send(note("opened"))
    await notifier.send(note("escalated"))
    await notifier.send(note("reminder"))
    assert len(pd.alerts) == 1
    [alert] = pd.open_alerts()
    assert (alert.status, alert.triggers) == ("triggered", 3)

    await notifier.send(note("acknowledged", alert=alert_doc(state="acknowledged")))
    assert alert.status == "acknowledged"
    await notifier.send(note("resolved", alert=alert_doc(state="resolved")))
    assert alert.status == "resolved"
    assert pd.open_alerts() == []
    assert alert.history == ["trigger", "trigger", "trigger", "acknowledge", "resolve"]
    assert pd.dropped == []

    ack, resolve = pd.requests[3:]
    for event, action in ((ack, "acknowledge"), (resolve, "resolve")):
        assert event == {
            "routing_key": ROUTING_KEY,
            "event_action": action,
            "dedup_key": "medic-7-missed-42",
        }


async def test_a_new_alert_after_resolution_opens_a_new_pagerduty_alert(
    pd: FakePagerDuty, notifier: PagerDutyNotifier
) -> None:
    await notifier.send(note("opened", dedup_key=""))
    await notifier.send(note("resolved", dedup_key=""))
    await notifier.send(note("opened", dedup_key="", alert=alert_doc(id=43)))
    assert sorted(a.dedup_key for a in pd.open_alerts()) == ["medic-alert-43"]
    assert pd.alerts["medic-alert-42"].status == "resolved"


# -- replies ---------------------------------------------------------------------------------------


async def test_an_invalid_event_is_not_retried_and_says_why(
    pd: FakePagerDuty, notifier: PagerDutyNotifier
) -> None:
    bad = dataclasses.replace(note(), config={"routing_key": "too-short"})
    with pytest.raises(DeliveryError) as caught:
        await notifier.send(bad)
    error = caught.value
    assert (error.status_code, error.retryable) == (400, False)
    assert "Event object is invalid" in str(error)
    assert "should be 32 characters" in str(error)
    assert pd.alerts == {}


async def test_rate_limit_is_retryable_and_honours_retry_after(
    pd: FakePagerDuty, notifier: PagerDutyNotifier
) -> None:
    pd.fail_next(429, retry_after="7")
    with pytest.raises(DeliveryError) as caught:
        await notifier.send(note())
    assert (caught.value.status_code, caught.value.retryable) == (429, True)
    assert caught.value.retry_after == 7.0
    assert await notifier.send(note()) == {"dedup_key": "medic-7-missed-42"}
    assert len(pd.open_alerts()) == 1


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_are_retryable(
    pd: FakePagerDuty, notifier: PagerDutyNotifier, status: int
) -> None:
    pd.fail_next(status, times=2)
    for _ in range(2):
        with pytest.raises(DeliveryError) as caught:
            await notifier.send(note())
        assert (caught.value.status_code, caught.value.retryable) == (status, True)
        assert caught.value.retry_after is None
    await notifier.send(note())
    assert len(pd.alerts) == 1


async def test_unreachable_pagerduty_is_retryable() -> None:
    url = f"http://127.0.0.1:{free_port()}/v2/enqueue"
    notifier = PagerDutyNotifier(url, timeout=2.0)
    try:
        with pytest.raises(DeliveryError) as caught:
            await notifier.send(note())
    finally:
        await notifier.close()
    assert caught.value.retryable is True
    assert caught.value.status_code is None
    assert "unreachable" in str(caught.value)


# -- check_target, schema and hook -----------------------------------------------------------------


async def test_check_target_proves_reachability_without_opening_an_incident(
    pd: FakePagerDuty, notifier: PagerDutyNotifier
) -> None:
    result = await notifier.check_target({"routing_key": ROUTING_KEY})
    assert result.status == "ok"
    [probe] = pd.requests
    assert probe["event_action"] == "resolve"
    assert probe["dedup_key"].startswith("medic-check-")
    assert pd.alerts == {} and len(pd.dropped) == 1


async def test_check_target_reports_bad_keys_and_outages(
    pd: FakePagerDuty, notifier: PagerDutyNotifier
) -> None:
    result = await notifier.check_target({"routing_key": "short"})
    assert result.status == "down" and "32-character" in result.detail
    assert pd.requests == []  # the key's shape is checked before any request

    pd.fail_next(429)
    assert (await notifier.check_target({"routing_key": ROUTING_KEY})).status == "degraded"
    pd.fail_next(503)
    assert (await notifier.check_target({"routing_key": ROUTING_KEY})).status == "down"

    offline = PagerDutyNotifier(f"http://127.0.0.1:{free_port()}/v2/enqueue", timeout=2.0)
    try:
        result = await offline.check_target({"routing_key": ROUTING_KEY})
    finally:
        await offline.close()
    assert result.status == "down" and "unreachable" in result.detail


def test_config_schema_requires_a_32_character_write_only_key() -> None:
    schema = PagerDutyNotifier.config_schema
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    assert schema["properties"]["routing_key"]["writeOnly"] is True
    assert validator.is_valid({"routing_key": ROUTING_KEY})
    assert validator.is_valid(
        {
            "routing_key": ROUTING_KEY,
            "severity_map": {"p1": "critical", "p5": "warning"},
            "component": "db",
            "group": "prod",
            "class": "backup",
        }
    )
    for bad in (
        {},
        {"routing_key": ROUTING_KEY[:-1]},
        {"routing_key": ROUTING_KEY + "Y"},
        {"routing_key": " " * 32},
        {"routing_key": ROUTING_KEY, "severity_map": {"p1": "fatal"}},
        {"routing_key": ROUTING_KEY, "severity_map": {"p9": "info"}},
        {"routing_key": ROUTING_KEY, "colour": "red"},
    ):
        assert not validator.is_valid(bad), bad


def test_the_hook_builds_the_notifier_from_settings() -> None:
    manager = PluginManager(Metrics(), entry_points=False, plugins=[("pd", pagerduty_plugin)])
    host = plugin_host(pagerduty_events_url="http://127.0.0.1:9/v2/enqueue", notify_timeout=3.0)
    notifiers = manager.notifiers(medic=host)
    found = notifiers["pagerduty"]
    assert isinstance(found, PagerDutyNotifier)
    assert found.events_url == "http://127.0.0.1:9/v2/enqueue"
    # Without a running application (``medic=None``) the defaults apply.
    [default] = pagerduty_plugin.medic_notifiers(medic=None)
    assert isinstance(default, PagerDutyNotifier)
    assert default.events_url == Settings().pagerduty_events_url
