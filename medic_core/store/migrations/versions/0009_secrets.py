"""secrets: named values for playbook templates, encrypted at rest

- ``secrets``: one row per secret name; ``ciphertext`` is the value as a Fernet token (the key
  is ``MEDIC_SECRET_KEY``, never in the database); who set it last and when.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-15
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import medic_core.store.types

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "secrets",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("ciphertext", sa.Text(), nullable=False),
        sa.Column("created_at", medic_core.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", medic_core.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("secrets")
