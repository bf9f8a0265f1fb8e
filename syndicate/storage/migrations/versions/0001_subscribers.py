"""Subscribers and their categories.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subscribers",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("email_key", sa.String(320), nullable=False),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("frequency", sa.String(8), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("send_hour", sa.SmallInteger, nullable=False),
        sa.Column("weekday", sa.SmallInteger, nullable=False),
        sa.Column("high_water", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_send_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("unsubscribed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_subscribers"),
        sa.UniqueConstraint("email_key", name="uq_subscribers_email_key"),
        sa.CheckConstraint("status IN ('pending', 'active', 'unsubscribed', 'bounced')", name="ck_subscribers_status"),
        sa.CheckConstraint("frequency IN ('daily', 'weekly')", name="ck_subscribers_frequency"),
        sa.CheckConstraint("send_hour BETWEEN 0 AND 23", name="ck_subscribers_send_hour"),
        sa.CheckConstraint("weekday BETWEEN 0 AND 6", name="ck_subscribers_weekday"),
    )
    op.create_index("ix_subscribers_due", "subscribers", ["status", "frequency", "next_send_at", "id"])
    op.create_table(
        "subscriber_categories",
        sa.Column("subscriber_id", sa.Integer, nullable=False),
        sa.Column("slug", sa.String(100), nullable=False),
        sa.PrimaryKeyConstraint("subscriber_id", "slug", name="pk_subscriber_categories"),
        sa.ForeignKeyConstraint(
            ["subscriber_id"], ["subscribers.id"],
            name="fk_subscriber_categories_subscriber_id_subscribers", ondelete="CASCADE",
        ),
    )
    op.create_index("ix_subscriber_categories_slug", "subscriber_categories", ["slug"])


def downgrade() -> None:
    op.drop_table("subscriber_categories")
    op.drop_table("subscribers")
