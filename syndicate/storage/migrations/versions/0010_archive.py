"""The public archive (what the digests contained, per period and category: no personal data) and
the digests counted out of each subscriber's series when their deliveries are pruned (issue numbers).

Revision ID: 0010
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "archive_items",
        sa.Column("frequency", sa.String(8), nullable=False),
        sa.Column("period", sa.String(10), nullable=False),
        sa.Column("category", sa.String(100), nullable=False),
        sa.Column("article_id", sa.String(255), nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("first_sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("frequency", "period", "category", "article_id", name="pk_archive_items"),
    )
    op.create_table(
        "archive_state",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("collected_until", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_archive_state"),
    )
    op.create_table(
        "subscriber_issues",
        sa.Column("subscriber_id", sa.Integer, nullable=False),
        sa.Column("pruned_sent", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("subscriber_id", name="pk_subscriber_issues"),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscribers.id"], ondelete="CASCADE",
                                name="fk_subscriber_issues_subscriber_id_subscribers"),
    )


def downgrade() -> None:
    op.drop_table("subscriber_issues")
    op.drop_table("archive_state")
    op.drop_table("archive_items")
