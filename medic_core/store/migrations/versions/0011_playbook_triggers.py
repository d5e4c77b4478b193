"""playbook triggers: what each alert trigger did, and the context a trigger gives a run

- ``playbook_trigger_firings``: one row per (playbook, trigger index, alert) that fired, with
  its outcome (``started`` and the execution, or ``skipped_<why>``). Its unique constraint is
  the exactly-once guarantee of alert triggers across replicas and restarts.
- ``playbook_executions.trigger_context``: ``alert`` and ``service`` as they were when an alert
  started the run (the template context); NULL for a manual run.
- ``playbooks.webhook_secret``: the inbound webhook's HMAC secret, encrypted (Fernet).
- ``playbook_webhook_deliveries``: the signatures an inbound webhook accepted (replays refused).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import medic_core.store.types

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _big() -> sa.types.TypeEngine:  # type: ignore[type-arg]
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _json() -> sa.types.TypeEngine:  # type: ignore[type-arg]
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _instant() -> medic_core.store.types.UTCDateTime:
    return medic_core.store.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.add_column("playbooks", sa.Column("webhook_secret", sa.Text(), nullable=True))
    op.create_table(
        "playbook_webhook_deliveries",
        sa.Column("id", _big(), autoincrement=True, nullable=False),
        sa.Column("playbook_id", _big(), nullable=False),
        sa.Column("signature", sa.String(length=64), nullable=False),
        sa.Column("received_at", _instant(), nullable=False),
        sa.ForeignKeyConstraint(["playbook_id"], ["playbooks.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("playbook_id", "signature", name="uq_playbook_webhook_deliveries"),
    )
    op.create_index(
        "ix_playbook_webhook_deliveries_received",
        "playbook_webhook_deliveries",
        ["received_at"],
    )
    op.add_column("playbook_executions", sa.Column("trigger_context", _json(), nullable=True))
    op.create_table(
        "playbook_trigger_firings",
        sa.Column("id", _big(), autoincrement=True, nullable=False),
        sa.Column("playbook_id", _big(), nullable=False),
        sa.Column("trigger_index", sa.Integer(), nullable=False),
        sa.Column("alert_id", _big(), nullable=False),
        sa.Column("outcome", sa.String(length=30), nullable=False),
        sa.Column("execution_id", _big(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("fired_at", _instant(), nullable=False),
        sa.ForeignKeyConstraint(["playbook_id"], ["playbooks.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["execution_id"], ["playbook_executions.id"], ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "playbook_id", "trigger_index", "alert_id", name="uq_playbook_trigger_firings"
        ),
    )
    op.create_index(
        "ix_playbook_trigger_firings_alert", "playbook_trigger_firings", ["alert_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_playbook_trigger_firings_alert", table_name="playbook_trigger_firings")
    op.drop_table("playbook_trigger_firings")
    with op.batch_alter_table("playbook_executions") as batch:
        batch.drop_column("trigger_context")
    op.drop_index(
        "ix_playbook_webhook_deliveries_received", table_name="playbook_webhook_deliveries"
    )
    op.drop_table("playbook_webhook_deliveries")
    with op.batch_alter_table("playbooks") as batch:
        batch.drop_column("webhook_secret")
