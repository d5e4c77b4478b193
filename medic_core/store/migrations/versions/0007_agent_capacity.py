"""agent capacity: what an agent runs at once, and executions it handed back

- ``agents.max_concurrent``: how many executions the agent runs at once, as its ``Hello``
  advertises it (``max_concurrent_executions``); NULL for agents that do not say (older ones).
  The server never has more of an agent's executions sent and unfinished.
- ``executions.capacity_refusals``: how many times the agent answered ``too_many_running``;
  each time the execution went back to the queue, to be sent again after ``send_after``.
- ``ix_executions_owed`` now finds executions by ``last_sent_at IS NULL`` (never sent, or handed
  back by the agent) instead of ``sent_count = 0`` (never sent). Every send has set both since
  0004; a row sent but without ``last_sent_at`` (written by hand, say) gets its ``updated_at``,
  so that nothing already at an agent is taken for owed and sent again.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-12
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from alembic.operations import BatchOperations

import medic_core.store.types

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The same texts as medic_core.store.models.EXECUTIONS_OWED, now and before (a migration never
# imports models).
_OWED = (
    "finished_at IS NULL AND (last_sent_at IS NULL "
    "OR (cancel_requested_at IS NOT NULL AND cancel_sent_at IS NULL))"
)
_OWED_BEFORE = (
    "finished_at IS NULL AND (sent_count = 0 "
    "OR (cancel_requested_at IS NOT NULL AND cancel_sent_at IS NULL))"
)


def _owed_index(batch_op: BatchOperations, predicate: str) -> None:
    batch_op.create_index(
        "ix_executions_owed",
        ["agent_id", "id"],
        unique=False,
        sqlite_where=sa.text(predicate),
        postgresql_where=sa.text(predicate),
    )


def upgrade() -> None:
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("max_concurrent", sa.Integer(), nullable=True))
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("capacity_refusals", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column(
                "send_after", medic_core.store.types.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.drop_index("ix_executions_owed")
    op.execute(
        "UPDATE executions SET last_sent_at = updated_at "
        "WHERE sent_count > 0 AND last_sent_at IS NULL"
    )
    with op.batch_alter_table("executions", schema=None) as batch_op:
        _owed_index(batch_op, _OWED)


def downgrade() -> None:
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.drop_index("ix_executions_owed")
        _owed_index(batch_op, _OWED_BEFORE)
    # Dropped in place, never by a batch's copy of the table: on SQLite that copy drops the old
    # table, and with foreign keys on, dropping ``agents`` deletes every execution through its
    # ON DELETE CASCADE (dropping ``executions``, every output chunk). SQLite has had
    # ``ALTER TABLE ... DROP COLUMN`` since 3.35; these columns are in no index.
    for table, column in (
        ("executions", "send_after"),
        ("executions", "capacity_refusals"),
        ("agents", "max_concurrent"),
    ):
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
