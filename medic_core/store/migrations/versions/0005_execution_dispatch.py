"""execution dispatch across replicas

The replica holding an agent's stream sends what was requested on another replica: executions
never sent, and cancels not sent yet (``cancel_sent_at``, NULL while a requested cancel is
owed; rows cancelled before this revision get their ``Cancel`` once more, which the agent
answers idempotently). The watch fails executions left unanswered past the agent's memory
window, found by state and age.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import medic_core.store.types

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The same text as medic_core.store.models.EXECUTIONS_OWED (a migration never imports models).
_OWED = (
    "finished_at IS NULL AND (sent_count = 0 "
    "OR (cancel_requested_at IS NOT NULL AND cancel_sent_at IS NULL))"
)


def upgrade() -> None:
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "cancel_sent_at",
                medic_core.store.types.UTCDateTime(timezone=True),
                nullable=True,
            )
        )
        batch_op.create_index(
            "ix_executions_owed",
            ["agent_id", "id"],
            unique=False,
            sqlite_where=sa.text(_OWED),
            postgresql_where=sa.text(_OWED),
        )
        batch_op.create_index(
            "ix_executions_state_created", ["state", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.drop_index("ix_executions_state_created")
        batch_op.drop_index("ix_executions_owed")
        batch_op.drop_column("cancel_sent_at")
