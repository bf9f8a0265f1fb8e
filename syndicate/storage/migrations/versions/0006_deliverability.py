"""Bounce events, the subscriber changes they made, the suppression list, webhook nonces, the mailbox reader's place (#13).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bounce_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("fingerprint", sa.String(128), nullable=False),
        sa.Column("delivery_id", sa.Integer, sa.ForeignKey("deliveries.id", ondelete="SET NULL", name="fk_bounce_events_delivery_id_deliveries"), nullable=True),
        sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id", ondelete="SET NULL", name="fk_bounce_events_subscriber_id_subscribers"), nullable=True),
        sa.Column("recipient", sa.String(320), nullable=True),
        sa.Column("status_code", sa.String(32), nullable=True),
        sa.Column("diagnostic", sa.Text, nullable=False),
        sa.Column("method", sa.String(24), nullable=False),
        sa.Column("raw", sa.LargeBinary, nullable=False),
        sa.Column("truncated", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_bounce_events"),
        sa.UniqueConstraint("source", "fingerprint", name="uq_bounce_events_source_fingerprint"),
        sa.CheckConstraint("kind IN ('hard', 'soft', 'complaint', 'unsubscribe', 'ignored')", name="ck_bounce_events_kind"),
    )
    op.create_index("ix_bounce_events_received_at", "bounce_events", ["received_at"])
    op.create_index("ix_bounce_events_subscriber", "bounce_events", ["subscriber_id", "kind", "received_at"])
    op.create_table(
        "subscriber_changes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id", ondelete="CASCADE", name="fk_subscriber_changes_subscriber_id_subscribers"), nullable=False),
        sa.Column("event_id", sa.Integer, sa.ForeignKey("bounce_events.id", ondelete="SET NULL", name="fk_subscriber_changes_event_id_bounce_events"), nullable=True),
        sa.Column("from_status", sa.String(16), nullable=False),
        sa.Column("to_status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reverted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_subscriber_changes"),
    )
    op.create_index("ix_subscriber_changes_subscriber", "subscriber_changes", ["subscriber_id", "id"])
    op.create_table(
        "suppressions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("value", sa.String(320), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("event_id", sa.Integer, sa.ForeignKey("bounce_events.id", ondelete="SET NULL", name="fk_suppressions_event_id_bounce_events"), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_suppressions"),
        sa.UniqueConstraint("kind", "value", name="uq_suppressions_kind_value"),
        sa.CheckConstraint("kind IN ('address', 'domain')", name="ck_suppressions_kind"),
    )
    op.create_table(
        "webhook_nonces",
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("nonce", sa.String(128), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source", "nonce", name="pk_webhook_nonces"),
    )
    op.create_index("ix_webhook_nonces_seen_at", "webhook_nonces", ["seen_at"])
    op.create_table(
        "mailbox_state",
        sa.Column("mailbox", sa.String(400), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger, nullable=False),
        sa.Column("last_uid", sa.BigInteger, nullable=False),
        sa.Column("polled_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("mailbox", name="pk_mailbox_state"),
    )


def downgrade() -> None:
    op.drop_table("mailbox_state")
    op.drop_table("webhook_nonces")
    op.drop_table("suppressions")
    op.drop_table("subscriber_changes")
    op.drop_index("ix_bounce_events_subscriber", table_name="bounce_events")
    op.drop_index("ix_bounce_events_received_at", table_name="bounce_events")
    op.drop_table("bounce_events")
