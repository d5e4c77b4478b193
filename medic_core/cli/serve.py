"""``medic serve``: run the server (HTTP API, agent endpoint, writer, monitor, delivery).

Start-up order: logging and tracing first (so everything after them is recorded, with secret
settings scrubbed), then the event loop -- uvloop where it is installed -- running
``medic_core.server.serve.serve``. ``--host``/``--port`` are applied as settings overrides by
``medic_core.cli.main`` before this runs.
"""

from __future__ import annotations

import argparse
import asyncio

from medic_core.cli.common import Subcommands
from medic_core.settings import Settings


def add_parser(sub: Subcommands) -> None:
    serve = sub.add_parser("serve", help="run the server (HTTP API, writer, monitor)")
    serve.add_argument("--host", help="listen address (MEDIC_HOST)")
    serve.add_argument("--port", type=int, help="listen port (MEDIC_PORT)")
    serve.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> None:
    from medic_core.observability.logs import configure_logging
    from medic_core.observability.tracing import configure_tracing
    from medic_core.server.serve import serve

    configure_logging(
        settings.log_level, json=settings.log_format == "json", secrets=settings.secret_values()
    )
    configure_tracing(settings.otlp_endpoint)
    try:
        import uvloop
    except ImportError:  # not on every platform; the standard loop works, only slower
        asyncio.run(serve(settings))
    else:
        uvloop.run(serve(settings))
