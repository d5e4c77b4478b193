"""An example Medic plugin, meant to be copied.

The module is the plugin: the entry point ``example = "medic_plugin_example"`` (group ``medic``,
in ``pyproject.toml``) names it, and its ``@hookimpl`` functions are the hooks Medic calls
(their reference is ``medic_core/plugins/hookspecs.py``; what they receive as ``medic`` is
``medic_core.plugins.context.PluginContext``). It provides:

- the ``example-file`` notifier, which appends each notification as one JSON line to the file a
  target names (``{"path": "/var/log/medic/alerts.jsonl"}``);
- the ``example-disk`` health check: free space in Medic's data directory, ``degraded`` below
  ``MIN_FREE_BYTES``. It is not critical, so it shows in ``/health/ready`` but never makes Medic
  unready;
- ``medic_event``, which counts bus events by type; ``medic_startup`` starts the count and
  ``medic_shutdown`` logs it.

Hooks of a module plugin are module functions, so what they share (the event count) lives in the
module: one count per process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from medic_core.events import Event
from medic_core.plugins import hookimpl
from medic_core.plugins.context import PluginContext
from medic_core.plugins.interfaces import (
    DeliveryError,
    HealthCheck,
    HealthResult,
    Notification,
    Notifier,
)

log = logging.getLogger("medic.plugins.example")

#: Below this much free space ``example-disk`` reports ``degraded``.
MIN_FREE_BYTES = 1 << 30

#: Errors that only a change of the target's configuration can cure: retrying cannot help.
_CONFIG_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


class FileNotifier:
    """``example-file``: one JSON object per line (JSON Lines) per notification."""

    name = "example-file"
    config_schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            "path": {
                "description": "Absolute path of the file to append to; its directory must exist.",
                "type": "string",
                "pattern": "^/",
            },
        },
        "required": ["path"],
        "additionalProperties": False,
    }

    async def send(self, notification: Notification) -> dict[str, Any]:
        path = Path(notification.config.get("path") or "")
        if not path.is_absolute():
            raise DeliveryError(
                f"target {notification.target!r}: path must be absolute", retryable=False
            )
        line = json.dumps(
            {
                "kind": notification.kind,
                "target": notification.target,
                "dedup_key": notification.dedup_key,
                "delivery_id": notification.delivery_id,
                "alert": notification.alert,
                "service": notification.service,
                "links": notification.links,
            },
            default=str,
        )
        try:
            await asyncio.to_thread(_append, path, line)  # never block the event loop on I/O
        except OSError as exc:
            raise DeliveryError(
                f"cannot append to {path}: {exc}",
                retryable=not isinstance(exc, _CONFIG_ERRORS),  # a full disk may clear up
            ) from exc
        # Medic hands this back as ``notification.state`` for the same alert and target.
        return {"lines": int(notification.state.get("lines", 0)) + 1}

    async def check_target(self, config: dict[str, Any]) -> HealthResult:
        """Whether a target's file can be written, without writing to it."""
        directory = Path(config["path"]).parent
        if not directory.is_dir():
            return HealthResult("down", f"{directory} is not a directory")
        if not os.access(directory, os.W_OK):
            return HealthResult("down", f"{directory} is not writable")
        return HealthResult("ok", f"can write to {directory}")


def _append(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write(line + "\n")


class DiskSpaceCheck:
    """``example-disk``: free space in a directory."""

    name = "example-disk"
    critical = False

    def __init__(self, directory: Path, min_free_bytes: int = MIN_FREE_BYTES) -> None:
        self.directory = directory
        self.min_free_bytes = min_free_bytes

    async def check(self) -> HealthResult:
        try:
            usage = await asyncio.to_thread(shutil.disk_usage, self.directory)
        except OSError as exc:
            return HealthResult("down", f"{self.directory}: {exc}")
        detail = f"{usage.free / 2**30:.1f} GiB free in {self.directory}"
        if usage.free < self.min_free_bytes:
            minimum = f"{self.min_free_bytes / 2**30:.1f} GiB"
            return HealthResult("degraded", f"{detail}, below the {minimum} minimum")
        return HealthResult("ok", detail)


#: Events seen since the last ``medic_startup``, by type.
events: Counter[str] = Counter()


@hookimpl
def medic_notifiers() -> list[Notifier]:
    return [FileNotifier()]


@hookimpl
def medic_health_checks(medic: PluginContext) -> list[HealthCheck]:
    return [DiskSpaceCheck(Path(medic.settings.data_dir).expanduser())]


@hookimpl
def medic_startup(medic: PluginContext) -> None:
    events.clear()
    log.info("example plugin started", extra={"data_dir": medic.settings.data_dir})


@hookimpl
def medic_event(event: Event) -> None:
    events[event.type] += 1


@hookimpl
def medic_shutdown() -> None:
    total = sum(events.values())
    log.info("example plugin saw %d events", total, extra={"events": dict(events)})
