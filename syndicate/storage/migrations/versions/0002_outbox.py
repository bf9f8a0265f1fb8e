"""The outbox: runs and their deliveries.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("request", sa.Text, nullable=False),
        *[sa.Column(name, sa.Integer, nullable=False) for name in
          ("total", "queued", "sending", "sent", "retrying", "failed", "skipped")],
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
        sa.CheckConstraint("kind IN ('scheduled', 'manual', 'retry')", name="ck_runs_kind"),
        sa.CheckConstraint("status IN ('running', 'finished')", name="ck_runs_status"),
    )
    op.create_index("ix_runs_started_at", "runs", ["started_at"])
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("subscriber_id", sa.Integer, nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("since_key", sa.String(40), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("articles", sa.Text, nullable=False),
        sa.Column("message_id", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_code", sa.Integer, nullable=True),
        sa.Column("last_reply", sa.Text, nullable=True),
        sa.Column("claimed_by", sa.String(120), nullable=True),
        sa.Column("open_subscriber_id", sa.Integer, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_deliveries"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_deliveries_run_id_runs", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["subscriber_id"], ["subscribers.id"], name="fk_deliveries_subscriber_id_subscribers", ondelete="CASCADE",
        ),
        sa.UniqueConstraint("subscriber_id", "since_key", "until", name="uq_deliveries_digest"),
        sa.UniqueConstraint("open_subscriber_id", name="uq_deliveries_open_subscriber_id"),
        sa.CheckConstraint(
            "status IN ('queued', 'sending', 'sent', 'retry', 'failed', 'skipped')", name="ck_deliveries_status",
        ),
    )
    op.create_index("ix_deliveries_run_status", "deliveries", ["run_id", "status"])
    op.create_index("ix_deliveries_status_next", "deliveries", ["status", "next_attempt_at"])
    op.create_index("ix_deliveries_subscriber", "deliveries", ["subscriber_id", "id"])


def downgrade() -> None:
    op.drop_table("deliveries")
    op.drop_table("runs")
