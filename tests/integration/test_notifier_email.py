"""The email notifier against a real SMTP server on 127.0.0.1 (STARTTLS, AUTH, a test CA)."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from medic_core.clock import FakeClock
from medic_core.observability.metrics import Metrics
from medic_core.plugins.interfaces import DeliveryError, HealthCheck, Notification, Notifier
from medic_core.plugins.manager import PluginManager
from medic_core.settings import Settings
from medic_plugins.notifiers.email import plugin as email_plugin
from medic_plugins.notifiers.email.notifier import CONFIG_SCHEMA, EmailNotifier
from support.fakes.smtp import FakeSmtpServer

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SENDER = "Medic <medic@example.org>"
TO = ["oncall@example.org", "backup-team@example.org"]
CC = ["lead@example.org"]
ALERT_URL = "https://medic.example.org/alerts/7"
RUNBOOK_URL = "https://wiki.example.org/runbooks/backup?step=1&x=2"


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[FakeSmtpServer]:
    with FakeSmtpServer(tmp_path) as server:
        yield server


def medic_for(smtp: FakeSmtpServer | None, **overrides: Any) -> SimpleNamespace:
    """What the hooks receive: ``medic.settings`` and ``medic.clock``."""
    values: dict[str, Any] = {"notify_timeout": 5.0}
    if smtp is not None:
        values.update(
            smtp_host=smtp.host,
            smtp_port=smtp.port,
            smtp_username=smtp.user,
            smtp_password=smtp.password,
            smtp_ca_file=str(smtp.ca_file),
            smtp_from=SENDER,
        )
    values.update(overrides)
    return SimpleNamespace(settings=Settings.load({}, **values), clock=FakeClock(START))


def plugins() -> PluginManager:
    return PluginManager(Metrics(), entry_points=False, plugins=[("email", email_plugin)])


def notifier(medic: Any) -> Notifier:
    return plugins().notifiers(medic)["email"]


def notification(
    kind: Any = "opened",
    *,
    remembered: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    service_name: str = "Nightly backup",
    runbook: str = RUNBOOK_URL,
    **alert_changes: Any,
) -> Notification:
    service = {
        "id": 3,
        "slug": "nightly-backup",
        "name": service_name,
        "priority": "p1",
        "team_id": None,
        "tags": ["backup"],
        "runbook_url": runbook,
    }
    alert: dict[str, Any] = {
        "id": 7,
        "service": service,
        "cause": "missed",
        "state": "open",
        "priority": "p1",
        "summary": "no heartbeat since 2026-03-01T03:00:00Z",
        "details": {"expected_at": "2026-03-01T03:00:00Z", "grace": 600},
        "opened_at": "2026-03-01T03:10:00Z",
        "acknowledged_at": None,
        "acknowledged_by": None,
        "resolved_at": None,
        "resolved_by": None,
        "resolution": None,
        "suppressed": False,
        "suppressed_reason": None,
        "notify_at": "2026-03-01T03:10:00Z",
        "notified_at": "2026-03-01T03:10:01Z",
    }
    alert.update(alert_changes)
    return Notification(
        kind=kind,
        alert=alert,
        service=service,
        config={"to": TO, "cc": CC} if config is None else config,
        target="ops-mail",
        dedup_key="alert-7",
        state=remembered or {},
        links={"alert": ALERT_URL, "runbook": runbook},
        delivery_id=11,
    )


# The tags and attributes the HTML part is built from: none can load or run anything.
SAFE_TAGS = {
    "html",
    "head",
    "meta",
    "title",
    "body",
    "p",
    "table",
    "tr",
    "th",
    "td",
    "ul",
    "li",
    "code",
    "a",
}


class Tags(HTMLParser):
    """Every start tag of an HTML document, with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.append((tag, attrs))


def parts(message: Any) -> tuple[str, str]:
    plain = message.get_body(("plain",))
    rich = message.get_body(("html",))
    assert plain is not None and rich is not None
    return plain.get_content(), rich.get_content()


# -- delivery ------------------------------------------------------------------------------------


async def test_an_opened_alert_arrives_over_starttls_after_login(smtp: FakeSmtpServer) -> None:
    state = await notifier(medic_for(smtp)).send(notification())

    [mail] = smtp.received
    assert mail.tls and mail.login == smtp.user
    assert mail.mail_from == "medic@example.org"
    assert sorted(mail.rcpt_tos) == sorted(TO + CC)
    assert [(tls, ok) for _, _, tls, ok in smtp.auth_attempts] == [(True, True)]
    assert state == {"message_id": mail.message["Message-ID"]}


async def test_the_mail_has_sender_recipients_subject_and_a_message_id(
    smtp: FakeSmtpServer,
) -> None:
    await notifier(medic_for(smtp)).send(notification())

    message = smtp.received[0].message
    assert message.defects == [] and all(p.defects == [] for p in message.iter_parts())
    assert message["From"] == SENDER
    assert message["To"] == ", ".join(TO)
    assert message["Cc"] == ", ".join(CC)
    assert message["Subject"] == "[Medic] P1 OPEN: Nightly backup — missed"
    assert re.fullmatch(r"<[^<>@\s]+@example\.org>", message["Message-ID"])
    assert message["Date"] == "Sun, 01 Mar 2026 12:00:00 +0000"  # the injected clock
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["X-Medic-Alert-Id"] == "7"
    assert message["In-Reply-To"] is None and message["References"] is None
    assert message["Bcc"] is None


async def test_the_mail_has_a_text_and_an_html_part_with_the_alert(smtp: FakeSmtpServer) -> None:
    await notifier(medic_for(smtp)).send(notification())

    message = smtp.received[0].message
    assert message.get_content_type() == "multipart/alternative"
    text, rich = parts(message)
    for body in (text, rich):
        assert "Nightly backup" in body
        assert "missed" in body
        assert "P1" in body
        assert "open" in body
        assert "2026-03-01T03:10:00Z" in body
        assert "expected_at" in body
    assert "no heartbeat since 2026-03-01T03:00:00Z" in text
    assert f"Open in Medic: {ALERT_URL}" in text
    assert f"Runbook: {RUNBOOK_URL}" in text
    assert f'<a href="{ALERT_URL}">' in rich
    assert '<a href="https://wiki.example.org/runbooks/backup?step=1&amp;x=2">' in rich


async def test_acknowledged_and_resolved_mails_name_who_and_when(smtp: FakeSmtpServer) -> None:
    email = notifier(medic_for(smtp))
    await email.send(
        notification(
            "acknowledged",
            state="acknowledged",
            acknowledged_at="2026-03-01T03:20:00Z",
            acknowledged_by="alice",
        )
    )
    await email.send(
        notification(
            "resolved",
            state="resolved",
            resolved_at="2026-03-01T04:00:00Z",
            resolved_by="heartbeat",
            resolution="the service checked in again",
        )
    )
    acked, resolved = (m.message for m in smtp.received)
    assert acked["Subject"] == "[Medic] P1 ACKNOWLEDGED: Nightly backup — missed"
    assert resolved["Subject"] == "[Medic] P1 RESOLVED: Nightly backup — missed"
    ack_text, ack_html = parts(acked)
    assert "alice acknowledged this alert." in ack_text
    assert (
        "2026-03-01T03:20:00Z by alice" in ack_text and "2026-03-01T03:20:00Z by alice" in ack_html
    )
    res_text, _ = parts(resolved)
    assert "2026-03-01T04:00:00Z by heartbeat" in res_text
    assert "the service checked in again" in res_text


async def test_user_supplied_text_is_escaped_in_the_html_part(smtp: FakeSmtpServer) -> None:
    evil = '<script>alert("pwned")</script> & <img src="https://evil.example/x.png">'
    await notifier(medic_for(smtp)).send(
        notification(
            summary=evil,
            service_name='<b onmouseover="steal()">Backup</b>',
            runbook="javascript:alert(document.cookie)",
            details={"<key>": "<iframe src=//evil.example>"},
        )
    )
    text, rich = parts(smtp.received[0].message)
    assert evil in text  # plain text shows it as written
    assert "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt; &amp; &lt;img" in rich
    assert "&lt;b onmouseover=&quot;steal()&quot;&gt;Backup&lt;/b&gt;" in rich
    # No markup from the alert, nothing loaded from outside, no javascript: link.
    tags = Tags()
    tags.feed(rich)
    assert {tag for tag, _ in tags.seen} <= SAFE_TAGS
    attributes = {name for _, attrs in tags.seen for name, _ in attrs}
    assert attributes <= {"charset", "style", "role", "href"}
    assert [v for _, attrs in tags.seen for n, v in attrs if n == "href"] == [ALERT_URL]
    assert "javascript:alert(document.cookie)" in rich  # shown as text, not linked


async def test_header_injection_through_the_service_name_is_neutralised(
    smtp: FakeSmtpServer,
) -> None:
    await notifier(medic_for(smtp)).send(
        notification(service_name="Backup\r\nBcc: thief@evil.example\r\n\r\nhello")
    )
    [mail] = smtp.received
    assert mail.message["Bcc"] is None
    assert "thief@evil.example" not in mail.rcpt_tos
    assert mail.message["Subject"] == (
        "[Medic] P1 OPEN: Backup Bcc: thief@evil.example hello — missed"
    )


async def test_acknowledge_and_resolve_mails_thread_under_the_opening(
    smtp: FakeSmtpServer,
) -> None:
    email = notifier(medic_for(smtp))
    state: dict[str, Any] = {}
    for kind in ("opened", "acknowledged", "resolved"):
        returned = await email.send(notification(kind, remembered=state))
        assert returned is not None
        state = {**state, **returned}  # what Medic does: merged, later wins

    opening, acked, resolved = (m.message for m in smtp.received)
    root = opening["Message-ID"]
    assert state == {"message_id": root}
    for reply in (acked, resolved):
        assert reply["In-Reply-To"] == root
        assert reply["References"] == root
        assert reply["Message-ID"] not in (None, root)
    assert acked["Message-ID"] != resolved["Message-ID"]


async def test_a_malformed_thread_id_in_the_state_is_not_put_in_headers(
    smtp: FakeSmtpServer,
) -> None:
    returned = await notifier(medic_for(smtp)).send(
        notification("resolved", remembered={"message_id": "<x@y>\r\nBcc: thief@evil.example"})
    )
    message = smtp.received[0].message
    assert message["In-Reply-To"] is None and message["Bcc"] is None
    assert returned == {"message_id": message["Message-ID"]}


async def test_test_notifications_are_labelled_as_tests(smtp: FakeSmtpServer) -> None:
    await notifier(medic_for(smtp)).send(
        notification("test", config={"to": ["oncall@example.org"], "subject_prefix": "[ops]"})
    )
    message = smtp.received[0].message
    assert message["Subject"] == "[ops] P1 TEST: Nightly backup — missed"
    assert message["X-Medic-Notification"] == "test"
    assert message["X-Medic-Alert-Id"] is None  # a test is about no alert
    assert message["Cc"] is None
    for body in parts(message):
        assert "TEST — this is a test message from Medic" in body
        assert "ops-mail" in body
        assert "nothing needs to be done" in body


@pytest.mark.parametrize(
    ("kind", "label"),
    [("reminder", "REMINDER"), ("escalated", "ESCALATED")],
)
async def test_reminders_and_escalations_say_so(
    smtp: FakeSmtpServer, kind: str, label: str
) -> None:
    await notifier(medic_for(smtp)).send(notification(kind))
    assert smtp.received[0].message["Subject"] == f"[Medic] P1 {label}: Nightly backup — missed"


async def test_an_empty_subject_prefix_is_allowed(smtp: FakeSmtpServer) -> None:
    await notifier(medic_for(smtp)).send(
        notification(config={"to": ["a@example.org"], "subject_prefix": ""})
    )
    assert smtp.received[0].message["Subject"] == "P1 OPEN: Nightly backup — missed"


# -- failures ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "stage", "retryable"),
    [
        ("550 5.1.1 Mailbox unavailable", "rcpt", False),
        ("553 5.1.3 Sender address rejected", "mail", False),
        ("554 5.7.1 Message rejected", "data", False),
        ("421 4.3.2 Service shutting down", "data", True),
        ("450 4.2.1 Mailbox busy", "mail", True),
        ("451 4.3.0 Local error, try again later", "data", True),
        ("452 4.2.2 Mailbox full", "rcpt", True),
    ],
)
async def test_smtp_replies_map_to_retryable_or_permanent_failures(
    smtp: FakeSmtpServer, reply: str, stage: Any, retryable: bool
) -> None:
    email = notifier(medic_for(smtp))
    smtp.reject_next(reply, stage=stage)

    with pytest.raises(DeliveryError) as caught:
        await email.send(notification())
    code = int(reply[:3])
    assert caught.value.status_code == code
    assert caught.value.retryable is retryable
    assert reply[4:] in str(caught.value)
    assert smtp.received == []

    await email.send(notification())  # the rejection was for one message only
    assert len(smtp.received) == 1


async def test_a_mail_some_recipients_take_is_delivered_and_the_rest_logged(
    smtp: FakeSmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    smtp.refuse_recipient("gone@example.org", "550 5.1.1 No such user")
    config = {"to": ["oncall@example.org", "gone@example.org"]}

    state = await notifier(medic_for(smtp)).send(notification(config=config))
    [mail] = smtp.received
    assert mail.rcpt_tos == ["oncall@example.org"]
    assert state == {"message_id": mail.message["Message-ID"]}
    assert "gone@example.org (550 5.1.1 No such user)" in caplog.text


@pytest.mark.parametrize(
    ("replies", "code", "retryable"),
    [
        (["550 5.1.1 No such user", "553 5.1.3 Bad address"], 550, False),
        (["550 5.1.1 No such user", "452 4.2.2 Mailbox full"], 452, True),
    ],
)
async def test_when_every_recipient_is_refused_a_transient_refusal_decides(
    smtp: FakeSmtpServer, replies: list[str], code: int, retryable: bool
) -> None:
    addresses = ["gone@example.org", "full@example.org"]
    for address, reply in zip(addresses, replies, strict=True):
        smtp.refuse_recipient(address, reply)

    with pytest.raises(DeliveryError) as caught:
        await notifier(medic_for(smtp)).send(notification(config={"to": addresses}))
    assert (caught.value.status_code, caught.value.retryable) == (code, retryable)
    assert "full@example.org: " in str(caught.value) and "gone@example.org: " in str(caught.value)
    assert smtp.received == []


async def test_a_line_break_in_the_sender_setting_is_a_configuration_error(
    smtp: FakeSmtpServer,
) -> None:
    medic = medic_for(smtp, smtp_from="medic@example.org\r\nBcc: thief@evil.example")
    with pytest.raises(DeliveryError) as caught:
        await notifier(medic).send(notification())
    assert caught.value.retryable is False
    assert smtp.mail_commands == []


async def test_a_refused_connection_is_retryable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    medic = medic_for(None, smtp_host="127.0.0.1", smtp_port=free_port, smtp_from=SENDER)

    with pytest.raises(DeliveryError) as caught:
        await notifier(medic).send(notification())
    assert caught.value.retryable is True
    assert caught.value.status_code is None
    assert f"127.0.0.1:{free_port}" in str(caught.value)


async def test_a_server_that_never_answers_times_out_retryably() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # say nothing, not even the greeting

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    medic = medic_for(
        None, smtp_host="127.0.0.1", smtp_port=port, smtp_from=SENDER, notify_timeout=0.3
    )
    try:
        with pytest.raises(DeliveryError) as caught:
            await notifier(medic).send(notification())
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()
    assert caught.value.retryable is True
    assert "did not answer within 0.3s" in str(caught.value)
    assert accepted  # it did connect


async def test_a_wrong_password_is_a_permanent_failure(smtp: FakeSmtpServer) -> None:
    medic = medic_for(smtp, smtp_password="wrong")

    with pytest.raises(DeliveryError) as caught:
        await notifier(medic).send(notification())
    assert caught.value.retryable is False
    assert caught.value.status_code == 535
    assert "MEDIC_SMTP_PASSWORD" in str(caught.value)
    assert "wrong" not in str(caught.value)  # the password is never echoed
    assert smtp.auth_attempts and all(tls and not ok for _, _, tls, ok in smtp.auth_attempts)
    assert smtp.mail_commands == [] and smtp.received == []


async def test_without_starttls_on_offer_nothing_is_sent_in_clear(tmp_path: Path) -> None:
    with FakeSmtpServer(tmp_path, starttls=False) as plain:
        with pytest.raises(DeliveryError) as caught:
            await notifier(medic_for(plain)).send(notification())
        assert caught.value.retryable is False
        assert "does not offer STARTTLS" in str(caught.value)
        assert plain.auth_attempts == []
        assert plain.mail_commands == []
        assert plain.received == []

        # The same server takes credentials and mail from a client that does not insist on TLS:
        # the refusal above is the notifier's doing, not the server's.
        await notifier(medic_for(plain, smtp_starttls=False)).send(notification())
        assert [(tls, ok) for _, _, tls, ok in plain.auth_attempts] == [(False, True)]
        assert [m.tls for m in plain.received] == [False]


async def test_a_certificate_from_an_unknown_ca_is_refused(smtp: FakeSmtpServer) -> None:
    medic = medic_for(smtp, smtp_ca_file="")  # the system's trust store: the test CA is not in it

    with pytest.raises(DeliveryError) as caught:
        await notifier(medic).send(notification())
    assert caught.value.retryable is False
    assert "not trusted" in str(caught.value)
    assert smtp.auth_attempts == [] and smtp.mail_commands == [] and smtp.received == []


async def test_a_certificate_for_another_host_is_refused(tmp_path: Path) -> None:
    with FakeSmtpServer(tmp_path, cert_hosts=("mail.example.org",)) as smtp:
        with pytest.raises(DeliveryError) as caught:
            await notifier(medic_for(smtp)).send(notification())
        assert caught.value.retryable is False
        assert "not trusted" in str(caught.value)
        assert smtp.auth_attempts == [] and smtp.received == []


async def test_an_unreadable_ca_file_is_a_configuration_error(
    smtp: FakeSmtpServer, tmp_path: Path
) -> None:
    medic = medic_for(smtp, smtp_ca_file=str(tmp_path / "missing.pem"))

    with pytest.raises(DeliveryError) as caught:
        await notifier(medic).send(notification())
    assert caught.value.retryable is False
    assert "MEDIC_SMTP_CA_FILE" in str(caught.value)


@pytest.mark.parametrize("missing", ["smtp_host", "smtp_from"])
async def test_without_host_or_sender_sending_fails_with_what_to_set(
    smtp: FakeSmtpServer, missing: str
) -> None:
    with pytest.raises(DeliveryError) as caught:
        await notifier(medic_for(smtp, **{missing: ""})).send(notification())
    assert caught.value.retryable is False
    assert "MEDIC_SMTP_HOST" in str(caught.value) and "MEDIC_SMTP_FROM" in str(caught.value)
    assert smtp.mail_commands == []


# -- checking without sending --------------------------------------------------------------------


async def test_check_target_logs_in_and_sends_nothing(smtp: FakeSmtpServer) -> None:
    email = notifier(medic_for(smtp))
    result = await email.check_target({"to": ["oncall@example.org"]})  # type: ignore[attr-defined]

    assert result.status == "ok"
    assert "STARTTLS" in result.detail and smtp.user in result.detail
    assert smtp.noops == 1
    assert [(tls, ok) for _, _, tls, ok in smtp.auth_attempts] == [(True, True)]
    assert smtp.mail_commands == [] and smtp.received == []


async def test_targets_checked_at_once_share_one_smtp_session(smtp: FakeSmtpServer) -> None:
    email = notifier(medic_for(smtp))
    configs = [{"to": [f"team{i}@example.org"]} for i in range(5)]

    results = await asyncio.gather(*(email.check_target(c) for c in configs))  # type: ignore[attr-defined]
    assert [r.status for r in results] == ["ok"] * 5
    assert smtp.noops == 1 and len(smtp.auth_attempts) == 1

    await email.check_target(configs[0])  # type: ignore[attr-defined]
    assert smtp.noops == 2  # a later check tests again


async def test_check_target_reports_why_it_cannot_deliver(
    smtp: FakeSmtpServer, tmp_path: Path
) -> None:
    bad_login = notifier(medic_for(smtp, smtp_password="nope"))
    result = await bad_login.check_target({"to": ["a@example.org"]})  # type: ignore[attr-defined]
    assert result.status == "down" and "535" in result.detail

    invalid = await notifier(medic_for(smtp)).check_target({"to": []})  # type: ignore[attr-defined]
    assert invalid.status == "down" and "invalid email target" in invalid.detail

    unconfigured = notifier(medic_for(None))
    result = await unconfigured.check_target({"to": ["a@example.org"]})  # type: ignore[attr-defined]
    assert result.status == "down" and "MEDIC_SMTP_HOST" in result.detail

    with FakeSmtpServer(tmp_path, starttls=False) as plain:
        email = notifier(medic_for(plain))
        result = await email.check_target({"to": ["a@example.org"]})  # type: ignore[attr-defined]
        assert result.status == "down" and "STARTTLS" in result.detail
        assert plain.auth_attempts == [] and plain.mail_commands == []
    assert smtp.mail_commands == [] and smtp.received == []


async def test_the_smtp_health_check_is_registered_only_when_a_host_is_set(
    smtp: FakeSmtpServer,
) -> None:
    assert plugins().health_checks(medic_for(None)) == {}
    checks = plugins().health_checks(medic_for(smtp))
    assert list(checks) == ["smtp"]
    assert isinstance(checks["smtp"], HealthCheck)
    assert checks["smtp"].critical is False


async def test_the_health_check_reports_the_server_and_caches_its_answer(
    smtp: FakeSmtpServer,
) -> None:
    medic = medic_for(smtp)
    check = plugins().health_checks(medic)["smtp"]

    ok = await check.check()
    assert ok.status == "ok" and f"{smtp.host}:{smtp.port}" in ok.detail
    assert smtp.noops == 1 and smtp.mail_commands == []

    smtp.stop()
    assert await check.check() == ok  # within a minute: the cached answer, no new login
    medic.clock.advance(61)
    down = await check.check()
    assert down.status == "down" and f"{smtp.host}:{smtp.port}" in down.detail


async def test_the_health_check_reports_a_refused_certificate(smtp: FakeSmtpServer) -> None:
    check = plugins().health_checks(medic_for(smtp, smtp_ca_file=""))["smtp"]
    result = await check.check()
    assert result.status == "down" and "not trusted" in result.detail


# -- plugin and configuration --------------------------------------------------------------------


def test_the_plugin_loads_without_a_running_medic() -> None:
    metrics = Metrics()
    manager = PluginManager(metrics, entry_points=False, plugins=[("email", email_plugin)])
    found = manager.notifiers(medic=None)
    assert isinstance(found["email"], Notifier)
    assert manager.health_checks(medic=None) == {}
    assert manager.failures == []


VALID_CONFIGS = [
    {"to": ["oncall@example.org"]},
    {"to": ["a@example.org", "b@example.org"], "cc": ["c@example.org"], "subject_prefix": "[ops]"},
    {"to": ["a@example.org"], "cc": [], "subject_prefix": ""},
    {"to": [f"user{i}@example.org" for i in range(50)]},
]

INVALID_CONFIGS = [
    {},
    {"to": []},
    {"to": "oncall@example.org"},
    {"to": ["not-an-address"]},
    {"to": ["a@example.org, thief@evil.example"]},
    {"to": ["a@example.org\r\nBcc: thief@evil.example"]},
    {"to": ["Alice <a@example.org>"]},
    {"to": ["a@example.org", "a@example.org"]},
    {"to": [f"user{i}@example.org" for i in range(51)]},
    {"to": ["a@example.org"], "cc": ["nope"]},
    {"to": ["a@example.org"], "subject_prefix": "[x]\r\nBcc: thief@evil.example"},
    {"to": ["a@example.org"], "subject_prefix": "x" * 51},
    {"to": ["a@example.org"], "bcc": ["b@example.org"]},
]


def test_the_config_schema_is_valid_json_schema_2020_12() -> None:
    Draft202012Validator.check_schema(EmailNotifier.config_schema)


@pytest.mark.parametrize("config", VALID_CONFIGS)
def test_the_config_schema_accepts_targets(config: dict[str, Any]) -> None:
    assert list(Draft202012Validator(CONFIG_SCHEMA).iter_errors(config)) == []


@pytest.mark.parametrize("config", INVALID_CONFIGS)
def test_the_config_schema_rejects_bad_targets(config: dict[str, Any]) -> None:
    assert list(Draft202012Validator(CONFIG_SCHEMA).iter_errors(config)) != []
