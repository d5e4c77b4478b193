"""playbooks: definitions and their versions

- ``playbooks``: one row per playbook slug; ``current_version`` numbers its latest version,
  ``deleted_at`` marks a deleted playbook (its versions stay: executions pin them).
- ``playbook_versions``: every version of a definition as saved (JSON), with the SHA-256 of its
  canonical JSON (``digest``) and who saved it; ``(playbook_id, version)`` is unique.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-14
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import medic_core.store.types

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(
        "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "playbooks",
        _id(),
        sa.Column("slug", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("current_version", sa.Integer(), nullable=False),
        sa.Column("created_at", medic_core.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", medic_core.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", medic_core.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("slug"),
    )
    op.create_table(
        "playbook_versions",
        _id(),
        sa.Column(
            "playbook_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column(
            "definition",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("created_at", medic_core.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["playbook_id"], ["playbooks.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("playbook_id", "version", name="uq_playbook_versions_version"),
    )


def downgrade() -> None:
    op.drop_table("playbook_versions")
    op.drop_table("playbooks")
