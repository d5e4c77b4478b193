"""Agents: the hosts that run allow-listed scripts for Medic.

`medic_core.agent.proto` holds the generated stubs of the agent protocol
(`proto/medic/agent/v1/agent.proto`, described in `docs/agent-protocol.md`).
"""
