"""Signup attempts (for the abuse limits) and spent form tokens.

Revision ID: 0005
Revises: 0004 (confirmation sends)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signup_attempts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("client", sa.String(64), nullable=False),
        sa.Column("mailbox", sa.String(320), nullable=False),
        sa.Column("domain", sa.String(255), nullable=False),
        sa.Column("refused", sa.String(32), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_signup_attempts"),
    )
    for name, columns in (("at", ["at"]), ("client_at", ["client", "at"]), ("mailbox_at", ["mailbox", "at"]),
                          ("domain_at", ["domain", "at"])):
        op.create_index(f"ix_signup_attempts_{name}", "signup_attempts", columns)
    op.create_table(
        "spent_forms",
        sa.Column("form_id", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("form_id", name="pk_spent_forms"),
    )
    op.create_index("ix_spent_forms_expires_at", "spent_forms", ["expires_at"])


def downgrade() -> None:
    op.drop_table("spent_forms")
    op.drop_table("signup_attempts")
