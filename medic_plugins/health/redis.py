"""The ``redis`` health check: when ``MEDIC_REDIS_URL`` is set, Redis answers PING.

Not critical: Medic keeps its state in the database, so an unreachable Redis is reported, not a
reason to leave the load balancer. TLS (``rediss://``) and AUTH come from the URL
(``rediss://:password@host:6380/0``); the password never appears in the result.

The ``redis`` package is the optional extra ``medic[redis]``: without it this plugin still
loads (so it never breaks plugin loading), and if ``MEDIC_REDIS_URL`` is set anyway the check
is there and says, on every readiness probe and once in the log at startup, what to install.
"""

from __future__ import annotations

import asyncio
import logging

from medic_core.plugins import hookimpl
from medic_core.plugins.context import PluginContext
from medic_core.plugins.interfaces import HealthCheck, HealthResult

try:
    from redis.asyncio import Redis
    from redis.exceptions import RedisError

    HAVE_REDIS = True
except ImportError:  # the optional extra is not installed: see MissingRedis
    HAVE_REDIS = False

log = logging.getLogger(__name__)
MISSING_PACKAGE = (
    "MEDIC_REDIS_URL is set but the redis package is not installed: install the extra "
    "(pip install 'medic[redis]') or unset MEDIC_REDIS_URL"
)


class RedisCheck:
    name = "redis"
    critical = False

    def __init__(self, url: str, timeout: float = 1.5) -> None:
        self._url = url
        self._timeout = timeout

    async def check(self) -> HealthResult:
        client = Redis.from_url(
            self._url, socket_timeout=self._timeout, socket_connect_timeout=self._timeout
        )
        try:
            async with asyncio.timeout(self._timeout + 0.5):
                await client.ping()
                info = await client.info("server")
        except (RedisError, OSError, TimeoutError) as exc:
            # Redis errors can echo the URL; keep only the error's class and a safe message.
            return HealthResult("down", _safe(exc, self._url))
        finally:
            await client.aclose()
        return HealthResult("ok", f"redis {info.get('redis_version', '?')}")


def _safe(exc: BaseException, url: str) -> str:
    message = f"{type(exc).__name__}: {exc}"
    if "@" in url:
        secret = url.split("://", 1)[-1].rsplit("@", 1)[0]
        if secret:
            message = message.replace(secret, "***")
    return message[:300]


class MissingRedis:
    """Stands for the check when ``redis`` is not installed: always down, saying why."""

    name = "redis"
    critical = False

    async def check(self) -> HealthResult:
        return HealthResult("down", MISSING_PACKAGE)


@hookimpl
def medic_health_checks(medic: PluginContext) -> list[HealthCheck]:
    url = getattr(getattr(medic, "settings", None), "redis_url", "")
    if not url:
        return []
    if not HAVE_REDIS:
        log.error("%s", MISSING_PACKAGE)
        return [MissingRedis()]
    return [RedisCheck(url)]
