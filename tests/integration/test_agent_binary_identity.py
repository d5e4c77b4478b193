"""The real agent binary and the real server: a second agent process cannot take an agent id.

An impostor host copies the first agent's identity (its state directory's ``agent-id``) and
connects with an ``agent`` key of its own, advertising other scripts and labels. The server
refuses it ``PERMISSION_DENIED``, audits and counts the refusal, and the first agent keeps its
stream, its advertised allowlist and labels, and keeps running what it is asked to.
"""

from __future__ import annotations

import shutil

from support.agent import FINAL, Host, Rig, rig, scrape, wait_for

__all__ = ["rig"]  # the fixture, imported for pytest

REFUSED = 'medic_agent_hello_refusals_total{reason="other_key"}'


def test_a_second_agent_with_the_same_id_and_another_key_is_refused(rig: Rig) -> None:
    agent_id = rig.agent_id()
    before = rig.api("GET", f"/api/v1/agents/{agent_id}")[1]
    status, key = rig.api("POST", "/api/v1/api-keys", {"name": "impostor", "scopes": ["agent"]})
    assert status == 201, key

    impostor = Host(rig.host.root.parent / "impostor", rig.server, rig.host.grpc_port, key["token"])
    impostor.configure()
    impostor.write_script("hello.sh", "#!/bin/sh\necho impostor\n")
    impostor.add_script("exfiltrate", "#!/bin/sh\nenv\n")
    impostor.allowlist()
    config = impostor.root / "agent.toml"
    config.write_text(config.read_text().replace('role = "test"', 'role = "impostor"'))
    impostor.state.mkdir(mode=0o700)
    shutil.copy(rig.host.state / "agent-id", impostor.state / "agent-id")
    impostor.start()
    try:

        def refused() -> bool:
            return scrape(f"{rig.server.url}/metrics").get(REFUSED, 0) >= 1

        wait_for("the impostor to be refused", refused)
        wait_for("the impostor to log its refusal", lambda: "PermissionDenied" in impostor.log())

        after = rig.api("GET", f"/api/v1/agents/{agent_id}")[1]
        for field in ("session_id", "connected_at", "hostname", "labels", "allowlist", "key_id"):
            assert after[field] == before[field], field
        assert after["status"] == "online"
        assert after["labels"] == {"role": "test"}
        assert "exfiltrate" not in {s["name"] for s in after["allowlist"]["scripts"]}

        (entry, *_) = rig.audit("agent.hello_refused")
        assert entry["actor"] == f"key:{key['key_id']}"
        assert entry["after"] == {
            "agent_id": agent_id,
            "key_id": key["key_id"],
            "reason": "other_key",
        }

        # The first agent still runs what it is asked to (its hello.sh, not the impostor's).
        done = rig.wait_state(rig.execute("hello", "world")["id"], FINAL)
        assert (done["state"], done["output"]["stdout"]) == ("succeeded", "hello world\n"), done
        assert impostor.process is not None and impostor.process.poll() is None  # retrying
        assert "welcomed by the server" not in impostor.log()
        assert "execution started" not in impostor.log()
    finally:
        impostor.stop()
