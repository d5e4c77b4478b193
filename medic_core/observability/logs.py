"""Structured JSON logs on stderr, one object per line."""

from __future__ import annotations

import json as json_module
import logging
import sys
from collections.abc import Sequence

from pythonjsonlogger.json import JsonFormatter

from medic_core.settings import MASK


class Scrubbing(logging.Formatter):
    """Formats with ``inner``, then replaces each secret in the line (tracebacks included).

    The secrets are the settings marked secret (``Settings.secret_values``): a library that
    logs a connection URL or a request header cannot put them in the logs.
    """

    def __init__(self, inner: logging.Formatter, secrets: Sequence[str]) -> None:
        super().__init__()
        self._inner = inner
        # Each secret as written and as JSON escapes it (a quote or backslash in a password).
        forms = {form for s in secrets if s for form in (s, json_module.dumps(s)[1:-1])}
        self._secrets = sorted(forms, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        line = self._inner.format(record)
        for secret in self._secrets:
            line = line.replace(secret, MASK)
        return line


def configure_logging(
    level: str = "INFO", *, json: bool = True, secrets: Sequence[str] = ()
) -> None:
    handler = logging.StreamHandler(sys.stderr)
    formatter: logging.Formatter
    if json:
        formatter = JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            datefmt="%Y-%m-%dT%H:%M:%S%z",
        )
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(Scrubbing(formatter, secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log duplicates our own request metrics and spans; keep it quiet by default.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
