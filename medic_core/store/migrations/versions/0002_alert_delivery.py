"""alert delivery

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import medic_core.store.types

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "escalation_policies",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("slug", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "levels",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("repeat_every", sa.Integer(), nullable=True),
        sa.Column("max_reminders", sa.Integer(), nullable=False),
        sa.Column("created_at", medic_core.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", medic_core.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("slug"),
    )
    op.create_table(
        "schedules",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("slug", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column(
            "weekly",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", medic_core.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", medic_core.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("slug"),
    )
    op.create_table(
        "notification_targets",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("slug", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("notifier", sa.String(length=100), nullable=False),
        sa.Column(
            "config",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("team_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column(
            "service_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("min_priority", sa.String(length=2), nullable=False),
        sa.Column("period", sa.String(length=20), nullable=False),
        sa.Column(
            "schedule_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", medic_core.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", medic_core.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["schedule_id"], ["schedules.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["service_id"], ["services.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("slug"),
    )
    with op.batch_alter_table("notification_targets", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_notification_targets_schedule_id"), ["schedule_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_notification_targets_service_id"), ["service_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_notification_targets_team_id"), ["team_id"], unique=False
        )

    op.create_table(
        "deliveries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("alert_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "target_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column(
            "next_attempt_at", medic_core.store.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("last_error", sa.String(length=1000), nullable=True),
        sa.Column("response_code", sa.Integer(), nullable=True),
        sa.Column(
            "result",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("created_at", medic_core.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", medic_core.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", medic_core.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["target_id"], ["notification_targets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_deliveries_alert_target", ["alert_id", "target_id", "id"], unique=False
        )
        batch_op.create_index(
            "ix_deliveries_due",
            ["next_attempt_at"],
            unique=False,
            sqlite_where=sa.text("status = 'pending'"),
            postgresql_where=sa.text("status = 'pending'"),
        )
        batch_op.create_index("ix_deliveries_status_id", ["status", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_deliveries_target_id"), ["target_id"], unique=False)

    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("escalation_level", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("reminders_sent", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("page_at", medic_core.store.types.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.create_index(
            "ix_alerts_page_at",
            ["page_at"],
            unique=False,
            sqlite_where=sa.text("page_at IS NOT NULL"),
            postgresql_where=sa.text("page_at IS NOT NULL"),
        )

    with op.batch_alter_table("teams", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "escalation_policy_id",
                sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                nullable=True,
            )
        )
        batch_op.create_index(
            batch_op.f("ix_teams_escalation_policy_id"), ["escalation_policy_id"], unique=False
        )
        batch_op.create_foreign_key(
            "fk_teams_escalation_policy_id",
            "escalation_policies",
            ["escalation_policy_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("teams", schema=None) as batch_op:
        batch_op.drop_constraint("fk_teams_escalation_policy_id", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_teams_escalation_policy_id"))
        batch_op.drop_column("escalation_policy_id")

    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_alerts_page_at",
            sqlite_where=sa.text("page_at IS NOT NULL"),
            postgresql_where=sa.text("page_at IS NOT NULL"),
        )
        batch_op.drop_column("page_at")
        batch_op.drop_column("reminders_sent")
        batch_op.drop_column("escalation_level")

    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deliveries_target_id"))
        batch_op.drop_index("ix_deliveries_status_id")
        batch_op.drop_index(
            "ix_deliveries_due",
            sqlite_where=sa.text("status = 'pending'"),
            postgresql_where=sa.text("status = 'pending'"),
        )
        batch_op.drop_index("ix_deliveries_alert_target")

    op.drop_table("deliveries")
    with op.batch_alter_table("notification_targets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notification_targets_team_id"))
        batch_op.drop_index(batch_op.f("ix_notification_targets_service_id"))
        batch_op.drop_index(batch_op.f("ix_notification_targets_schedule_id"))

    op.drop_table("notification_targets")
    op.drop_table("schedules")
    op.drop_table("escalation_policies")
