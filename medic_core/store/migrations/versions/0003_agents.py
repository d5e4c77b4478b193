"""agents

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import medic_core.store.types

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("os", sa.String(length=32), nullable=False),
        sa.Column("arch", sa.String(length=32), nullable=False),
        sa.Column("labels", _json(), nullable=False),
        sa.Column("allowlist", _json(), nullable=False),
        sa.Column("capabilities", _json(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("paused_reason", sa.String(length=500), nullable=True),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=True),
        sa.Column(
            "connected_at", medic_core.store.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("last_seen", medic_core.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "offline_since", medic_core.store.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("next_due", medic_core.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "service_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("created_at", medic_core.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", medic_core.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["service_id"], ["services.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("agent_id"),
    )
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_agents_next_due"), ["next_due"], unique=False)
        batch_op.create_index(batch_op.f("ix_agents_service_id"), ["service_id"], unique=False)
        batch_op.create_index("ix_agents_status_id", ["status", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_index("ix_agents_status_id")
        batch_op.drop_index(batch_op.f("ix_agents_service_id"))
        batch_op.drop_index(batch_op.f("ix_agents_next_due"))

    op.drop_table("agents")
