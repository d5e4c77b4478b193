"""agent identity bound to a key, agents' own services marked, server-side output limits

- ``agents.key_id``: the API key an agent id belongs to. Agents registered before this revision
  are bound to the key of their latest ``agent.register``/``agent.update`` audit entry (its
  actor is ``key:<key_id>``) when that key is still active (not revoked): an agent whose key was
  revoked has moved to another key since (a rotation), and binding it to the old one would lock
  it out. Agents with nothing known stay NULL; their next ``Hello`` binds them (logged as a
  warning, audited as ``agent.update``).
- ``agents.revoked_at``: an admin revoked the agent (every ``Hello`` with its id is refused).
- ``agents.containment``, ``executions.containment``: how the agent ends a script's processes.
- ``services.agent_id`` (unique): the marker of an agent's own service. Set here for every
  service an agent links to, except one that the audit log shows a person created (a
  ``service.create`` entry whose actor is not ``system``): that one is a user's service an agent
  adopted through its slug, and the hub now makes the agent a service of its own instead.
- ``executions.output_bytes``: the bytes of output stored, which the server caps; counted here
  for the executions that may still receive output (unfinished ones).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import medic_core.store.types

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The latest register/update entry of each agent names the key that said its Hello. Only keys
# that are still active qualify (see the docstring).
_BIND_OWNERS = """
UPDATE agents SET key_id = (
    SELECT substr(entry.actor, 5) FROM audit_log entry
    WHERE entry.resource_type = 'agent'
      AND entry.resource_id = agents.agent_id
      AND entry.action IN ('agent.register', 'agent.update')
      AND entry.actor LIKE 'key:%'
      AND EXISTS (
          SELECT 1 FROM api_keys k
          WHERE k.key_id = substr(entry.actor, 5) AND k.revoked_at IS NULL
      )
    ORDER BY entry.id DESC
    LIMIT 1
)
WHERE key_id IS NULL
"""

_MARK_AGENT_SERVICES = """
UPDATE services SET agent_id = (
    SELECT min(a.agent_id) FROM agents a WHERE a.service_id = services.id
)
WHERE id IN (SELECT service_id FROM agents WHERE service_id IS NOT NULL)
  AND NOT EXISTS (
      SELECT 1 FROM audit_log entry
      WHERE entry.resource_type = 'service'
        AND entry.action = 'service.create'
        AND entry.resource_id = CAST(services.id AS VARCHAR(100))
        AND entry.actor <> 'system'
  )
"""

_COUNT_OUTPUT = """
UPDATE executions SET output_bytes = (
    SELECT coalesce(sum(length(o.data)), 0) FROM execution_output o
    WHERE o.execution_id = executions.id
)
WHERE finished_at IS NULL
"""


def upgrade() -> None:
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("containment", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("key_id", sa.String(length=32), nullable=True))
        batch_op.add_column(
            sa.Column(
                "revoked_at", medic_core.store.types.UTCDateTime(timezone=True), nullable=True
            )
        )
    with op.batch_alter_table("services", schema=None) as batch_op:
        batch_op.add_column(sa.Column("agent_id", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_services_agent_id", ["agent_id"], unique=True)
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("output_bytes", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("containment", sa.String(length=16), nullable=True))
    op.execute(_BIND_OWNERS)
    op.execute(_MARK_AGENT_SERVICES)
    op.execute(_COUNT_OUTPUT)


def downgrade() -> None:
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.drop_column("containment")
        batch_op.drop_column("output_bytes")
    with op.batch_alter_table("services", schema=None) as batch_op:
        batch_op.drop_index("ix_services_agent_id")
        batch_op.drop_column("agent_id")
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_column("revoked_at")
        batch_op.drop_column("key_id")
        batch_op.drop_column("containment")
