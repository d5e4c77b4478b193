"""Settings, the rate limiter, cursors and input rules."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from medic_core import validation as v
from medic_core.errors import ValidationError
from medic_core.ratelimit import TokenBuckets
from medic_core.settings import Settings, settings_markdown
from medic_core.store.database import is_transient_db_error, normalize_url
from medic_core.store.pagination import check_limit, decode_cursor, encode_cursor


def test_settings_come_from_environment_and_file(tmp_path: Path) -> None:
    config = tmp_path / "medic.toml"
    config.write_text('port = 9000\nlog_level = "DEBUG"\nauto_migrate = false\n')
    settings = Settings.load({"MEDIC_CONFIG_FILE": str(config), "MEDIC_PORT": "9100"})
    assert settings.port == 9100  # the environment wins over the file
    assert settings.log_level == "DEBUG"
    assert settings.auto_migrate is False


def test_default_database_is_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    settings = Settings.load({"MEDIC_DATA_DIR": str(tmp_path)})
    assert settings.resolved_database_url == f"sqlite:///{tmp_path}/medic.db"
    assert settings.resolved_public_url == "http://127.0.0.1:8080"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MEDIC_PORT": "eighty"}, "MEDIC_PORT='eighty' is not a valid int"),
        ({"MEDIC_AUTO_MIGRATE": "perhaps"}, "MEDIC_AUTO_MIGRATE='perhaps' is not a valid bool"),
        ({"MEDIC_CONFIG_FILE": "/nonexistent.toml"}, "cannot read MEDIC_CONFIG_FILE"),
    ],
)
def test_bad_settings_say_which_and_why(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings.load(env)


def test_unknown_keys_in_the_config_file_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "medic.toml"
    config.write_text("prot = 1\n")
    with pytest.raises(ValueError, match="unknown setting"):
        Settings.load({"MEDIC_CONFIG_FILE": str(config)})


def test_settings_reference_lists_every_variable() -> None:
    table = settings_markdown()
    for name in Settings.__dataclass_fields__:
        assert f"`MEDIC_{name.upper()}`" in table


def test_database_urls_are_normalised_to_async_drivers() -> None:
    assert normalize_url("postgresql://u:p@h/db").startswith("postgresql+asyncpg://u:p@h/db")
    assert normalize_url("sqlite:///x.db") == "sqlite+aiosqlite:///x.db"
    with pytest.raises(ValueError, match="unsupported database URL"):
        normalize_url("mysql://h/db")


def test_transient_errors_are_recognised() -> None:
    assert is_transient_db_error(ConnectionRefusedError())
    assert not is_transient_db_error(ValueError())


def test_rate_limiter_allows_burst_then_refuses_with_retry_after() -> None:
    limiter = TokenBuckets[int](rate=1.0, burst=2)
    assert limiter.take(1).allowed and limiter.take(1).allowed
    refused = limiter.take(1)
    assert not refused.allowed
    assert 0 < refused.retry_after <= 1.0
    assert refused.headers()["RateLimit-Limit"] == "2"
    assert limiter.take(2).allowed  # buckets are per key


def test_cursor_round_trips_and_rejects_garbage() -> None:
    assert decode_cursor(encode_cursor(42)) == 42
    assert decode_cursor(None) is None
    with pytest.raises(ValidationError, match="invalid cursor"):
        decode_cursor("bm9wZQ")
    with pytest.raises(ValidationError):
        check_limit(0)


def test_input_rules() -> None:
    assert v.slug("nightly-backup.v2") == "nightly-backup.v2"
    for bad in ("Upper", "-dash", "", "a" * 101, 5):
        with pytest.raises(ValidationError):
            v.slug(bad)
    assert v.tags(["b", "a", "a"]) == ["a", "b"]
    assert v.http_url("", "u") is None
    with pytest.raises(ValidationError, match="http"):
        v.http_url("ftp://x", "runbook_url")
    assert v.instant("2026-01-01T00:00:00Z", "at") == datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(ValidationError, match="UTC offset"):
        v.instant("2026-01-01T00:00:00", "at")
    with pytest.raises(ValidationError, match="between"):
        v.integer(0, "n", low=1, high=2)
    with pytest.raises(ValidationError, match="must be an integer"):
        v.integer(True, "n", low=0, high=2)


def test_a_malformed_outbound_network_stops_medic_at_start(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from medic_core.app import Medic
    from medic_core.settings import Settings

    settings = Settings.load(
        {}, data_dir=str(tmp_path), notifiers="", outbound_allow_networks="10.0.0.1/8"
    )
    with pytest.raises(ValueError, match="MEDIC_OUTBOUND_ALLOW_NETWORKS"):
        Medic(settings, entry_points=False)
