"""The gRPC transport agents connect to: the endpoint (``endpoint.py``: the servicer of
``medic.agent.v1.AgentService``) and the generated stubs of the agent protocol (``proto/``,
from ``proto/medic/agent/v1/agent.proto``; ``docs/agent-protocol.md`` describes it).

The agent domain (``medic_core/agent/``) imports none of this: the endpoint turns protocol
messages into the domain's own values (``AgentInfo``, ``ExecutionUpdate``, ``OutputChunk``) and
the domain's commands back into messages.
"""
