"""Confirmation emails sent, for the per-address rate limit.

Revision ID: 0004
Revises: 0003 (the scheduler lease)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "confirmation_sends",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("email_key", sa.String(320), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_confirmation_sends"),
    )
    op.create_index("ix_confirmation_sends_email_key_sent_at", "confirmation_sends", ["email_key", "sent_at"])


def downgrade() -> None:
    op.drop_table("confirmation_sends")
