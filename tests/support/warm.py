"""``medic serve`` processes started from a warm fork server, for tests that start many.

A real ``medic serve`` spends most of its start (about 1 s of CPU, several seconds on a busy
2-core machine) importing aiohttp, SQLAlchemy, grpc and Medic; what it does after the imports
(read the settings, connect to the database, bootstrap the admin key, listen) takes a fraction
of that. A test that starts 40 replicas to catch a race at the bootstrap would spend minutes
importing. ``WarmServerProcess`` is a ``ServerProcess`` whose process is forked from
multiprocessing's fork server, which imported the server's modules once: each replica is still
its own OS process with its own environment, session, stdout/stderr files, database connections
and listening socket, running the ``medic`` console script's ``main(["serve"])`` -- the same
code path as the real command from the point where the settings are read.

Use it where the start itself is what is repeated; everything else should use ``ServerProcess``.
"""

from __future__ import annotations

import multiprocessing
import os
import runpy
import subprocess
from pathlib import Path
from typing import IO, Any

from support.server import ServerProcess

#: Imported once by the fork server: the modules ``medic serve`` imports before it reads its
#: settings (the command itself imports the server lazily).
PRELOAD = ["medic_core.cli", "medic_core.server.serve", "medic_core.app", "uvloop"]

#: Run in the forked child by path (the fork server's ``sys.path`` does not have ``tests/``).
CHILD = Path(__file__).with_name("warm_child.py")


def _context() -> Any:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


class ForkedServe:
    """The part of ``subprocess.Popen`` that ``ServerProcess`` uses, for a forked child."""

    def __init__(self, process: Any) -> None:
        self._process = process

    @property
    def pid(self) -> int:
        return int(self._process.pid)

    @property
    def returncode(self) -> int | None:
        code = self._process.exitcode
        return None if code is None else int(code)

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        code = self.returncode
        if code is None:
            raise subprocess.TimeoutExpired("medic serve (forked)", timeout or 0.0)
        return code


class WarmServerProcess(ServerProcess):
    """A ``ServerProcess`` forked from a fork server that preloaded the server's modules."""

    def _launch(self, out: IO[bytes], err: IO[bytes]) -> Any:
        settings = {
            "WARM_SERVE": {"cwd": str(self.data_dir), "stdout": out.name, "stderr": err.name},
            "WARM_SERVE_ENV": self.environment(),
        }
        process = _context().Process(
            target=runpy.run_path,
            args=(str(CHILD),),
            kwargs={"init_globals": settings, "run_name": "__main__"},
            daemon=False,
        )
        process.start()
        return ForkedServe(process)
