"""Operators: the audit log, campaigns and console sessions; sign-ups recorded with source "signup" (was "web").

Revision ID: 0009
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(120), nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("subject_kind", sa.String(20), nullable=False),
        sa.Column("subject_id", sa.Integer, nullable=True),
        sa.Column("detail", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_subject", "audit_log", ["subject_kind", "subject_id", "id"])
    op.create_table(
        "campaigns",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("categories", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("send_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("run_id", sa.Integer, nullable=True),
        sa.Column("created_by", sa.String(120), nullable=False),
        sa.Column("variant", sa.String(20), nullable=False, server_default="letter"),
        sa.PrimaryKeyConstraint("id", name="pk_campaigns"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_campaigns_run_id_runs", ondelete="SET NULL"),
        sa.CheckConstraint("status IN ('draft', 'scheduled', 'sending', 'sent')", name="ck_campaigns_status"),
    )
    op.create_table(
        "admin_sessions",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(120), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("token_hash", name="pk_admin_sessions"),
    )
    op.create_index("ix_admin_sessions_expires_at", "admin_sessions", ["expires_at"])
    op.execute("UPDATE subscribers SET source = 'signup' WHERE source = 'web'")


def downgrade() -> None:
    op.drop_index("ix_admin_sessions_expires_at", "admin_sessions")
    op.drop_table("admin_sessions")
    op.execute("UPDATE subscribers SET source = 'web' WHERE source = 'signup'")
    op.drop_table("campaigns")
    op.drop_index("ix_audit_log_subject", "audit_log")
    op.drop_table("audit_log")
