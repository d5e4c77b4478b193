"""The real agent binary against the real server: every process a script starts ends with its
execution, and nothing the agent inherited reaches a script.

The attack: a script runs ``setsid sh -c 'trap "" TERM; exec sleep 120' &``. That descendant
leaves the script's process group and session and ignores ``SIGTERM``, so a process-group kill
never reached it: it survived timeout and cancel, re-parented to PID 1, while the execution's
detail said "its process group was killed". In the ``cgroup`` and ``subreaper`` containments it
must be dead (checked in ``/proc``) after a timeout and after a cancel, and the stored detail
must say what was killed. The ``process_group`` containment cannot reach it and must say so.
A ``cgroup`` case is skipped, with the reason, only where the kernel does not let this process
create a cgroup; the ``subreaper`` cases run everywhere on Linux.

The harness (``rig``) is ``tests/support/agent.py``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from support.agent import FINAL, Rig, dead, rig, wait_for

__all__ = ["rig"]  # the fixture, imported for pytest

# Leaves a descendant outside its process group and session, which ignores SIGTERM and writes
# its pid to $PIDFILE, then waits.
ESCAPE = """#!/bin/sh
setsid sh -c 'trap "" TERM; echo $$ > "$PIDFILE"; exec sleep 120' </dev/null &
sleep 300
"""

# Lists its descriptors and where they point.
FDS = """#!/bin/sh
ls -l /proc/$$/fd
"""

ENDED = {
    "cgroup": "its cgroup was killed (",
    "subreaper": "its process tree was killed (",
}


def cgroup_refusal() -> str | None:
    """Why this process cannot create a cgroup v2 group, or None when it can."""
    mounts = [
        line.split(" - ")[0].split()[4]
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if " - cgroup2 " in line
    ]
    lines = Path("/proc/self/cgroup").read_text().splitlines()
    own = next((line[3:] for line in lines if line.startswith("0::")), None)
    if not mounts or own is None:
        return "no cgroup v2 hierarchy"
    probe = Path(mounts[0]) / own.lstrip("/") / f"medic-probe-{os.getpid()}"
    try:
        probe.mkdir()
    except OSError as exc:
        return f"{probe}: {exc}"
    probe.rmdir()
    return None


def contained(rig: Rig, mode: str) -> None:
    """Restart the rig's agent with ``containment = mode`` and the scripts of these tests."""
    if mode == "cgroup" and (reason := cgroup_refusal()) is not None:
        pytest.skip(f"the kernel does not let this process create a cgroup: {reason}")
    host = rig.host
    host.stop()
    host.add_script("escape", ESCAPE, 'env = ["PIDFILE"]\n', timeout=60)
    host.add_script("fds", FDS)
    host.allowlist()
    host.config_extra = f'containment = "{mode}"\n'
    host.write_config()
    host.start()
    rig.agent_id()
    assert host.metrics()[f'medic_agent_containment{{mode="{mode}"}}'] == 1
    assert '"message":"containment chosen","mode":"' + mode + '"' in host.log()


def escape(rig: Rig, **extra: Any) -> tuple[dict[str, Any], int]:
    """Start the escape script; the execution and its escapee's pid (alive)."""
    pidfile = rig.host.root / f"escapee-{rig.host.runs}-{os.urandom(4).hex()}.pid"
    created = rig.execute("escape", env={"PIDFILE": str(pidfile)}, **extra)
    escapee = int(
        wait_for("the escapee's pid", lambda: pidfile.exists() and pidfile.read_text().strip())
    )
    assert not dead(escapee)
    return created, escapee


@pytest.mark.parametrize("mode", ["cgroup", "subreaper"])
def test_a_setsid_descendant_that_ignores_sigterm_dies_on_timeout(rig: Rig, mode: str) -> None:
    contained(rig, mode)
    created, escapee = escape(rig, timeout_seconds=2)
    done = rig.wait_state(created["id"], FINAL)
    assert done["state"] == "timed_out", done
    assert done["detail"].startswith(f"ran past its timeout of 2 s; {ENDED[mode]}"), done
    wait_for("the escapee to die", lambda: dead(escapee))


@pytest.mark.parametrize("mode", ["cgroup", "subreaper"])
def test_a_setsid_descendant_that_ignores_sigterm_dies_on_cancel(rig: Rig, mode: str) -> None:
    contained(rig, mode)
    created, escapee = escape(rig)
    status, answer = rig.api("POST", f"/api/v1/executions/{created['id']}/cancel")
    assert status == 200, answer
    done = rig.wait_state(created["id"], FINAL)
    assert done["state"] == "cancelled", done
    assert ENDED[mode] in done["detail"], done
    wait_for("the escapee to die", lambda: dead(escapee))
    killed = rig.host.metrics()[f'medic_agent_contained_processes_killed_total{{mode="{mode}"}}']
    assert killed >= 2  # at least the script and the escapee


def test_a_process_group_says_it_cannot_reach_a_descendant_that_left(rig: Rig) -> None:
    contained(rig, "process_group")
    created, escapee = escape(rig, timeout_seconds=2)
    done = rig.wait_state(created["id"], FINAL)
    assert done["state"] == "timed_out", done
    assert done["detail"] == (
        "ran past its timeout of 2 s; only its process group was signalled "
        "(processes that left the group are not tracked)"
    ), done
    assert not dead(escapee)  # what process groups cannot do, said honestly
    os.kill(escapee, 9)


@pytest.mark.parametrize("mode", ["cgroup", "subreaper"])
def test_a_descriptor_the_agent_inherited_never_reaches_a_script(
    rig: Rig, mode: str, tmp_path: Path
) -> None:
    contained(rig, mode)
    marker = tmp_path / "inherited-secret"
    marker.write_text("what the agent's parent had open\n")
    fd = os.open(marker, os.O_RDONLY)
    try:
        rig.host.stop()
        rig.host.start(pass_fds=(fd,))
    finally:
        os.close(fd)
    done = rig.wait_state(rig.execute("fds")["id"], FINAL)
    assert done["state"] == "succeeded", done
    listing = done["output"]["stdout"]
    assert str(marker) not in listing, listing
    # "N -> target": above 2 only the script (its descriptor, and the shell's own to read it).
    above_2 = {
        target
        for left, _, target in (line.partition(" -> ") for line in listing.splitlines())
        if target and int(left.split()[-1]) > 2
    }
    assert len(above_2) == 1, listing
