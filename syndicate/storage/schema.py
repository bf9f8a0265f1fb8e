"""The database tables, as SQLAlchemy Core: the one description migrations are checked against."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

# Stable constraint names, so later migrations (and SQLite batch mode) can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes in Python; naive UTC in SQLite, timestamptz in PostgreSQL.

    A naive datetime is refused on the way in, so local times never reach the database.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} given to the database (expected timezone-aware)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def bind_processor(self, dialect: Dialect) -> Any:
        """process_bind_param then the dialect's own conversion, in one call per value (planning a
        run binds four per delivery). SQLite's text form is made by isoformat when it is the same."""
        inner = self.impl_instance.bind_processor(dialect)
        sqlite = dialect.name == "sqlite"
        sample = datetime(2001, 2, 3, 4, 5, 6, 7)
        isoformat = sqlite and inner is not None and inner(sample) == sample.isoformat(" ", "microseconds")

        def process(value: datetime | None) -> Any:
            if value is None:
                return None
            if value.tzinfo is None:
                raise ValueError(f"naive datetime {value.isoformat()} given to the database (expected timezone-aware)")
            value = value.astimezone(UTC)
            if not sqlite:
                return inner(value) if inner is not None else value
            value = value.replace(tzinfo=None)
            if isoformat:
                return value.isoformat(" ", "microseconds")
            return inner(value) if inner is not None else value

        return process

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


subscribers = Table(
    "subscribers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("email", String(320), nullable=False),
    # The normalised address in lower case: what makes an address unique regardless of case.
    Column("email_key", String(320), nullable=False, unique=True),
    Column("name", String(200), nullable=True),
    Column("status", String(16), nullable=False),
    Column("frequency", String(8), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("send_hour", SmallInteger, nullable=False),
    Column("weekday", SmallInteger, nullable=False),
    Column("high_water", UtcDateTime, nullable=True),
    Column("next_send_at", UtcDateTime, nullable=True),
    Column("source", String(16), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("status_changed_at", UtcDateTime, nullable=False),
    Column("confirmed_at", UtcDateTime, nullable=True),
    Column("unsubscribed_at", UtcDateTime, nullable=True),
    CheckConstraint("status IN ('pending', 'active', 'unsubscribed', 'bounced')", name="status"),
    CheckConstraint("frequency IN ('daily', 'weekly')", name="frequency"),
    CheckConstraint("send_hour BETWEEN 0 AND 23", name="send_hour"),
    CheckConstraint("weekday BETWEEN 0 AND 6", name="weekday"),
    Index("ix_subscribers_due", "status", "frequency", "next_send_at", "id"),
)

subscriber_categories = Table(
    "subscriber_categories",
    metadata,
    Column("subscriber_id", Integer, ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True),
    Column("slug", String(100), primary_key=True),
    Index("ix_subscriber_categories_slug", "slug"),
)

# -- the outbox (migration 0002) ----------------------------------------------------------

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime, nullable=True),
    Column("request", Text, nullable=False),
    Column("total", Integer, nullable=False, default=0),
    Column("queued", Integer, nullable=False, default=0),
    Column("sending", Integer, nullable=False, default=0),
    Column("sent", Integer, nullable=False, default=0),
    Column("retrying", Integer, nullable=False, default=0),
    Column("failed", Integer, nullable=False, default=0),
    Column("skipped", Integer, nullable=False, default=0),
    CheckConstraint("kind IN ('scheduled', 'manual', 'retry')", name="kind"),
    CheckConstraint("status IN ('running', 'finished')", name="status"),
    Index("ix_runs_started_at", "started_at"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("subscriber_id", Integer, ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False),
    Column("since", UtcDateTime, nullable=False),
    # The high-water mark the digest starts from ("first" before a first digest): with `until`, what
    # makes a digest unique per subscriber.
    Column("since_key", String(40), nullable=False),
    Column("until", UtcDateTime, nullable=False),
    Column("articles", Text, nullable=False),  # JSON: [[category slug, [article ids], hidden], ...]
    Column("message_id", String(255), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UtcDateTime, nullable=True),
    Column("last_code", Integer, nullable=True),
    Column("last_reply", Text, nullable=True),
    Column("claimed_by", String(120), nullable=True),
    # = subscriber_id while queued, sending or retry; NULL once finished: at most one open delivery each.
    Column("open_subscriber_id", Integer, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("sent_at", UtcDateTime, nullable=True),
    UniqueConstraint("subscriber_id", "since_key", "until", name="uq_deliveries_digest"),
    UniqueConstraint("open_subscriber_id", name="uq_deliveries_open_subscriber_id"),
    CheckConstraint("status IN ('queued', 'sending', 'sent', 'retry', 'failed', 'skipped')", name="status"),
    Index("ix_deliveries_run_status", "run_id", "status"),
    Index("ix_deliveries_status_next", "status", "next_attempt_at"),
    Index("ix_deliveries_subscriber", "subscriber_id", "id"),
)


# One row per confirmation email sent, so sign-ups can be rate-limited per address (syndicate.subscribers._confirm).
confirmation_sends = Table(
    "confirmation_sends",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("email_key", String(320), nullable=False),
    Column("sent_at", UtcDateTime, nullable=False),
    Index("ix_confirmation_sends_email_key_sent_at", "email_key", "sent_at"),
)


# One row per lease name: which process runs the scheduler for this database, until when.
scheduler_lease = Table(
    "scheduler_lease",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("acquired_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
)


# --- issue 12: signup abuse limits (syndicate.abuse)
# One row per signup the public form asked for, accepted or refused (then `refused` says why): the
# limits count the accepted ones of the last hour; `syndicate status` counts the refused ones.
signup_attempts = Table(
    "signup_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False),
    Column("client", String(64), nullable=False),
    Column("mailbox", String(320), nullable=False),
    Column("domain", String(255), nullable=False),
    Column("refused", String(32), nullable=True),
    Index("ix_signup_attempts_at", "at"),
    Index("ix_signup_attempts_client_at", "client", "at"),
    Index("ix_signup_attempts_mailbox_at", "mailbox", "at"),
    Index("ix_signup_attempts_domain_at", "domain", "at"),
)

# Form tokens already used: a served form can be posted once.
spent_forms = Table(
    "spent_forms",
    metadata,
    Column("form_id", String(64), primary_key=True),
    Column("expires_at", UtcDateTime, nullable=False),
    Index("ix_spent_forms_expires_at", "expires_at"),
)
# --- end issue 12
# -- deliverability (#13, migration 0006): bounce events, status changes they caused, the suppression list --

# One row per inbound bounce, complaint, unsubscribe request or ignored auto-reply, with the raw message.
bounce_events = Table(
    "bounce_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("received_at", UtcDateTime, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("source", String(16), nullable=False),  # imap, pipe, webhook name
    # What makes a repeat of the same event (the raw bytes' SHA-256, or the provider's event id) known as one.
    Column("fingerprint", String(128), nullable=False),
    Column("delivery_id", Integer, ForeignKey("deliveries.id", ondelete="SET NULL"), nullable=True),
    Column("subscriber_id", Integer, ForeignKey("subscribers.id", ondelete="SET NULL"), nullable=True),
    Column("recipient", String(320), nullable=True),
    Column("status_code", String(32), nullable=True),
    Column("diagnostic", Text, nullable=False, default=""),
    Column("method", String(24), nullable=False),
    Column("raw", LargeBinary, nullable=False),
    Column("truncated", Integer, nullable=False, default=0),  # bytes beyond [bounces] max_message_bytes not kept
    UniqueConstraint("source", "fingerprint", name="uq_bounce_events_source_fingerprint"),
    CheckConstraint("kind IN ('hard', 'soft', 'complaint', 'unsubscribe', 'ignored')", name="kind"),
    Index("ix_bounce_events_received_at", "received_at"),
    Index("ix_bounce_events_subscriber", "subscriber_id", "kind", "received_at"),
)

# Every subscriber status change a bounce event made, so an operator can see and revert it.
subscriber_changes = Table(
    "subscriber_changes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("subscriber_id", Integer, ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False),
    Column("event_id", Integer, ForeignKey("bounce_events.id", ondelete="SET NULL"), nullable=True),
    Column("from_status", String(16), nullable=False),
    Column("to_status", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("changed_at", UtcDateTime, nullable=False),
    Column("reverted_at", UtcDateTime, nullable=True),
    Index("ix_subscriber_changes_subscriber", "subscriber_id", "id"),
)

# Addresses and whole domains that never get mail (value: a lower-case address or domain).
suppressions = Table(
    "suppressions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(8), nullable=False),
    Column("value", String(320), nullable=False),
    Column("reason", Text, nullable=False),
    Column("source", String(16), nullable=False),  # operator, import, bounce, complaint, api
    Column("event_id", Integer, ForeignKey("bounce_events.id", ondelete="SET NULL"), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("kind", "value", name="uq_suppressions_kind_value"),
    CheckConstraint("kind IN ('address', 'domain')", name="kind"),
)

# Signatures (or tokens) of webhook requests already taken within the timestamp window: a replay is refused.
webhook_nonces = Table(
    "webhook_nonces",
    metadata,
    Column("source", String(16), primary_key=True),
    Column("nonce", String(128), primary_key=True),
    Column("seen_at", UtcDateTime, nullable=False),
    Index("ix_webhook_nonces_seen_at", "seen_at"),
)

# How far the bounce mailbox reader got in each folder (the highest UID it read, under the folder's UIDVALIDITY).
mailbox_state = Table(
    "mailbox_state",
    metadata,
    Column("mailbox", String(400), primary_key=True),
    Column("uidvalidity", BigInteger, nullable=False),  # 32-bit unsigned in IMAP
    Column("last_uid", BigInteger, nullable=False),
    Column("polled_at", UtcDateTime, nullable=False),
)


# ---------------------------------------------------------------- delivery workers (issue 14)

# One row per running `syndicate worker` process: its claims (deliveries.claimed_by = id) are alive
# while heartbeat_at (the database's clock) is recent; see syndicate.delivery._liveness.
delivery_workers = Table(
    "delivery_workers",
    metadata,
    Column("id", String(120), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("concurrency", Integer, nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("heartbeat_at", UtcDateTime, nullable=False),
)

# One row per shared rate ("rate" for [smtp] rate, "domain:<name>" for [smtp] domain_rate): the
# time of the next free sending slot (syndicate.delivery._limits).
send_limits = Table(
    "send_limits",
    metadata,
    Column("name", String(300), primary_key=True),
    Column("next_at", UtcDateTime, nullable=False),
)

# [smtp] connections for the whole deployment: a worker opens one connection per slot it leases.
smtp_connection_slots = Table(
    "smtp_connection_slots",
    metadata,
    Column("slot", Integer, primary_key=True, autoincrement=False),
    Column("worker", String(120), nullable=True),
    Column("expires_at", UtcDateTime, nullable=True),
)

# Claims of queued deliveries from any run, oldest first (syndicate.delivery._liveness).
Index("ix_deliveries_status_id", deliveries.c.status, deliveries.c.id)
# ---------------------------------------------------------------- sources (issue 15)

# One row per configured external feed: how its last fetch went and when the next one is due.
source_feeds = Table(
    "source_feeds",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("url", Text, nullable=False),
    Column("etag", Text, nullable=True),
    Column("last_modified", Text, nullable=True),
    Column("feed_title", Text, nullable=True),
    Column("feed_link", Text, nullable=True),
    Column("last_fetch_at", UtcDateTime, nullable=True),
    Column("last_success_at", UtcDateTime, nullable=True),
    Column("last_status", String(32), nullable=True),  # ok | not-modified | error
    Column("last_http_status", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("failures", Integer, nullable=False, default=0),
    Column("next_fetch_at", UtcDateTime, nullable=True),
)

# One row per item of an external feed, identified by its guid (or link) when first seen.
source_items = Table(
    "source_items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(64), nullable=False),
    Column("item_key", String(64), nullable=False),  # sha256 of the guid (or link) first seen
    Column("guid", Text, nullable=True),
    Column("link", Text, nullable=True),
    Column("title", Text, nullable=False),
    Column("author", Text, nullable=True),
    Column("published", UtcDateTime, nullable=False),
    Column("updated", UtcDateTime, nullable=False),
    Column("first_seen", UtcDateTime, nullable=False),
    Column("last_seen", UtcDateTime, nullable=False),
    Column("body_html", Text, nullable=False),
    Column("summary_html", Text, nullable=False),
    Column("content_hash", String(64), nullable=False),
    UniqueConstraint("source", "item_key", name="uq_source_items_source_item_key"),
    Index("ix_source_items_source_published", "source", "published"),
)


# ---------------------------------------------------------------- archive (issue 16)
# What the digests contained, per archive period, for the public archive pages: no subscriber, no
# address; kept when deliveries are pruned or a subscriber is erased. Filled by syndicate.archive
# from the sent deliveries.
archive_items = Table(
    "archive_items",
    metadata,
    Column("frequency", String(8), primary_key=True),
    Column("period", String(10), primary_key=True),  # 2026-12-05 (daily) or 2026-W49 (weekly), in the site's zone
    Column("category", String(100), primary_key=True),
    Column("article_id", String(255), primary_key=True),
    Column("title", Text, nullable=False),
    Column("url", Text, nullable=False),
    Column("first_sent_at", UtcDateTime, nullable=False),
)
archive_state = Table(
    "archive_state",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("collected_until", UtcDateTime, nullable=False),  # deliveries sent before this were collected
)
# Digests already counted out of each subscriber's series when their deliveries were pruned, so that
# the issue number in the masthead (this + the sent deliveries still kept, + 1) never goes back.
subscriber_issues = Table(
    "subscriber_issues",
    metadata,
    Column("subscriber_id", Integer, ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True),
    Column("pruned_sent", Integer, nullable=False),
)


# -- operators (issue 17, migration 0009) --------------------------------------------------

# One row per operator action (requeue, edit, unsubscribe, erase, campaign send...): who, what, when.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False),
    Column("actor", String(120), nullable=False),
    Column("action", String(40), nullable=False),
    Column("subject_kind", String(20), nullable=False),
    Column("subject_id", Integer, nullable=True),
    Column("detail", Text, nullable=False, default=""),
    Index("ix_audit_log_subject", "subject_kind", "subject_id", "id"),
)

# A one-off message (Markdown) to the active subscribers of some categories, sent through the outbox:
# its deliveries have since_key "campaign:<id>", so each subscriber gets it at most once.
campaigns = Table(
    "campaigns",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("subject", String(200), nullable=False),
    Column("body", Text, nullable=False),
    Column("categories", Text, nullable=False),  # JSON list of slugs; [] = every subscriber
    Column("status", String(16), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("send_at", UtcDateTime, nullable=True),
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="SET NULL"), nullable=True),
    Column("created_by", String(120), nullable=False),
    # How the body is framed: "letter" (a greeting, then the body) or "announcement" (the subject as a heading).
    Column("variant", String(20), nullable=False, server_default="letter"),
    CheckConstraint("status IN ('draft', 'scheduled', 'sending', 'sent')", name="status"),
)

# A console sign-in: the SHA-256 of its cookie's random token (the token itself is never stored),
# who signed in, and until when. Signing out deletes the row.
admin_sessions = Table(
    "admin_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("actor", String(120), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Index("ix_admin_sessions_expires_at", "expires_at"),
)
