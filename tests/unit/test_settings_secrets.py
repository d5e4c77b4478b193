"""Secret settings are marked once (field metadata) and never shown where settings are printed.

The walk over every ``Settings`` field is the guard for settings added later: one whose name or
help says it is a credential must be marked, or be listed below with the reason it is not.
"""

from __future__ import annotations

import io
import json
import logging
import re
from contextlib import redirect_stdout
from dataclasses import fields
from typing import Any

import pytest

from medic_core.cli import main
from medic_core.observability.logs import configure_logging
from medic_core.server.serve import banner
from medic_core.settings import (
    HIDE_LIST,
    HIDE_URL_CREDENTIALS,
    HIDE_VALUE,
    MASK,
    Settings,
    mask_url,
)

#: Names and help texts that say "credential".
SECRET_NAME = re.compile(r"token|secret|password|passwd|key|credential|_url$|endpoint")
SECRET_HELP = re.compile(r"\b(token|secret|password|credential)s?\b", re.IGNORECASE)
#: Fields whose name looks secret but whose value is not, and why.
NOT_SECRET = {
    "key_cache_ttl": "a number of seconds",
    "key_negative_cache_ttl": "a number of seconds",
    "key_negative_cache_size": "a number of key ids",
    "grpc_tls_key": "the path of the key file (the file's own permissions protect the key)",
    "public_url": "published on purpose: every notification links to it",
    "secret_max_bytes": "a number of bytes",
    "secrets_max": "a number of secrets",
}
#: A value per marked field that a leak would show, and what must never appear.
LEAKS: dict[str, tuple[str, str]] = {
    "admin_key": ("medic_aaaaaaaaaaaa_admin-key-value", "admin-key-value"),
    "api_key": ("medic_bbbbbbbbbbbb_cli-key-value", "cli-key-value"),
    "slack_bot_token": ("xoxb-slack-bot-token-value", "slack-bot-token-value"),
    "slack_signing_secret": ("slack-signing-secret-value", "slack-signing-secret-value"),
    "smtp_password": ("smtp-password-value", "smtp-password-value"),
    # Each key of the list is scrubbed on its own too (a line may quote one of them).
    "secret_key": ("secret-key-one-value, secret-key-two-value", "secret-key-two-value"),
    "database_url": ("postgresql://medic:db-pass-value@db:5432/medic", "db-pass-value"),
    "redis_url": ("rediss://:redis-pass-value@cache:6380/0", "redis-pass-value"),
    "otlp_endpoint": ("https://otel:otlp-pass-value@collector/v1/traces", "otlp-pass-value"),
    "slack_api_url": ("https://proxy:slack-proxy-pass@slack.example/api", "slack-proxy-pass"),
    "pagerduty_events_url": (
        "https://events.example/v2/enqueue?token=pd-token-value",
        "pd-token-value",
    ),
}


def secret_kind(name: str) -> str | None:
    (setting,) = [f for f in fields(Settings) if f.name == name]
    kind = setting.metadata.get("secret")
    return str(kind) if kind is not None else None


@pytest.mark.parametrize("setting", fields(Settings), ids=lambda f: f.name)
def test_every_setting_whose_name_or_meaning_is_secret_is_marked(setting: Any) -> None:
    looks_secret = SECRET_NAME.search(setting.name) or SECRET_HELP.search(setting.metadata["help"])
    if not looks_secret or setting.name in NOT_SECRET:
        return
    assert setting.metadata.get("secret") in (HIDE_VALUE, HIDE_LIST, HIDE_URL_CREDENTIALS), (
        f"{setting.name} looks secret: mark it with secret=... in medic_core/settings.py, "
        "or add it to NOT_SECRET here with the reason"
    )


def test_every_marked_setting_has_a_leak_probe_here() -> None:
    marked = {f.name for f in fields(Settings) if "secret" in f.metadata}
    assert marked == set(LEAKS), "add a probe value to LEAKS for each marked setting"


def leaky_settings() -> Settings:
    return Settings(**{name: value for name, (value, _) in LEAKS.items()})


def test_medic_config_masks_every_secret_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, (value, _) in LEAKS.items():
        monkeypatch.setenv(f"MEDIC_{name.upper()}", value)
    out = io.StringIO()
    with redirect_stdout(out):
        main(["config"])
    printed = out.getvalue()
    shown = json.loads(printed)
    for name, (_, secret) in LEAKS.items():
        assert secret not in printed, name
        assert MASK in shown[name], name
    assert shown["slack_bot_token"] == MASK
    assert shown["database_url"] == f"postgresql://medic:{MASK}@db:5432/medic"
    assert shown["redis_url"] == f"rediss://:{MASK}@cache:6380/0"
    assert shown["pagerduty_events_url"] == f"https://events.example/v2/enqueue?token={MASK}"


def test_unset_secrets_show_as_empty_so_operators_see_what_is_missing() -> None:
    shown = Settings().masked()
    assert shown["slack_bot_token"] == "" and shown["smtp_password"] == ""
    assert shown["slack_api_url"] == "https://slack.com/api"  # no credentials: shown whole


def test_settings_repr_never_shows_a_secret() -> None:
    text = repr(leaky_settings())
    for name, (_, secret) in LEAKS.items():
        assert secret not in text, name


def test_scrub_replaces_every_secret_value_in_free_text() -> None:
    settings = leaky_settings()
    text = " | ".join(value for value, _ in LEAKS.values())
    scrubbed = settings.scrub(f"connect failed: {text}")
    for name, (_, secret) in LEAKS.items():
        assert secret not in scrubbed, name


@pytest.mark.parametrize("json_format", [True, False], ids=["json", "text"])
def test_logs_never_show_a_secret_setting(
    json_format: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = leaky_settings()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("INFO", json=json_format, secrets=settings.secret_values())
        log = logging.getLogger("medic.test")
        log.warning("cannot reach %s", settings.redis_url)
        try:
            raise RuntimeError(f"token {settings.slack_bot_token} refused")
        except RuntimeError:
            log.exception("slack failed")
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])
    err = capsys.readouterr().err
    assert "cannot reach" in err and "slack failed" in err
    assert "redis-pass-value" not in err and "slack-bot-token-value" not in err
    assert MASK in err


def test_the_start_banner_shows_no_secret_setting() -> None:
    settings = leaky_settings()

    class FakeDb:
        def redacted_url(self) -> str:
            return settings.database_url  # even if the database printed its URL in clear

    class FakeMedic:
        db = FakeDb()

    text = settings.scrub(banner(settings, FakeMedic(), None))  # type: ignore[arg-type]
    assert "db-pass-value" not in text and "Medic is running" in text


def test_doctor_scrubs_secret_settings_from_check_details(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from medic_core.cli import doctor

    async def fake_doctor(settings: Settings) -> list[dict[str, str]]:
        detail = f"AuthenticationError: {settings.database_url} refused {settings.smtp_password}"
        return [{"check": "database", "status": "ok", "detail": detail}]

    monkeypatch.setattr(doctor, "checks", fake_doctor)
    for name, (value, _) in LEAKS.items():
        monkeypatch.setenv(f"MEDIC_{name.upper()}", value)
    out = io.StringIO()
    with redirect_stdout(out):
        main(["doctor", "--json"])
    printed = out.getvalue()
    assert "AuthenticationError" in printed
    assert "db-pass-value" not in printed and "smtp-password-value" not in printed


def test_urls_without_credentials_are_shown_unchanged() -> None:
    assert mask_url("https://events.pagerduty.com/v2/enqueue") == (
        "https://events.pagerduty.com/v2/enqueue"
    )
    assert mask_url("redis://cache:6379/0") == "redis://cache:6379/0"
    assert mask_url("postgresql://medic@db/medic") == "postgresql://medic@db/medic"


def test_a_url_that_cannot_be_read_is_masked_whole() -> None:
    assert mask_url("redis://:pass@host:notaport/0") == MASK
    assert secret_kind("redis_url") == HIDE_URL_CREDENTIALS


def test_each_key_of_the_secret_key_list_is_scrubbed_on_its_own() -> None:
    settings = leaky_settings()
    assert secret_kind("secret_key") == HIDE_LIST
    assert settings.masked()["secret_key"] == MASK
    scrubbed = settings.scrub("key secret-key-one-value failed, then secret-key-two-value")
    assert "secret-key-one-value" not in scrubbed and "secret-key-two-value" not in scrubbed
