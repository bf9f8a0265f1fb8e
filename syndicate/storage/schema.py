"""The database tables, as SQLAlchemy Core: the one description migrations are checked against."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
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
