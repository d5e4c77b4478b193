"""playbook executions: the engine's durable state

- ``playbook_executions``: one row per run of a playbook, pinned to the ``playbook_versions`` row
  it started with. ``state`` is the run's (pending, running, waiting, succeeded, failed,
  cancelled, timed_out); ``next_at`` is when the engine must look at it again; ``lease_owner``
  and ``lease_until`` say which replica holds it (a lapsed lease may be taken over).
  ``active_key`` is ``"<playbook_id>:<service_id or ->"`` while the run is active and NULL once
  it ended: its unique index is the "one active run per playbook x service" guard.
- ``playbook_step_runs``: one row per attempt of a step, with the state the step type keeps
  between calls, its bounded output and error.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import medic_core.store.types

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _big() -> sa.types.TypeEngine:  # type: ignore[type-arg]
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _json() -> sa.types.TypeEngine:  # type: ignore[type-arg]
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _instant() -> medic_core.store.types.UTCDateTime:
    return medic_core.store.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "playbook_executions",
        sa.Column("id", _big(), autoincrement=True, nullable=False),
        sa.Column("playbook_id", _big(), nullable=False),
        sa.Column("version_id", _big(), nullable=False),
        sa.Column("service_id", _big(), nullable=True),
        sa.Column("alert_id", _big(), nullable=True),
        sa.Column("trigger", sa.String(length=20), nullable=False),
        sa.Column("variables", _json(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("step_runs", sa.Integer(), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("next_at", _instant(), nullable=True),
        sa.Column("lease_owner", sa.String(length=100), nullable=True),
        sa.Column("lease_until", _instant(), nullable=True),
        sa.Column("active_key", sa.String(length=60), nullable=True),
        sa.Column("reason", sa.String(length=60), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("created_at", _instant(), nullable=False),
        sa.Column("updated_at", _instant(), nullable=False),
        sa.Column("finished_at", _instant(), nullable=True),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["playbook_id"], ["playbooks.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["version_id"], ["playbook_versions.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["service_id"], ["services.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("active_key", name="uq_playbook_executions_active"),
    )
    op.create_index(
        "ix_playbook_executions_due", "playbook_executions", ["state", "next_at"]
    )
    op.create_index(
        "ix_playbook_executions_playbook", "playbook_executions", ["playbook_id", "id"]
    )
    op.create_table(
        "playbook_step_runs",
        sa.Column("id", _big(), autoincrement=True, nullable=False),
        sa.Column("execution_id", _big(), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("step_name", sa.String(length=64), nullable=False),
        sa.Column("step_type", sa.String(length=64), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("started_at", _instant(), nullable=False),
        sa.Column("finished_at", _instant(), nullable=True),
        sa.Column("step_state", _json(), nullable=False),
        sa.Column("output", _json(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["execution_id"], ["playbook_executions.id"], ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_playbook_step_runs_execution", "playbook_step_runs", ["execution_id", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_playbook_step_runs_execution", table_name="playbook_step_runs")
    op.drop_table("playbook_step_runs")
    op.drop_index("ix_playbook_executions_playbook", table_name="playbook_executions")
    op.drop_index("ix_playbook_executions_due", table_name="playbook_executions")
    op.drop_table("playbook_executions")
