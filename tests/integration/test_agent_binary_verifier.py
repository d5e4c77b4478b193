"""The allowlist verifier in the real agent binary, attacked as a local user would.

- root via the interpreter: a listed root script whose ``#!`` line names an interpreter in a
  directory ``nobody`` owns is refused, and that interpreter never runs;
- what ran is what was hashed: executions racing an in-place rewrite of the script run only the
  listed bytes, or are refused with ``hash_mismatch``;
- setuid scripts are refused; an allowlist naming a forbidden variable is refused at load.

The harness (``rig``: ``medic serve`` and the ``medic-agent`` binary) is ``tests/support/agent.py``.
Scripts are added while the agent runs: it re-reads its allowlist every 5 s and tells the server,
which checks requests against what the agent advertised (``_relist`` waits for that).
"""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from support.agent import AGENT_BIN, FINAL, Rig, rig, wait_for

__all__ = ["rig"]  # the fixture, imported for pytest

NOBODY = 65534

# Same length: the listed content, and what the owner's in-place rewrite puts there.
GOOD = "#!/bin/sh\necho good-content\n"
BAD = "#!/bin/sh\necho BAD!-content\n"


def _relist(rig: Rig) -> None:
    """Write the allowlist from the host's entries and wait until the server has it."""
    rig.host.allowlist()
    expected = hashlib.sha256((rig.host.root / "allowlist.toml").read_bytes()).hexdigest()
    agent = rig.agent_id()

    def advertised() -> bool:
        _, body = rig.api("GET", f"/api/v1/agents/{agent}")
        return bool((body.get("allowlist") or {}).get("sha256") == expected)

    wait_for("the agent to advertise the new allowlist", advertised)


def _check(rig: Rig) -> subprocess.CompletedProcess[str]:
    """``medic-agent check`` on the host's configuration."""
    return subprocess.run(
        [
            str(AGENT_BIN),
            "check",
            "--config",
            str(rig.host.root / "agent.toml"),
            "--owner-uid",
            str(os.getuid()),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _run(rig: Rig, script: str) -> dict[str, Any]:
    return rig.wait_state(rig.execute(script)["id"], FINAL)


def _skips(rig: Rig, script: str, reason: str) -> float:
    key = f'medic_agent_script_skips_total{{script="{script}",reason="{reason}"}}'
    return rig.host.metrics().get(key, 0.0)


# ---- root via the interpreter --------------------------------------------------------------------


def test_an_interpreter_in_a_directory_nobody_owns_never_runs(rig: Rig) -> None:
    marker = rig.host.root / "interpreter-ran-as"
    theirs = rig.host.root / "nobodys"
    theirs.mkdir(mode=0o755)
    interp = theirs / "interp"
    # What nobody would put there: record who runs it, then behave like a shell.
    interp.write_text(f'#!/bin/sh\nid -u > {marker}\nexec /bin/sh "$@"\n')
    interp.chmod(0o755)
    os.chown(interp, NOBODY, NOBODY)
    os.chown(theirs, NOBODY, NOBODY)
    # A script owned by the trusted user (the test's), listed with its right hash.
    rig.host.add_script("evil", f"#!{interp}\necho from-the-script\n")
    _relist(rig)

    done = _run(rig, "evil")
    assert (done["state"], done["reason"]) == ("rejected", "interpreter_untrusted"), done
    assert "65534" in done["detail"], done
    assert done["output"]["stdout"] == ""
    assert not marker.exists()
    assert _skips(rig, "evil", "interpreter_untrusted") == 1

    checked = _check(rig)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "evil  REFUSED interpreter_untrusted: " in checked.stdout, checked.stdout
    assert not marker.exists()

    # The attack is real: run directly, the script hands root to nobody's interpreter.
    subprocess.run([str(rig.host.entries["evil"][0])], check=True, capture_output=True)
    assert marker.read_text().strip() == str(os.getuid())


def test_sh_scripts_still_run_and_env_runs_only_a_listed_interpreter(rig: Rig) -> None:
    done = rig.wait_state(rig.execute("hello", "world")["id"], FINAL)
    assert (done["state"], done["output"]["stdout"]) == ("succeeded", "hello world\n"), done

    rig.host.add_script("via-env", "#!/usr/bin/env sh\necho ran-through-env\n")
    _relist(rig)
    done = _run(rig, "via-env")
    assert (done["state"], done["reason"]) == ("rejected", "interpreter_not_listed"), done
    assert _skips(rig, "via-env", "interpreter_not_listed") == 1
    checked = _check(rig)
    assert "via-env  REFUSED interpreter_not_listed: " in checked.stdout, checked.stdout

    # env finds sh in /usr/bin first (the scripts' PATH is /usr/sbin:/usr/bin:/sbin:/bin).
    rig.host.allowlist_extra = '\n[[interpreter]]\npath = "/usr/bin/sh"\n'
    _relist(rig)
    done = _run(rig, "via-env")
    assert (done["state"], done["output"]["stdout"]) == ("succeeded", "ran-through-env\n"), done
    checked = _check(rig)
    assert checked.returncode == 0, checked.stdout
    real_env, real_sh = os.path.realpath("/usr/bin/env"), os.path.realpath("/usr/bin/sh")
    assert f"  interp   {real_env} -> {real_sh}\n" in checked.stdout, checked.stdout


# ---- what ran is what was hashed -----------------------------------------------------------------


def test_executions_racing_in_place_rewrites_run_only_the_hashed_content(rig: Rig) -> None:
    assert len(GOOD) == len(BAD)
    script = rig.host.add_script("raced", GOOD)
    _relist(rig)
    stop = threading.Event()

    def rewrite() -> int:
        # Open, write without truncating and close, as `cp` over an existing file does; in two
        # halves, so that torn mixtures exist too.
        # While the kernel is starting the file, opening it for writing fails (ETXTBSY): retry.
        rewrites, half = 0, len(GOOD) // 2
        while not stop.is_set():
            for content in (BAD.encode(), GOOD.encode()):
                try:
                    with script.open("r+b", buffering=0) as file:
                        file.write(content[:half])
                        file.write(content[half:])
                except OSError as exc:
                    if exc.errno != errno.ETXTBSY:
                        raise
            rewrites += 1
        return rewrites

    def execute(_: int) -> dict[str, Any]:
        return _run(rig, "raced")

    started = time.monotonic()
    with ThreadPoolExecutor(1) as writer_pool, ThreadPoolExecutor(16) as pool:
        writer = writer_pool.submit(rewrite)
        try:
            results = list(pool.map(execute, range(500)))
        finally:
            stop.set()
        rewrites = writer.result()
    elapsed = time.monotonic() - started

    outcomes: dict[tuple[str, str, str], int] = {}
    for done in results:
        key = (done["state"], done["reason"] or "", done["output"]["stdout"])
        outcomes[key] = outcomes.get(key, 0) + 1
    print(f"500 executions in {elapsed:.1f} s, {rewrites} rewrites meanwhile: {outcomes}")
    assert set(outcomes) <= {
        ("succeeded", "", "good-content\n"),
        ("rejected", "hash_mismatch", ""),
    }, outcomes
    assert not any("BAD" in done["output"]["stdout"] for done in results)


# ---- setuid scripts, forbidden variables ---------------------------------------------------------


def test_a_setuid_script_is_refused(rig: Rig) -> None:
    script = rig.host.add_script("suid", "#!/bin/sh\necho suid\n")
    script.chmod(0o4755)
    _relist(rig)
    done = _run(rig, "suid")
    assert (done["state"], done["reason"]) == ("rejected", "setuid"), done
    assert _skips(rig, "suid", "setuid") == 1
    assert "suid  REFUSED setuid: " in _check(rig).stdout


def test_an_allowlist_naming_a_forbidden_variable_is_refused_at_load(rig: Rig) -> None:
    agent = rig.agent_id()
    rig.host.add_script("jvm", "#!/bin/sh\necho jvm\n", 'env = ["JAVA_TOOL_OPTIONS"]\n')
    rig.host.allowlist()
    checked = _check(rig)
    assert checked.returncode == 2, checked.stdout + checked.stderr
    assert "JAVA_TOOL_OPTIONS" in checked.stderr + checked.stdout
    assert "forbidden_env_name" in checked.stderr + checked.stdout

    # The running agent refuses the whole file, says so, and advertises nothing it could run.
    wait_for(
        "the agent to refuse the allowlist",
        lambda: "allowlist unavailable" in rig.host.log() and "JAVA_TOOL_OPTIONS" in rig.host.log(),
    )

    def nothing_advertised() -> bool:
        _, body = rig.api("GET", f"/api/v1/agents/{agent}")
        return not (body.get("allowlist") or {}).get("scripts")

    wait_for("the agent to advertise no script", nothing_advertised)
    status, answer = rig.api(
        "POST", f"/api/v1/agents/{agent}/executions", {"script": "hello", "args": ["world"]}
    )
    assert status == 422, answer
    _, executions = rig.api("GET", "/api/v1/executions")
    assert executions["items"] == []
