"""Unit tests of the example plugin: no server, no database.

They call what Medic would call — the hook functions, ``send``, ``check`` — and assert on the
result, the way a plugin author tests their own plugin. Run them with ``pytest`` in this
directory (``pip install -e '.[test]'`` first; pytest-asyncio runs the ``async`` tests).
"""

from __future__ import annotations

import json
import logging
import types
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from medic_core.events import Event
from medic_core.observability.metrics import Metrics
from medic_core.plugins.interfaces import DeliveryError, Notification
from medic_core.plugins.manager import PluginManager

import medic_plugin_example as example

# The same JSON documents the REST API returns for an alert and its service (trimmed).
SERVICE = {
    "id": 3,
    "slug": "nightly-backup",
    "name": "Nightly backup",
    "priority": "p2",
    "team_id": None,
    "tags": ["backup"],
    "runbook_url": "https://wiki.example.org/runbooks/backup",
}
ALERT = {
    "id": 7,
    "cause": "missed",
    "state": "open",
    "priority": "p2",
    "summary": "nightly-backup missed its deadline",
    "opened_at": "2026-03-01T12:00:00Z",
    "service": SERVICE,
}


def notification(path: Path, **fields: Any) -> Notification:
    values: dict[str, Any] = {
        "kind": "opened",
        "alert": ALERT,
        "service": SERVICE,
        "config": {"path": str(path)},
        "target": "ops-file",
        "dedup_key": "medic-alert-7",
        "links": {"alert": "https://medic.example.org/alerts/7"},
    }
    values.update(fields)
    return Notification(**values)


def fake_medic(data_dir: Path) -> Any:
    """Only what the hooks read from ``medic``."""
    return types.SimpleNamespace(settings=types.SimpleNamespace(data_dir=str(data_dir)))


async def test_send_appends_one_json_line_per_notification_and_counts_them_in_state(
    tmp_path: Path,
) -> None:
    out = tmp_path / "alerts.jsonl"
    notifier = example.FileNotifier()

    state = await notifier.send(notification(out, delivery_id=1))
    assert state == {"lines": 1}
    resolved = {**ALERT, "state": "resolved"}
    # Medic passes back what send returned earlier for this alert and target.
    state = await notifier.send(notification(out, kind="resolved", alert=resolved, state=state))
    assert state == {"lines": 2}

    first, second = (json.loads(line) for line in out.read_text().splitlines())
    assert first == {
        "kind": "opened",
        "target": "ops-file",
        "dedup_key": "medic-alert-7",
        "delivery_id": 1,
        "alert": ALERT,
        "service": SERVICE,
        "links": {"alert": "https://medic.example.org/alerts/7"},
    }
    assert (second["kind"], second["alert"]["state"]) == ("resolved", "resolved")


def test_config_schema_requires_one_absolute_path() -> None:
    Draft202012Validator.check_schema(example.FileNotifier.config_schema)
    validator = Draft202012Validator(example.FileNotifier.config_schema)
    assert validator.is_valid({"path": "/var/log/medic/alerts.jsonl"})
    for bad in ({}, {"path": "alerts.jsonl"}, {"path": 3}, {"path": "/x", "mode": "w"}):
        assert not validator.is_valid(bad), bad


async def test_a_target_that_cannot_be_written_fails_without_retry(tmp_path: Path) -> None:
    notifier = example.FileNotifier()
    for path in (tmp_path / "missing-dir" / "alerts.jsonl", tmp_path):
        with pytest.raises(DeliveryError) as failure:
            await notifier.send(notification(path))
        assert failure.value.retryable is False
    with pytest.raises(DeliveryError) as failure:
        await notifier.send(notification(tmp_path, config={"path": "relative.jsonl"}))
    assert failure.value.retryable is False and "absolute" in str(failure.value)


async def test_check_target_tests_the_directory_without_writing(tmp_path: Path) -> None:
    notifier = example.FileNotifier()
    ok = await notifier.check_target({"path": str(tmp_path / "alerts.jsonl")})
    assert ok.status == "ok"
    missing = await notifier.check_target({"path": str(tmp_path / "no" / "a.jsonl")})
    assert missing.status == "down" and "not a directory" in missing.detail
    assert list(tmp_path.iterdir()) == []


async def test_disk_check_is_degraded_below_its_minimum_and_down_without_its_directory(
    tmp_path: Path,
) -> None:
    ok = await example.DiskSpaceCheck(tmp_path, min_free_bytes=0).check()
    assert ok.status == "ok" and str(tmp_path) in ok.detail
    low = await example.DiskSpaceCheck(tmp_path, min_free_bytes=1 << 60).check()
    assert low.status == "degraded" and "below" in low.detail
    gone = await example.DiskSpaceCheck(tmp_path / "gone").check()
    assert gone.status == "down"


def test_medic_accepts_what_the_hooks_return(tmp_path: Path) -> None:
    # Medic's own plugin manager, given the module as Medic's entry point would give it.
    metrics = Metrics()
    manager = PluginManager(metrics, entry_points=False, plugins=[("example", example)])
    medic = fake_medic(tmp_path)
    assert list(manager.notifiers(medic)) == ["example-file"]
    checks = manager.health_checks(medic)
    assert list(checks) == ["example-disk"] and checks["example-disk"].critical is False
    assert manager.failures == []
    (info,) = manager.describe()
    assert info.hooks == (
        "medic_event",
        "medic_health_checks",
        "medic_notifiers",
        "medic_shutdown",
        "medic_startup",
    )


def test_event_hooks_count_events_from_startup_and_log_them_at_shutdown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="medic.plugins.example")
    at = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    example.medic_event(Event("alert.opened", at))  # before startup: not counted
    example.medic_startup(fake_medic(tmp_path))
    for kind in ("service.created", "alert.opened", "alert.opened"):
        example.medic_event(Event(kind, at, {"alert": ALERT}))
    example.medic_shutdown()
    (record,) = [r for r in caplog.records if r.getMessage().startswith("example plugin saw")]
    assert record.getMessage() == "example plugin saw 3 events"
    assert record.events == {"service.created": 1, "alert.opened": 2}
