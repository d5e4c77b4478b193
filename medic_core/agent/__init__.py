"""Agents: the hosts that run allow-listed scripts for Medic -- the domain (the hub, identity,
executions).

The transport agents connect through lives in ``medic_core/server/grpc/`` (the endpoint and the
generated stubs of ``proto/medic/agent/v1/agent.proto``); nothing here imports grpc or
``medic_core.server``.
"""
