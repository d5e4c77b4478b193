"""The Slack notifier, its health check and the Acknowledge/Resolve buttons.

The notifier talks to ``FakeSlack`` (a local Web API that checks the wire format and fails on
request); the buttons are signed the way Slack signs them and hit the real HTTP application with
a real database.
"""

from __future__ import annotations

import types
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from jsonschema import Draft202012Validator

from conftest import make_settings
from medic_core.app import Medic
from medic_core.audit import Actor
from medic_core.clock import FakeClock
from medic_core.heartbeats import HeartbeatIn
from medic_core.observability.metrics import Metrics
from medic_core.plugins.interfaces import DeliveryError, Notification
from medic_core.plugins.manager import PluginManager
from medic_core.server.http.app import build_app
from medic_core.settings import Settings
from medic_plugins.notifiers.slack import plugin as slack_plugin
from medic_plugins.notifiers.slack.client import SlackError
from medic_plugins.notifiers.slack.notifier import SlackNotifier
from support.fakes.slack import FakeSlack, block_actions_body, sign_request
from support.postgres import free_port

TOKEN = "xoxb-1111-2222-fake"
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
ACTIONS = "/integrations/slack/actions"
ALERT_URL = "https://medic.example.org/alerts/42"
RUNBOOK_URL = "https://wiki.example.org/runbooks/backup"
ME = Actor("test")


# -- fixtures and helpers --------------------------------------------------------------------------


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(token=TOKEN) as fake:
        yield fake
        assert fake.violations == []


def plugin_host(**settings: Any) -> Any:
    """What the hooks receive as ``medic`` (they only read ``settings``)."""
    return types.SimpleNamespace(settings=Settings.load({}, **settings))


@pytest.fixture
async def notifier(slack: FakeSlack) -> AsyncIterator[SlackNotifier]:
    host = plugin_host(slack_api_url=slack.api_url, slack_bot_token=TOKEN)
    [found] = slack_plugin.medic_notifiers(medic=host)
    yield found
    await found.close()


def alert_doc(**changes: Any) -> dict[str, Any]:
    """An alert as ``alert_to_dict`` shapes it."""
    alert: dict[str, Any] = {
        "id": 42,
        "service": {
            "id": 7,
            "slug": "nightly-backup",
            "name": "Nightly backup",
            "priority": "p1",
            "team_id": None,
            "tags": [],
            "runbook_url": None,
        },
        "cause": "missed",
        "state": "open",
        "priority": "p1",
        "summary": "nightly-backup missed its deadline",
        "details": {},
        "opened_at": "2026-03-01T12:00:00Z",
        "acknowledged_at": None,
        "acknowledged_by": None,
        "resolved_at": None,
        "resolved_by": None,
        "resolution": None,
        "suppressed": False,
        "suppressed_reason": None,
        "notify_at": None,
        "notified_at": "2026-03-01T12:00:00Z",
    }
    alert.update(changes)
    return alert


ACKED = {
    "state": "acknowledged",
    "acknowledged_at": "2026-03-01T12:05:00Z",
    "acknowledged_by": "slack:U0ALICE001",
}
RESOLVED = {
    **ACKED,
    "state": "resolved",
    "resolved_at": "2026-03-01T12:10:00Z",
    "resolved_by": "slack:U0ALICE001",
    "resolution": "resolved in Slack by alice",
}


def note(
    kind: str = "opened",
    *,
    alert: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    state: dict[str, Any] | None = None,
    links: dict[str, str] | None = None,
) -> Notification:
    alert = alert or alert_doc()
    return Notification(
        kind=kind,  # type: ignore[arg-type]
        alert=alert,
        service=alert["service"],
        config={"channel": "C0ALERTS01"} if config is None else config,
        target="ops-slack",
        dedup_key=f"alert-{alert['id']}",
        state=state or {},
        links={"alert": ALERT_URL, "runbook": RUNBOOK_URL} if links is None else links,
    )


def blocks_of(message: dict[str, Any]) -> list[dict[str, Any]]:
    [attachment] = message["attachments"]
    return attachment["blocks"]


def buttons(message: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """action_id -> button, over every actions block of the message."""
    found: dict[str, dict[str, Any]] = {}
    for block in blocks_of(message):
        if block["type"] == "actions":
            for element in block["elements"]:
                found[element["action_id"]] = element
    return found


def all_text(message: dict[str, Any]) -> str:
    """Every piece of text a reader can see, flattened."""
    parts = [message.get("text", "")]
    for block in blocks_of(message):
        for key in ("text",):
            if isinstance(block.get(key), dict):
                parts.append(block[key]["text"])
        for item in block.get("fields", []) + block.get("elements", []):
            text = item.get("text")
            parts.append(text["text"] if isinstance(text, dict) else str(text))
    return "\n".join(parts)


# -- posting and updating --------------------------------------------------------------------------


async def test_an_opened_alert_is_posted_with_details_and_buttons(
    slack: FakeSlack, notifier: SlackNotifier
) -> None:
    state = await notifier.send(note("opened"))

    [request] = slack.requests
    assert request.method == "chat.postMessage"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Content-Type"] == "application/json; charset=utf-8"
    body = request.body
    assert body["channel"] == "C0ALERTS01"
    assert set(state) == {"channel", "ts"} and state["channel"] == "C0ALERTS01"
    assert (state["channel"], state["ts"]) in slack.messages
    # the plain fallback names the service and says what happened
    assert "Nightly backup" in body["text"] and "missed its deadline" in body["text"]
    assert body["attachments"][0]["fallback"]
    assert body["attachments"][0]["color"] == "#d92d20"  # p1 is red
    header = blocks_of(body)[0]
    assert header["type"] == "header" and "Nightly backup" in header["text"]["text"]
    text = all_text(body)
    for expected in ("*Cause*\nmissed", "*Priority*\nP1", "*State*\nOpen", "<!date^17723664"):
        assert expected in text
    found = buttons(body)
    assert found["medic_ack"]["value"] == "42"
    assert found["medic_resolve"]["value"] == "42"
    assert found["medic_view_alert"]["url"] == ALERT_URL
    assert found["medic_runbook"]["url"] == RUNBOOK_URL
    assert f"<{ALERT_URL}|Nightly backup>" in text


async def test_acknowledge_then_resolve_edit_the_same_message(
    slack: FakeSlack, notifier: SlackNotifier
) -> None:
    state = await notifier.send(note("opened"))

    after_ack = await notifier.send(note("acknowledged", alert=alert_doc(**ACKED), state=state))
    assert after_ack == state
    [update] = slack.calls("chat.update")
    assert (update["channel"], update["ts"]) == (state["channel"], state["ts"])
    assert set(buttons(update)) == {"medic_resolve", "medic_view_alert", "medic_runbook"}
    assert "Acknowledged by <@U0ALICE001>" in all_text(update)

    after_resolve = await notifier.send(note("resolved", alert=alert_doc(**RESOLVED), state=state))
    assert after_resolve == state
    final = slack.calls("chat.update")[-1]
    assert final["ts"] == state["ts"]
    assert set(buttons(final)) == {"medic_view_alert", "medic_runbook"}  # no more actions
    assert final["attachments"][0]["color"] == "#12b76a"
    text = all_text(final)
    assert "Resolved by <@U0ALICE001>" in text and "resolved in Slack by alice" in text
    assert final["text"].startswith("Resolved")
    # still one message in the channel, showing the resolution
    assert len(slack.calls("chat.postMessage")) == 1
    assert slack.message(state["channel"], state["ts"])["text"] == final["text"]


async def test_a_channel_name_is_answered_with_the_channel_id_used_for_updates(
    slack: FakeSlack, notifier: SlackNotifier
) -> None:
    state = await notifier.send(note("opened", config={"channel": "#alerts"}))
    assert state["channel"] == "C0ALERTS01"
    await notifier.send(note("resolved", alert=alert_doc(**RESOLVED), state=state))
    assert slack.calls("chat.update")[0]["channel"] == "C0ALERTS01"


async def test_a_transition_whose_opening_was_never_posted_posts_a_new_message(
    slack: FakeSlack, notifier: SlackNotifier
) -> None:
    state = await notifier.send(note("acknowledged", alert=alert_doc(**ACKED)))
    assert [r.method for r in slack.requests] == ["chat.postMessage"]
    assert set(buttons(slack.requests[0].body)) == {
        "medic_resolve",
        "medic_view_alert",
        "medic_runbook",
    }
    assert state["ts"]


async def test_links_are_left_out_when_absent_or_not_http(
    slack: FakeSlack, notifier: SlackNotifier
) -> None:
    await notifier.send(note("opened", links={"alert": "javascript:alert(1)"}))
    assert set(buttons(slack.requests[0].body)) == {"medic_ack", "medic_resolve"}


async def test_the_runbook_of_the_service_is_linked_when_the_links_omit_it(
    slack: FakeSlack, notifier: SlackNotifier
) -> None:
    alert = alert_doc()
    alert["service"] = {**alert["service"], "runbook_url": RUNBOOK_URL}
    await notifier.send(note("opened", alert=alert, links={}))
    assert buttons(slack.requests[0].body)["medic_runbook"]["url"] == RUNBOOK_URL


async def test_summaries_are_escaped_for_slack_mrkdwn(
    slack: FakeSlack, notifier: SlackNotifier
) -> None:
    await notifier.send(note("opened", alert=alert_doc(summary="exit <!channel> & <@U1>")))
    text = all_text(slack.requests[0].body)
    assert "<!channel>" not in text and "<@U1>" not in text
    assert "exit &lt;!channel&gt; &amp; &lt;@U1&gt;" in text


@pytest.mark.parametrize(
    ("priority", "colour"),
    [("p1", "#d92d20"), ("p2", "#f79009"), ("p3", "#fdb022"), ("p4", "#2e90fa"), ("p5", "#98a2b3")],
)
async def test_the_colour_follows_the_priority(
    slack: FakeSlack, notifier: SlackNotifier, priority: str, colour: str
) -> None:
    await notifier.send(note("opened", alert=alert_doc(priority=priority)))
    body = slack.requests[0].body
    assert body["attachments"][0]["color"] == colour
    assert f"*Priority*\n{priority.upper()}" in all_text(body)


# -- mentions, reminders, tests --------------------------------------------------------------------


async def test_the_mention_goes_with_the_opening_but_not_with_later_edits(
    slack: FakeSlack, notifier: SlackNotifier
) -> None:
    config = {"channel": "C0ALERTS01", "mention": "<!subteam^S0ONCALL01>"}
    state = await notifier.send(note("opened", config=config))
    assert slack.calls("chat.postMessage")[0]["text"].startswith("<!subteam^S0ONCALL01> ")
    await notifier.send(note("acknowledged", alert=alert_doc(**ACKED), config=config, state=state))
    await notifier.send(note("resolved", alert=alert_doc(**RESOLVED), config=config, state=state))
    assert all("<!subteam" not in u["text"] for u in slack.calls("chat.update"))


async def test_without_a_mention_nobody_is_pinged(
    slack: FakeSlack, notifier: SlackNotifier
) -> None:
    await notifier.send(note("opened"))
    assert "<!" not in slack.requests[0].body["text"]


@pytest.mark.parametrize("kind", ["reminder", "escalated"])
async def test_a_reminder_edits_the_message_and_pings_in_its_thread(
    slack: FakeSlack, notifier: SlackNotifier, kind: str
) -> None:
    config = {"channel": "C0ALERTS01", "mention": "<!here>"}
    state = await notifier.send(note("opened", config=config))

    again = await notifier.send(note(kind, config=config, state=state))

    assert again == state  # later transitions keep editing the original message
    [update] = slack.calls("chat.update")
    assert update["ts"] == state["ts"]
    label = "Reminder" if kind == "reminder" else "Escalated"
    assert label in all_text(update)
    [_, reply] = slack.calls("chat.postMessage")
    assert reply["thread_ts"] == state["ts"] and reply["reply_broadcast"] is True
    assert reply["text"].startswith("<!here> ") and label in reply["text"]


async def test_a_first_reminder_without_a_message_posts_one_with_the_mention(
    slack: FakeSlack, notifier: SlackNotifier
) -> None:
    await notifier.send(note("reminder", config={"channel": "C0ALERTS01", "mention": "<!here>"}))
    [post] = slack.calls("chat.postMessage")
    assert post["text"].startswith("<!here> ") and "thread_ts" not in post


async def test_a_test_notification_is_labelled_and_has_no_buttons(
    slack: FakeSlack, notifier: SlackNotifier
) -> None:
    config = {"channel": "C0ALERTS01", "mention": "<!here>"}
    state = await notifier.send(note("test", config=config))
    [post] = slack.calls("chat.postMessage")
    assert "Test notification" in post["text"] and "<!here>" not in post["text"]
    assert "Test notification" in blocks_of(post)[0]["text"]["text"]
    assert not [b for b in blocks_of(post) if b["type"] == "actions"]
    assert state["ts"]


# -- errors ----------------------------------------------------------------------------------------


async def send_failing(notifier: SlackNotifier, n: Notification) -> DeliveryError:
    with pytest.raises(DeliveryError) as caught:
        await notifier.send(n)
    return caught.value


@pytest.mark.parametrize(
    ("channel", "error"),
    [
        ("C0NOWHERE1", "channel_not_found"),
        ("C0OUTSIDE1", "not_in_channel"),
        ("C0ARCHIVED", "is_archived"),
    ],
)
async def test_channel_problems_are_not_retried(
    slack: FakeSlack, notifier: SlackNotifier, channel: str, error: str
) -> None:
    failure = await send_failing(notifier, note("opened", config={"channel": channel}))
    assert failure.retryable is False
    assert error in str(failure)
    assert isinstance(failure, SlackError) and failure.error == error


async def test_a_wrong_token_is_not_retried(slack: FakeSlack) -> None:
    host = plugin_host(slack_api_url=slack.api_url, slack_bot_token="xoxb-wrong")
    [wrong] = slack_plugin.medic_notifiers(medic=host)
    try:
        failure = await send_failing(wrong, note("opened"))
    finally:
        await wrong.close()
    assert failure.retryable is False and "invalid_auth" in str(failure)
    assert "MEDIC_SLACK_BOT_TOKEN" in str(failure)


async def test_an_update_of_a_deleted_message_is_not_retried(
    slack: FakeSlack, notifier: SlackNotifier
) -> None:
    state = {"channel": "C0ALERTS01", "ts": "1699999999.000001"}
    failure = await send_failing(
        notifier, note("resolved", alert=alert_doc(**RESOLVED), state=state)
    )
    assert failure.retryable is False and "message_not_found" in str(failure)


async def test_rate_limits_are_retried_after_slacks_delay(
    slack: FakeSlack, notifier: SlackNotifier
) -> None:
    slack.fail_next(status=429, retry_after=7)
    failure = await send_failing(notifier, note("opened"))
    assert failure.retryable is True
    assert failure.status_code == 429 and failure.retry_after == 7.0
    # the next attempt goes through
    assert (await notifier.send(note("opened")))["ts"]


async def test_server_errors_are_retried(
    slack: FakeSlack, notifier: SlackNotifier
) -> None:
    slack.fail_next(status=500)
    failure = await send_failing(notifier, note("opened"))
    assert failure.retryable is True and failure.status_code == 500


async def test_transient_slack_errors_are_retried(
    slack: FakeSlack, notifier: SlackNotifier
) -> None:
    slack.fail_next(error="internal_error")
    failure = await send_failing(notifier, note("opened"))
    assert failure.retryable is True and "internal_error" in str(failure)


async def test_an_unreachable_slack_is_retried() -> None:
    host = plugin_host(slack_api_url=f"http://127.0.0.1:{free_port()}/api", slack_bot_token=TOKEN)
    [offline] = slack_plugin.medic_notifiers(medic=host)
    try:
        failure = await send_failing(offline, note("opened"))
    finally:
        await offline.close()
    assert failure.retryable is True and "chat.postMessage" in str(failure)


async def test_a_slow_slack_times_out_and_is_retried(slack: FakeSlack) -> None:
    host = plugin_host(slack_api_url=slack.api_url, slack_bot_token=TOKEN, notify_timeout=0.2)
    [hurried] = slack_plugin.medic_notifiers(medic=host)
    slack.fail_next(delay=2.0)
    try:
        failure = await send_failing(hurried, note("opened"))
    finally:
        await hurried.close()
    assert failure.retryable is True


async def test_a_wrong_api_url_is_not_retried(slack: FakeSlack) -> None:
    host = plugin_host(slack_api_url=slack.api_url + "/v2", slack_bot_token=TOKEN)
    [misdirected] = slack_plugin.medic_notifiers(medic=host)
    try:
        failure = await send_failing(misdirected, note("opened"))
    finally:
        await misdirected.close()
    assert failure.retryable is False and failure.status_code == 404
    assert "MEDIC_SLACK_API_URL" in str(failure)


async def test_without_a_token_nothing_is_sent_and_nothing_retried(slack: FakeSlack) -> None:
    [unset] = slack_plugin.medic_notifiers(medic=plugin_host(slack_api_url=slack.api_url))
    failure = await send_failing(unset, note("opened"))
    await unset.close()
    assert failure.retryable is False and "MEDIC_SLACK_BOT_TOKEN" in str(failure)
    assert slack.requests == []


async def test_a_target_without_channel_is_not_retried(
    slack: FakeSlack, notifier: SlackNotifier
) -> None:
    failure = await send_failing(notifier, note("opened", config={}))
    assert failure.retryable is False and "channel" in str(failure)
    assert slack.requests == []


async def test_the_session_is_reused_and_reopened_after_close(
    slack: FakeSlack, notifier: SlackNotifier
) -> None:
    await notifier.send(note("opened"))
    await notifier.send(note("opened"))
    await notifier.close()
    await notifier.send(note("opened"))
    assert len(slack.calls("chat.postMessage")) == 3


# -- configuration ---------------------------------------------------------------------------------


def test_the_config_schema_is_valid_draft_2020_12() -> None:
    Draft202012Validator.check_schema(SlackNotifier.config_schema)


@pytest.mark.parametrize(
    "config",
    [
        {"channel": "C0123ABCD"},
        {"channel": "G0123ABCD"},
        {"channel": "#alerts"},
        {"channel": "#ops_alerts-2", "mention": "<!here>"},
        {"channel": "C0123ABCD", "mention": "<!channel>"},
        {"channel": "C0123ABCD", "mention": "<!subteam^S0123ABCD>"},
        {"channel": "C0123ABCD", "mention": "<!subteam^S0123ABCD|@oncall>"},
        {"channel": "C0123ABCD", "mention": "<@U0123ABCD> <@W0456EFGH>"},
    ],
)
def test_the_config_schema_accepts_good_targets(config: dict[str, Any]) -> None:
    assert (
        list(Draft202012Validator(SlackNotifier.config_schema).iter_errors(config))
        == []
    )


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"channel": ""},
        {"channel": "alerts"},
        {"channel": "#Alerts"},
        {"channel": "c0123abcd"},
        {"channel": 12345},
        {"channel": "C0123ABCD", "mention": "@here"},
        {"channel": "C0123ABCD", "mention": "<!here> everyone"},
        {"channel": "C0123ABCD", "mention": ""},
        {"channel": "C0123ABCD", "webhook_url": "https://hooks.example.org/x"},
    ],
)
def test_the_config_schema_rejects_bad_targets(config: dict[str, Any]) -> None:
    assert list(Draft202012Validator(SlackNotifier.config_schema).iter_errors(config))


def test_the_plugin_loads_through_the_plugin_manager() -> None:
    manager = PluginManager(Metrics(), entry_points=False, plugins=[("slack", slack_plugin)])
    host = plugin_host(slack_bot_token=TOKEN)
    assert list(manager.notifiers(host)) == ["slack"]
    assert [(n, c.critical) for n, c in manager.health_checks(host).items()] == [("slack", False)]
    assert list(manager.integrations(host)) == ["slack"]
    assert manager.failures == []


# -- health ----------------------------------------------------------------------------------------


def test_there_is_no_health_check_without_a_token() -> None:
    assert slack_plugin.medic_health_checks(medic=plugin_host()) == []


async def test_the_health_check_reports_team_and_bot(slack: FakeSlack) -> None:
    host = plugin_host(slack_api_url=slack.api_url, slack_bot_token=TOKEN)
    [check] = slack_plugin.medic_health_checks(medic=host)
    result = await check.check()
    assert result.status == "ok"
    assert "Medic Test Team" in result.detail and "medic" in result.detail
    assert [r.method for r in slack.requests] == ["auth.test"]


async def test_the_health_check_reports_slacks_error(slack: FakeSlack) -> None:
    host = plugin_host(slack_api_url=slack.api_url, slack_bot_token="xoxb-revoked")
    [check] = slack_plugin.medic_health_checks(medic=host)
    result = await check.check()
    assert result.status == "down" and "invalid_auth" in result.detail


async def test_the_health_check_reports_an_unreachable_slack() -> None:
    host = plugin_host(slack_api_url=f"http://127.0.0.1:{free_port()}/api", slack_bot_token=TOKEN)
    [check] = slack_plugin.medic_health_checks(medic=host)
    result = await check.check()
    assert result.status == "down" and "auth.test" in result.detail


@pytest.mark.parametrize(
    ("channel", "status", "detail", "looked_up"),
    [
        ("C0ALERTS01", "ok", "can post to #alerts", True),
        ("C0OUTSIDE1", "ok", "not a member", True),
        ("C0ARCHIVED", "down", "archived", True),
        ("C0NOWHERE1", "down", "channel_not_found", True),
        ("#alerts", "ok", "not looked up", False),
    ],
)
async def test_check_target_looks_up_the_channel(
    slack: FakeSlack,
    notifier: SlackNotifier,
    channel: str,
    status: str,
    detail: str,
    looked_up: bool,
) -> None:
    result = await notifier.check_target({"channel": channel})
    assert (result.status, detail in result.detail) == (status, True), result
    assert slack.calls("auth.test") == [{}]
    assert slack.calls("conversations.info") == ([{"channel": channel}] if looked_up else [])
    assert slack.calls("chat.postMessage") == []  # nobody is notified


async def test_check_target_reports_a_bad_token(slack: FakeSlack) -> None:
    host = plugin_host(slack_api_url=slack.api_url, slack_bot_token="xoxb-wrong")
    [wrong] = slack_plugin.medic_notifiers(medic=host)
    result = await wrong.check_target({"channel": "C0ALERTS01"})
    await wrong.close()
    assert result.status == "down" and "invalid_auth" in result.detail
    assert slack.calls("conversations.info") == []


# -- the Acknowledge / Resolve buttons -------------------------------------------------------------


def slack_settings(db_url: str, tmp_path: Path, slack: FakeSlack, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "notifiers": "",
        "slack_signing_secret": SECRET,
        "slack_bot_token": TOKEN,
        "slack_api_url": slack.api_url,
        "public_url": "https://medic.example.org",
    }
    values.update(extra)
    return make_settings(db_url, tmp_path, **values)


@pytest.fixture
async def wired(
    db_url: str, tmp_path: Path, clock: FakeClock, slack: FakeSlack
) -> AsyncIterator[tuple[Medic, TestClient[Any, Any]]]:
    """Medic with only the Slack plugin (and Medic's own database check), served in-process."""
    app = Medic(
        slack_settings(db_url, tmp_path, slack),
        clock=clock,
        plugins=[("slack", slack_plugin)],
        entry_points=False,
    )
    await app.start(monitor=False)
    try:
        async with TestClient(TestServer(build_app(app))) as client:
            yield app, client
    finally:
        await app.notifiers["slack"].close()  # type: ignore[attr-defined]
        await app.stop()


async def open_alert(medic: Medic, clock: FakeClock, slug: str = "nightly-backup") -> int:
    await medic.services.create(
        {"slug": slug, "name": "Nightly backup", "expectation": {"kind": "interval", "period": 60}},
        actor=ME,
    )
    await medic.writer.submit(HeartbeatIn(slug))
    clock.advance(61)
    assert (await medic.monitor.run_once()).missed == 1
    [alert] = (await medic.alerts.list(service=slug)).items
    return int(alert["id"])


async def click(
    client: TestClient[Any, Any],
    clock: FakeClock,
    action_id: str,
    value: str,
    *,
    secret: str = SECRET,
    age: float = 0,
    user_id: str = "U0ALICE001",
) -> Any:
    body = block_actions_body(action_id, value, user_id=user_id)
    headers = sign_request(secret, body, timestamp=int(clock.now().timestamp() - age))
    return await client.post(ACTIONS, data=body, headers=headers)


async def test_the_acknowledge_button_acknowledges_as_the_slack_user(
    wired: tuple[Medic, TestClient[Any, Any]], clock: FakeClock
) -> None:
    medic, client = wired
    alert_id = await open_alert(medic, clock)

    # no API key: the integration route authenticates by Slack's signature alone
    response = await click(client, clock, "medic_ack", str(alert_id))

    assert response.status == 200, await response.text()
    alert = await medic.alerts.get(alert_id)
    assert alert["state"] == "acknowledged"
    assert alert["acknowledged_by"] == "slack:U0ALICE001"
    [entry] = (await medic.audit.list(action="alert.acknowledge")).items
    assert entry["actor"] == "slack:U0ALICE001" and entry["resource_id"] == str(alert_id)
    assert entry["request_id"] == response.headers["X-Request-Id"]


async def test_the_resolve_button_resolves_as_the_slack_user(
    wired: tuple[Medic, TestClient[Any, Any]], clock: FakeClock
) -> None:
    medic, client = wired
    alert_id = await open_alert(medic, clock)

    response = await click(client, clock, "medic_resolve", str(alert_id))

    assert response.status == 200, await response.text()
    alert = await medic.alerts.get(alert_id)
    assert alert["state"] == "resolved"
    assert alert["resolved_by"] == "slack:U0ALICE001"
    assert alert["resolution"] == "resolved in Slack by alice"


async def test_a_click_with_a_bad_signature_is_refused(
    wired: tuple[Medic, TestClient[Any, Any]], clock: FakeClock
) -> None:
    medic, client = wired
    alert_id = await open_alert(medic, clock)

    response = await click(client, clock, "medic_ack", str(alert_id), secret="not-the-secret")

    assert response.status == 401
    assert response.content_type == "text/plain"
    assert "signature" in await response.text()
    assert (await medic.alerts.get(alert_id))["state"] == "open"


async def test_a_tampered_body_is_refused(
    wired: tuple[Medic, TestClient[Any, Any]], clock: FakeClock
) -> None:
    medic, client = wired
    alert_id = await open_alert(medic, clock)
    signed = block_actions_body("medic_ack", "999")
    headers = sign_request(SECRET, signed, timestamp=int(clock.now().timestamp()))
    tampered = block_actions_body("medic_ack", str(alert_id))

    response = await client.post(ACTIONS, data=tampered, headers=headers)

    assert response.status == 401
    assert (await medic.alerts.get(alert_id))["state"] == "open"


@pytest.mark.parametrize("age", [301, -301])
async def test_a_click_signed_more_than_five_minutes_off_is_refused(
    wired: tuple[Medic, TestClient[Any, Any]], clock: FakeClock, age: float
) -> None:
    medic, client = wired
    alert_id = await open_alert(medic, clock)

    response = await click(client, clock, "medic_ack", str(alert_id), age=age)

    assert response.status == 401
    assert "stale" in await response.text()
    assert (await medic.alerts.get(alert_id))["state"] == "open"


async def test_a_click_signed_within_five_minutes_is_accepted(
    wired: tuple[Medic, TestClient[Any, Any]], clock: FakeClock
) -> None:
    medic, client = wired
    alert_id = await open_alert(medic, clock)
    response = await click(client, clock, "medic_ack", str(alert_id), age=290)
    assert response.status == 200
    assert (await medic.alerts.get(alert_id))["state"] == "acknowledged"


async def test_an_unsigned_click_is_refused(
    wired: tuple[Medic, TestClient[Any, Any]], clock: FakeClock
) -> None:
    _, client = wired
    body = block_actions_body("medic_ack", "1")
    response = await client.post(
        ACTIONS, data=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status == 401


async def test_a_click_with_a_malformed_timestamp_is_refused(
    wired: tuple[Medic, TestClient[Any, Any]], clock: FakeClock
) -> None:
    _, client = wired
    body = block_actions_body("medic_ack", "1")
    headers = sign_request(SECRET, body, timestamp=int(clock.now().timestamp()))
    headers["X-Slack-Request-Timestamp"] = "1e9"
    response = await client.post(ACTIONS, data=body, headers=headers)
    assert response.status == 401 and "Timestamp" in await response.text()


async def test_clicks_are_refused_with_503_when_no_signing_secret_is_set(
    db_url: str, tmp_path: Path, clock: FakeClock, slack: FakeSlack
) -> None:
    settings = slack_settings(db_url, tmp_path, slack, slack_signing_secret="")
    app = Medic(settings, clock=clock, plugins=[("slack", slack_plugin)], entry_points=False)
    await app.start(monitor=False)
    try:
        async with TestClient(TestServer(build_app(app))) as client:
            response = await click(client, clock, "medic_ack", "1", secret="")
            assert response.status == 503
            assert "MEDIC_SLACK_SIGNING_SECRET" in await response.text()
    finally:
        await app.stop()


@pytest.mark.parametrize(
    ("action_id", "first"),
    [
        ("medic_ack", "medic_resolve"),
        ("medic_resolve", "medic_resolve"),
        ("medic_ack", "medic_ack"),
    ],
)
async def test_a_late_click_on_a_handled_alert_is_answered_200(
    wired: tuple[Medic, TestClient[Any, Any]], clock: FakeClock, action_id: str, first: str
) -> None:
    medic, client = wired
    alert_id = await open_alert(medic, clock)
    assert (await click(client, clock, first, str(alert_id), user_id="U0BOB00001")).status == 200
    before = await medic.alerts.get(alert_id)

    response = await click(client, clock, action_id, str(alert_id))

    assert response.status == 200
    assert await medic.alerts.get(alert_id) == before  # the first click stands


@pytest.mark.parametrize(
    ("action_id", "value"),
    [
        ("medic_ack", "999999"),
        ("medic_ack", "not-a-number"),
        ("medic_view_alert", "1"),
        ("medic_runbook", ""),
    ],
)
async def test_unknown_alerts_and_other_buttons_are_ignored(
    wired: tuple[Medic, TestClient[Any, Any]], clock: FakeClock, action_id: str, value: str
) -> None:
    medic, client = wired
    alert_id = await open_alert(medic, clock)
    response = await click(client, clock, action_id, value)
    assert response.status == 200
    assert (await medic.alerts.get(alert_id))["state"] == "open"


async def test_other_interaction_types_are_ignored(
    wired: tuple[Medic, TestClient[Any, Any]], clock: FakeClock
) -> None:
    _, client = wired
    body = b"payload=" + b"%7B%22type%22%3A%22view_closed%22%7D"
    headers = sign_request(SECRET, body, timestamp=int(clock.now().timestamp()))
    assert (await client.post(ACTIONS, data=body, headers=headers)).status == 200


async def test_a_signed_body_without_a_payload_is_a_400(
    wired: tuple[Medic, TestClient[Any, Any]], clock: FakeClock
) -> None:
    _, client = wired
    body = b"payload=%7Bnot+json"
    headers = sign_request(SECRET, body, timestamp=int(clock.now().timestamp()))
    response = await client.post(ACTIONS, data=body, headers=headers)
    assert response.status == 400 and "payload" in await response.text()


async def test_only_post_is_routed(wired: tuple[Medic, TestClient[Any, Any]]) -> None:
    _, client = wired
    response = await client.get(ACTIONS)
    assert response.status == 405
    assert response.content_type == "application/problem+json"


async def test_readiness_shows_slack_as_a_non_critical_check(
    wired: tuple[Medic, TestClient[Any, Any]], slack: FakeSlack
) -> None:
    medic, client = wired
    token = await medic.ensure_admin_key()
    headers = {"Authorization": f"Bearer {token}"}  # the details need a key
    slack.fail_next(error="token_revoked", method="auth.test")
    response = await client.get("/health/ready", headers=headers)
    assert response.status == 200  # Slack being down does not make Medic unready
    check = (await response.json())["checks"]["slack"]
    assert check["critical"] is False and check["status"] == "down"
    assert "token_revoked" in check["detail"]
    ready = await (await client.get("/health/ready", headers=headers)).json()
    assert ready["checks"]["slack"]["status"] == "ok"


async def test_a_real_alert_round_trips_through_slack(
    wired: tuple[Medic, TestClient[Any, Any]], clock: FakeClock, slack: FakeSlack
) -> None:
    """Post a real alert, click Acknowledge in 'Slack', and edit the message with the result."""
    medic, client = wired
    notifier = medic.notifiers["slack"]
    alert_id = await open_alert(medic, clock)
    links = {"alert": f"https://medic.example.org/alerts/{alert_id}"}
    opened = await medic.alerts.get(alert_id)
    state = await notifier.send(note("opened", alert=opened, links=links))
    ack = buttons(slack.calls("chat.postMessage")[0])["medic_ack"]

    assert (await click(client, clock, ack["action_id"], ack["value"])).status == 200

    acknowledged = await medic.alerts.get(alert_id)
    assert (
        await notifier.send(note("acknowledged", alert=acknowledged, state=state, links=links))
        == state
    )
    [update] = slack.calls("chat.update")
    assert update["ts"] == state["ts"]
    assert set(buttons(update)) == {"medic_resolve", "medic_view_alert"}
    assert "Acknowledged by <@U0ALICE001>" in all_text(update)
