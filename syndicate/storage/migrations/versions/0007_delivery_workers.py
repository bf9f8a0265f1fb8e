"""`syndicate worker` processes: their heartbeats, the shared send limits and SMTP connection slots.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "delivery_workers",
        sa.Column("id", sa.String(120), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("concurrency", sa.Integer, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_delivery_workers"),
    )
    op.create_table(
        "send_limits",
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("next_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_send_limits"),
    )
    op.create_table(
        "smtp_connection_slots",
        sa.Column("slot", sa.Integer, autoincrement=False, nullable=False),
        sa.Column("worker", sa.String(120), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("slot", name="pk_smtp_connection_slots"),
    )
    op.create_index("ix_deliveries_status_id", "deliveries", ["status", "id"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_status_id", table_name="deliveries")
    op.drop_table("smtp_connection_slots")
    op.drop_table("send_limits")
    op.drop_table("delivery_workers")
