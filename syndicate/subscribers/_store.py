"""Subscribers: validation, the status lifecycle, preferences, schedules and the store that keeps them."""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Integer, Row, Select, bindparam, delete, func, insert, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import ARRAY

from syndicate.errors import SyndicateError, UsageError
from syndicate.storage import Database
from syndicate.storage.schema import (
    UtcDateTime,
    confirmation_sends,
    subscriber_categories,
    subscriber_changes,
    subscriber_issues,
    subscribers,
)
from syndicate.subscribers._address import Address, AddressRules, InvalidAddressError, parse_address
from syndicate.subscribers._model import WEEKDAYS, Frequency, Subscriber, SubscriberStatus
from syndicate.subscribers._zones import NotAPlaceError, geographic_zone

log = logging.getLogger(__name__)

MAX_NAME = 200
# How a subscriber came: the CLI, the admin API (or console), the public sign-up form, a CSV import.
# "web" is what sign-ups were recorded as before migration 0009 renamed it "signup".
SOURCES = ("cli", "api", "signup", "import", "web")
_IN_CHUNK = 10_000
CONFIRMATION_WINDOW = timedelta(hours=1)  # the rate limit of confirmation emails counts this far back
# Bidirectional overrides and isolates: legal text, but used to disguise names in inbox listings.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


class InvalidSubscriberError(UsageError):
    """A subscriber field is invalid; `field` names it."""

    def __init__(self, field_name: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"{field_name}: {message}", hint=hint)
        self.field = field_name
        self.reason = message


class UnknownSubscriberError(SyndicateError):
    """No subscriber has that id or address."""


class SubscriberExistsError(SyndicateError):
    """The address is already in the database."""


class TransitionError(SyndicateError):
    """A status change the lifecycle does not allow (e.g. confirming an unsubscribed address)."""


# ---------------------------------------------------------------- validation

def clean_name(raw: str | None) -> str | None:
    """The name stripped of surrounding spaces (None if empty); control characters refused."""
    if raw is None:
        return None
    name = raw.strip()
    if not name:
        return None
    for ch in name:
        category = unicodedata.category(ch)
        if category in ("Cc", "Zl", "Zp") or ch in _BIDI_CONTROLS:
            raise InvalidSubscriberError("name", f"contains a line break or control character (U+{ord(ch):04X})")
        if category == "Cs":  # a byte that was not UTF-8 (a command-line argument) or a JSON escape
            raise InvalidSubscriberError("name", "is not valid text (a lone surrogate: was it UTF-8?)")
    if len(name) > MAX_NAME:
        raise InvalidSubscriberError("name", f"longer than {MAX_NAME} characters")
    return unicodedata.normalize("NFC", name)


def check_timezone(value: str) -> str:
    """A geographic time zone, as its canonical name (Factory, localtime, Etc/GMT+5 and the like refused)."""
    try:
        return geographic_zone(value)
    except NotAPlaceError as e:
        raise InvalidSubscriberError("timezone", str(e)) from None


def check_categories(slugs: Iterable[str], valid: Collection[str]) -> tuple[str, ...]:
    """The slugs sorted, without duplicates (as the store returns them); an unknown slug is refused
    with the valid ones listed."""
    result = tuple(sorted({s.strip() for s in slugs if s.strip()}))
    unknown = [s for s in result if s not in valid]
    if unknown:
        raise InvalidSubscriberError(
            "categories", f"unknown {'category' if len(unknown) == 1 else 'categories'} {', '.join(unknown)} "
            f"(valid: {', '.join(sorted(valid)) or 'none'})",
        )
    return result


def split_categories(text: str) -> list[str]:
    """`a,b`, `a;b` or `a b` as a list of slugs."""
    return [part for part in text.replace(";", ",").replace(" ", ",").split(",") if part]


def check_frequency(value: str | Frequency) -> Frequency:
    try:
        return Frequency(str(value).strip().lower())
    except ValueError:
        raise InvalidSubscriberError("frequency", f"expected daily or weekly, got {value!r}") from None


def check_send_hour(value: int | str) -> int:
    try:
        hour = int(str(value).strip())
    except ValueError:
        raise InvalidSubscriberError("send_hour", f"expected a whole hour 0 to 23, got {value!r}") from None
    if not 0 <= hour <= 23:
        raise InvalidSubscriberError("send_hour", f"expected a whole hour 0 to 23, got {hour}")
    return hour


def check_weekday(value: int | str) -> int:
    """0 (Monday) to 6, or a day name."""
    text = str(value).strip().lower()
    if text in WEEKDAYS:
        return WEEKDAYS.index(text)
    if text.isdigit() and 0 <= int(text) <= 6:
        return int(text)
    raise InvalidSubscriberError("weekday", f"expected a day name or 0 (Monday) to 6, got {value!r}")


@dataclass(frozen=True)
class SubscriberDefaults:
    """Preferences a new subscriber gets when they do not say (from the [digest] config)."""

    frequency: Frequency = Frequency.DAILY
    timezone: str = "UTC"
    send_hour: int = 8
    weekday: int = 0



@dataclass(frozen=True)
class NewSubscriber:
    """A validated subscriber not yet stored."""

    address: Address
    name: str | None
    categories: tuple[str, ...]
    frequency: Frequency
    timezone: str
    send_hour: int
    weekday: int

    @property
    def email(self) -> str:
        return self.address.text

    @property
    def email_key(self) -> str:
        return self.address.key


ANY_BACKEND = AddressRules()  # for a backend that carries every address (file, console, memory)


def new_subscriber(
    email: str,
    *,
    categories: Iterable[str],
    valid_categories: Collection[str],
    defaults: SubscriberDefaults,
    addresses: AddressRules = ANY_BACKEND,
    name: str | None = None,
    frequency: str | None = None,
    timezone: str | None = None,
    send_hour: int | str | None = None,
    weekday: int | str | None = None,
) -> NewSubscriber:
    """Validate every field (None or '' means the default); InvalidSubscriberError names the first bad one.
    `addresses` checks the address (whether the mail backend can carry it, among others)."""
    try:
        address = addresses.parse(email)
    except InvalidAddressError as e:
        raise InvalidSubscriberError(e.field, e.reason, hint=e.hint) from None
    return NewSubscriber(
        address=address,
        name=clean_name(name),
        categories=check_categories(categories, valid_categories),
        frequency=check_frequency(frequency) if frequency not in (None, "") else defaults.frequency,
        timezone=check_timezone(timezone) if timezone not in (None, "") else defaults.timezone,
        send_hour=check_send_hour(send_hour) if send_hour not in (None, "") else defaults.send_hour,
        weekday=check_weekday(weekday) if weekday not in (None, "") else defaults.weekday,
    )


# ---------------------------------------------------------------- schedule

def _local_occurrence(day: date, hour: int, zone: ZoneInfo) -> datetime:
    """`hour`:00 on `day` in `zone`, as UTC. A wall time skipped by DST lands after the gap
    (fold=0 uses the offset before the change); a repeated one is its first occurrence."""
    return datetime.combine(day, time(hour), tzinfo=zone).astimezone(UTC)


def next_send_time(timezone: str, send_hour: int, frequency: Frequency | str, weekday: int, after: datetime) -> datetime:
    """The first local `send_hour` (on `weekday` for weekly digests) strictly after `after`, in UTC."""
    if after.tzinfo is None:
        raise ValueError("next_send_time needs a timezone-aware `after`")
    zone = ZoneInfo(timezone)
    weekly = Frequency(frequency) is Frequency.WEEKLY
    start = after.astimezone(zone).date()
    for offset in range(9):
        day = start + timedelta(days=offset)
        if weekly and day.weekday() != weekday:
            continue
        candidate = _local_occurrence(day, send_hour, zone)
        if candidate > after:
            return candidate
    raise AssertionError("unreachable: a send time exists within 8 days")  # pragma: no cover


# ---------------------------------------------------------------- store

@dataclass(frozen=True)
class ImportReport:
    """What an import did: rows added, rows already present (left unchanged), and rows refused."""

    added: int = 0
    unchanged: int = 0
    opted_out: int = 0
    problems: tuple[str, ...] = ()

    def merged(self, other: ImportReport) -> ImportReport:
        return ImportReport(
            self.added + other.added, self.unchanged + other.unchanged,
            self.opted_out + other.opted_out, self.problems + other.problems,
        )


@dataclass(frozen=True)
class RestoredSubscriber:
    """A subscriber read back from a backup (an export), with the state and proof it had there."""

    new: NewSubscriber
    status: SubscriberStatus
    source: str
    created_at: datetime
    status_changed_at: datetime
    confirmed_at: datetime | None
    unsubscribed_at: datetime | None
    high_water: datetime | None = None


@dataclass(frozen=True)
class Filter:
    """Which subscribers `iter_subscribers` lists."""

    status: SubscriberStatus | None = None
    category: str | None = None
    frequency: Frequency | None = None


# Read-only lookup tables: a stored value to its enum member without Enum.__call__ (a hot path
# when planning a run); an unknown value still goes through the enum, which names it.
_STATUSES = MappingProxyType({s.value: s for s in SubscriberStatus})
_FREQUENCIES = MappingProxyType({f.value: f for f in Frequency})
# The columns a Subscriber is made of; the others are bookkeeping only StoredSubscriber shows.
_SUBSCRIBER_COLUMNS = tuple(
    subscribers.c[name]
    for name in ("id", "email", "name", "status", "frequency", "timezone", "send_hour", "weekday", "high_water",
                 "source", "created_at", "status_changed_at")
)


# Every column, those of a Subscriber first: what the store selects, so that _to_subscriber unpacks
# a row by position (reading 12 attributes by name costs as much as the rest of making one).
# Built once: the sending loop records a batch of sent digests several times a second.
_MOVE_HIGH_WATER = (
    update(subscribers)
    .where(subscribers.c.id == bindparam("sid"),
           or_(subscribers.c.high_water.is_(None), subscribers.c.high_water < bindparam("until")))
    .values(high_water=bindparam("until"))
)
# On PostgreSQL, a batch's marks in one statement, as arrays (see Outbox's _SENT_ALL).
_MARKS = func.unnest(bindparam("sids", type_=ARRAY(Integer)), bindparam("untils", type_=ARRAY(UtcDateTime))
                     ).table_valued("sid", "until").render_derived(name="m")
_MOVE_HIGH_WATER_ALL = (
    update(subscribers)
    .where(subscribers.c.id == _MARKS.c.sid, or_(subscribers.c.high_water.is_(None), subscribers.c.high_water < _MARKS.c.until))
    .values(high_water=_MARKS.c.until)
)
_ROW_COLUMNS = (*_SUBSCRIBER_COLUMNS, *(c for c in subscribers.c if c.name not in {s.name for s in _SUBSCRIBER_COLUMNS}))


def _to_subscriber(row: Row[Any], categories: Sequence[str]) -> Subscriber:
    """`row` selected with _SUBSCRIBER_COLUMNS first (or _ROW_COLUMNS)."""
    (id_, email, name, status, frequency, timezone, send_hour, weekday, high_water, source, created_at,
     status_changed_at) = tuple(row)[:len(_SUBSCRIBER_COLUMNS)]
    return Subscriber(
        id=id_,
        email=email,
        name=name,
        status=_STATUSES.get(status) or SubscriberStatus(status),
        categories=tuple(categories),
        frequency=_FREQUENCIES.get(frequency) or Frequency(frequency),
        timezone=timezone,
        send_hour=send_hour,
        weekday=weekday,
        high_water=high_water,
        source=source,
        created_at=created_at,
        status_changed_at=status_changed_at,
    )


def _preferences(s: Subscriber | NewSubscriber) -> tuple[Any, ...]:
    """What set_preferences may change."""
    return (s.name, tuple(s.categories), s.frequency, s.timezone, s.send_hour, s.weekday)


@dataclass(frozen=True)
class StoredSubscriber:
    """A Subscriber with the bookkeeping only the store and the CLI show."""

    subscriber: Subscriber
    next_send_at: datetime | None
    confirmed_at: datetime | None
    unsubscribed_at: datetime | None
    updated_at: datetime


def _filtered(query: Select[Any], where: Filter, after: int, dialect: str) -> Select[Any]:
    """`query` limited to the subscribers matching `where` with an id above `after`.

    On SQLite, status and frequency are compared as `column || ''`: otherwise its planner (without
    statistics) searches ix_subscribers_due by status and sorts every remaining match to take the
    next page by id, a pass over the whole table per page; this way it walks the primary key."""
    c = subscribers.c
    status, frequency = (c.status + "", c.frequency + "") if dialect == "sqlite" else (c.status, c.frequency)
    query = query.where(c.id > after)
    if where.status is not None:
        query = query.where(status == where.status.value)
    if where.frequency is not None:
        query = query.where(frequency == where.frequency.value)
    if where.category is not None:
        query = query.where(subscribers.c.id.in_(
            select(subscriber_categories.c.subscriber_id).where(subscriber_categories.c.slug == where.category)
        ))
    return query


@dataclass(frozen=True)
class StatusChange:
    """A status change made by a bounce event (#13), kept so an operator can see and revert it."""

    id: int
    subscriber_id: int
    event_id: int | None
    from_status: str
    to_status: str
    reason: str
    changed_at: datetime
    reverted_at: datetime | None


class SubscriberWrites:
    """The store's writes inside a transaction another stage holds open (SQLAlchemy's "pass the
    Connection in"): the outbox records a sent digest and moves its subscriber's high-water mark,
    or a failure and the bounce it causes, in one commit. Got from SubscriberStore.within()."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def move_high_water(self, marks: Sequence[tuple[int, datetime]]) -> None:
        """Move each (subscriber id, time) high-water mark forward to that time; an older time is ignored."""
        if not marks:
            return
        if self.connection.dialect.name == "postgresql":
            latest: dict[int, datetime] = {}
            for sid, until in marks:  # one row each: an UPDATE joined to two rows of one subscriber takes either
                if sid not in latest or until > latest[sid]:
                    latest[sid] = until
            self.connection.execute(_MOVE_HIGH_WATER_ALL, {"sids": list(latest), "untils": list(latest.values())})
        else:
            self.connection.execute(_MOVE_HIGH_WATER, [{"sid": sid, "until": until} for sid, until in marks])

    def reschedule(self, moves: Sequence[tuple[int, datetime]]) -> None:
        """Set each (subscriber id, time) active subscriber's next send time; others are left alone."""
        if not moves:
            return
        c = subscribers.c
        self.connection.execute(
            update(subscribers)
            .where(c.id == bindparam("sid"), c.status == SubscriberStatus.ACTIVE.value)
            .values(next_send_at=bindparam("at")),
            [{"sid": sid, "at": at} for sid, at in moves],
        )

    def mark_bounced(self, subscriber_id: int, now: datetime) -> bool:
        """pending/active -> bounced (delivery failed permanently); an unsubscribe is kept as it is.
        True if the status changed."""
        c = subscribers.c
        changed = self.connection.execute(
            update(subscribers)
            .where(c.id == subscriber_id, c.status.in_((SubscriberStatus.ACTIVE.value, SubscriberStatus.PENDING.value)))
            .values(status=SubscriberStatus.BOUNCED.value, status_changed_at=now, updated_at=now, next_send_at=None)
        ).rowcount
        if changed:
            log.info("subscriber bounced id=%s", subscriber_id)
        return bool(changed)

    def count_out_issues(self, sent: Mapping[int, int]) -> None:
        """Add `sent` (subscriber id -> digests sent to them whose deliveries are being pruned) to each
        subscriber's pruned count, so that their issue numbers never go back."""
        if not sent:
            return
        c = subscriber_issues.c
        known = set(self.connection.execute(select(c.subscriber_id).where(c.subscriber_id.in_(list(sent)))).scalars())
        updates = [{"sid": s, "n": n} for s, n in sent.items() if s in known]
        if updates:
            self.connection.execute(update(subscriber_issues).where(c.subscriber_id == bindparam("sid"))
                                    .values(pruned_sent=c.pruned_sent + bindparam("n")), updates)
        inserts = [{"subscriber_id": s, "pruned_sent": n} for s, n in sent.items() if s not in known]
        if inserts:
            self.connection.execute(insert(subscriber_issues), inserts)

    def take_confirmation_slot(self, email_key: str, limit: int, now: datetime) -> bool:
        """Record one confirmation email to `email_key` unless `limit` went out within CONFIRMATION_WINDOW."""
        c = confirmation_sends.c
        # Serialise concurrent sign-ups of one address (PostgreSQL; SQLite's writes are serial already).
        self.connection.execute(select(subscribers.c.id).where(subscribers.c.email_key == email_key).with_for_update())
        self.connection.execute(delete(confirmation_sends).where(c.email_key == email_key, c.sent_at <= now - CONFIRMATION_WINDOW))
        recent = self.connection.execute(
            select(func.count()).select_from(confirmation_sends).where(c.email_key == email_key)
        ).scalar_one()
        if recent >= limit:
            return False
        self.connection.execute(insert(confirmation_sends).values(email_key=email_key, sent_at=now))
        return True


class SubscriberStore:
    """Every read and write of subscribers. Times are passed in (`now`), timezone-aware.

    Its own methods each run in a transaction of their own; within(connection) offers the writes
    other stages make inside theirs. Nothing else writes the subscriber tables."""

    def __init__(self, database: Database, defaults: SubscriberDefaults | None = None) -> None:
        self.database = database
        self.defaults = defaults or SubscriberDefaults()

    def within(self, connection: Connection) -> SubscriberWrites:
        """This store's writes inside `connection`'s open transaction (committed with the caller's work)."""
        return SubscriberWrites(connection)

    # -- reading

    def _load(self, connection: Connection, rows: Sequence[Row[Any]], ids: Select[Any] | None = None) -> list[Subscriber]:
        """Subscribers for `rows`, with their categories fetched in one query (`ids`: a query giving
        exactly the rows' ids, to select their categories by, instead of binding every id)."""
        if not rows:
            return []
        cats: dict[int, list[str]] = {row[0]: [] for row in rows}  # the id comes first (_to_subscriber)
        sc = subscriber_categories.c
        if ids is not None:
            wheres = [sc.subscriber_id.in_(ids)]
        else:
            keys = list(cats)  # PostgreSQL takes at most 65,535 parameters
            wheres = [sc.subscriber_id.in_(keys[start:start + _IN_CHUNK]) for start in range(0, len(keys), _IN_CHUNK)]
        for where in wheres:
            query = select(sc.subscriber_id, sc.slug).where(where).order_by(sc.subscriber_id, sc.slug)
            for subscriber_id, slug in connection.execute(query).all():
                cats[subscriber_id].append(slug)
        return [_to_subscriber(row, cats[row[0]]) for row in rows]

    def _one(self, connection: Connection, condition: Any, what: str) -> Row[Any]:
        row = connection.execute(select(*_ROW_COLUMNS).where(condition)).first()
        if row is None:
            raise UnknownSubscriberError(f"no subscriber {what}")
        return row

    def get(self, subscriber_id: int) -> Subscriber:
        with self.database.read() as connection:
            row = self._one(connection, subscribers.c.id == subscriber_id, f"with id {subscriber_id}")
            return self._load(connection, [row])[0]

    def get_by_email(self, email: str) -> Subscriber:
        try:
            key = parse_address(email).key
        except InvalidAddressError as e:
            raise InvalidSubscriberError(e.field, e.reason) from None
        with self.database.read() as connection:
            row = self._one(connection, subscribers.c.email_key == key, f"with address {email.strip()}")
            return self._load(connection, [row])[0]

    def find_by_email(self, email: str) -> Subscriber | None:
        try:
            return self.get_by_email(email)
        except UnknownSubscriberError:
            return None

    def details(self, subscriber_id: int) -> StoredSubscriber:
        with self.database.read() as connection:
            row = self._one(connection, subscribers.c.id == subscriber_id, f"with id {subscriber_id}")
            subscriber = self._load(connection, [row])[0]
        return StoredSubscriber(subscriber, row.next_send_at, row.confirmed_at, row.unsubscribed_at, row.updated_at)

    def count(self, status: SubscriberStatus | None = None) -> int:
        query = select(func.count()).select_from(subscribers)
        if status is not None:
            query = query.where(subscribers.c.status == status.value)
        with self.database.read() as connection:
            return connection.execute(query).scalar_one()

    def iter_subscribers(self, where: Filter = Filter(), *, batch: int = 1000) -> Iterator[StoredSubscriber]:
        """Every subscriber matching `where`, by id, fetched `batch` at a time (one short transaction each)."""
        for rows, loaded in self._pages(where, _ROW_COLUMNS, batch):
            for row, subscriber in zip(rows, loaded):
                yield StoredSubscriber(subscriber, row.next_send_at, row.confirmed_at, row.unsubscribed_at, row.updated_at)

    def search(self, text: str, where: Filter = Filter(), *, after: int = 0, limit: int = 50) -> tuple[list[StoredSubscriber], int | None]:
        """A page of subscribers matching `where` whose address or name contains `text` (any case),
        by id after `after` (keyset paging: a page costs the same however deep); returns the page and
        the `after` of the next one (None on the last)."""
        needle = text.strip().lower()
        c = subscribers.c
        query = _filtered(select(*_ROW_COLUMNS), where, after, self.database.dialect)
        if needle:
            pattern = "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            query = query.where((c.email_key.like(pattern, escape="\\")) | (func.lower(c.name).like(pattern, escape="\\")))
        with self.database.read() as connection:
            rows = connection.execute(query.order_by(c.id).limit(limit + 1)).all()
            loaded = self._load(connection, rows[:limit])
        page = [StoredSubscriber(s, row.next_send_at, row.confirmed_at, row.unsubscribed_at, row.updated_at)
                for row, s in zip(rows, loaded)]
        return page, (page[-1].subscriber.id if len(rows) > limit else None)

    def counts_by_category(self) -> dict[str, int]:
        """Active subscribers per followed category slug ("" for those following every category)."""
        c, sc = subscribers.c, subscriber_categories.c
        with self.database.read() as connection:
            per: dict[str, int] = dict(connection.execute(
                select(sc.slug, func.count()).join(subscribers, c.id == sc.subscriber_id)
                .where(c.status == SubscriberStatus.ACTIVE.value).group_by(sc.slug)
            ).all())
            every = connection.execute(
                select(func.count()).select_from(subscribers).where(
                    c.status == SubscriberStatus.ACTIVE.value,
                    ~c.id.in_(select(sc.subscriber_id)),
                )
            ).scalar_one()
        return {**{slug: int(n) for slug, n in sorted(per.items())}, "": int(every)}

    def count_following(self, categories: Collection[str]) -> int:
        """Active subscribers following any of `categories` (all active ones when empty; one who chose
        no category follows every one), counted in the database."""
        c, sc = subscribers.c, subscriber_categories.c
        query = select(func.count()).select_from(subscribers).where(c.status == SubscriberStatus.ACTIVE.value)
        if categories:
            query = query.where(c.id.in_(select(sc.subscriber_id).where(sc.slug.in_(sorted(categories))))
                                | ~c.id.in_(select(sc.subscriber_id)))
        with self.database.read() as connection:
            return int(connection.execute(query).scalar_one())

    def next_due(self, limit: int = 10) -> list[tuple[datetime, int, str]]:
        """The soonest scheduled digests: (next send time, id, email)."""
        c = subscribers.c
        with self.database.read() as connection:
            return [(r[0], r[1], r[2]) for r in connection.execute(
                select(c.next_send_at, c.id, c.email).where(c.status == SubscriberStatus.ACTIVE.value, c.next_send_at.is_not(None))
                .order_by(c.next_send_at, c.id).limit(limit)
            )]

    def iter_plain(self, where: Filter = Filter(), *, batch: int = 1000) -> Iterator[Subscriber]:
        """The same subscribers as iter_subscribers, without the bookkeeping (reads less: planning a run)."""
        for _, loaded in self._pages(where, _SUBSCRIBER_COLUMNS, batch):
            yield from loaded

    def _pages(self, where: Filter, columns: Sequence[Any], batch: int) -> Iterator[tuple[Sequence[Row[Any]], list[Subscriber]]]:
        """(rows, their subscribers) matching `where`, by id, `batch` at a time, one short transaction each."""
        last = 0
        while True:
            query = _filtered(select(*columns), where, last, self.database.dialect).order_by(subscribers.c.id).limit(batch)
            ids = _filtered(select(subscribers.c.id), where, last, self.database.dialect).order_by(subscribers.c.id).limit(batch)
            with self.database.read() as connection:
                rows = connection.execute(query).all()
                loaded = self._load(connection, rows, ids)
            yield rows, loaded
            if len(rows) < batch:
                return
            last = rows[-1].id

    def iter_due(self, now: datetime, *, frequency: Frequency | None = None, batch: int = 1000) -> Iterator[Subscriber]:
        """Active subscribers whose next send time is at or before `now`, oldest due first.

        Keyset-paginated on (next_send_at, id), one short transaction per batch, so memory stays flat
        and a consumer may `advance_schedule` while iterating.
        """
        c = subscribers.c
        last: tuple[datetime, int] | None = None
        while True:
            query = (
                select(*_ROW_COLUMNS)
                .where(c.status == SubscriberStatus.ACTIVE.value, c.next_send_at <= now)
                .order_by(c.next_send_at, c.id)
                .limit(batch)
            )
            if frequency is not None:
                query = query.where(c.frequency == Frequency(frequency).value)
            if last is not None:
                query = query.where(tuple_(c.next_send_at, c.id) > tuple_(*last))
            with self.database.read() as connection:
                rows = connection.execute(query).all()
                loaded = self._load(connection, rows)
            yield from loaded
            if len(rows) < batch:
                return
            last = (rows[-1].next_send_at, rows[-1].id)

    # -- creating

    def add(self, new: NewSubscriber, *, now: datetime, confirmed: bool = False, source: str = "cli") -> Subscriber:
        """Store a new subscriber, pending (or active when `confirmed`); SubscriberExistsError if the address is known."""
        with self.database.write() as connection:
            existing = connection.execute(
                select(subscribers.c.status, subscribers.c.status_changed_at).where(subscribers.c.email_key == new.email_key)
            ).first()
            if existing is not None:
                raise SubscriberExistsError(
                    f"{new.email} is already in the database ({existing.status} since {existing.status_changed_at:%Y-%m-%d %H:%M} UTC)",
                    hint="use `syndicate subscribers set` to change preferences"
                    if existing.status in ("pending", "active") else "only the subscriber can opt in again, by signing up",
                )
            subscriber_id = self._insert(connection, [new], now=now, confirmed=confirmed, source=source)[0]
        log.info("subscriber added id=%s status=%s source=%s", subscriber_id, "active" if confirmed else "pending", source)
        return self.get(subscriber_id)

    def _insert(self, connection: Connection, news: Sequence[NewSubscriber], *, now: datetime, confirmed: bool, source: str) -> list[int]:
        if source not in SOURCES:
            raise ValueError(f"unknown subscription source {source!r}")
        status = SubscriberStatus.ACTIVE if confirmed else SubscriberStatus.PENDING
        values = [
            {
                "email": n.email, "email_key": n.email_key, "name": n.name, "status": status.value,
                "frequency": n.frequency.value, "timezone": n.timezone, "send_hour": n.send_hour, "weekday": n.weekday,
                "high_water": None,
                "next_send_at": next_send_time(n.timezone, n.send_hour, n.frequency, n.weekday, now) if confirmed else None,
                "source": source, "created_at": now, "updated_at": now, "status_changed_at": now,
                "confirmed_at": now if confirmed else None, "unsubscribed_at": None,
            }
            for n in news
        ]
        connection.execute(insert(subscribers), values)
        # Ids by address afterwards: RETURNING in parameter order falls back to a row at a time on SQLite.
        keys = [n.email_key for n in news]
        by_key = dict(connection.execute(
            select(subscribers.c.email_key, subscribers.c.id).where(subscribers.c.email_key.in_(keys))
        ).all())
        ids = [by_key[key] for key in keys]
        links = [{"subscriber_id": i, "slug": slug} for i, n in zip(ids, news) for slug in n.categories]
        if links:
            connection.execute(insert(subscriber_categories), links)
        return ids

    def import_batch(self, news: Sequence[NewSubscriber], *, now: datetime, confirmed: bool, dry_run: bool = False) -> ImportReport:
        """Add the addresses not yet known; known ones (above all unsubscribed ones) are left as they are."""
        keys = [n.email_key for n in news]
        with self.database.write() as connection:
            known = dict(connection.execute(
                select(subscribers.c.email_key, subscribers.c.status).where(subscribers.c.email_key.in_(keys))
            ).all())
            fresh = [n for n in news if n.email_key not in known]
            if fresh and not dry_run:
                self._insert(connection, fresh, now=now, confirmed=confirmed, source="import")
        opted_out = sum(1 for s in known.values() if s in ("unsubscribed", "bounced"))
        return ImportReport(added=len(fresh), unchanged=len(known) - opted_out, opted_out=opted_out)

    def restore_batch(self, restored: Sequence[RestoredSubscriber], *, now: datetime, dry_run: bool = False) -> ImportReport:
        """Insert backed-up subscribers as they were (status, source, times, high-water mark); an address
        already present is left as it is. An active one is scheduled from `now`."""
        keys = [r.new.email_key for r in restored]
        with self.database.write() as connection:
            known = set(connection.execute(
                select(subscribers.c.email_key).where(subscribers.c.email_key.in_(keys))
            ).scalars())
            fresh = [r for r in restored if r.new.email_key not in known]
            if fresh and not dry_run:
                self._insert_restored(connection, fresh, now)
        if fresh and not dry_run:
            log.info("subscribers restored count=%s", len(fresh))
        opted_out = sum(1 for r in fresh if r.status in (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED))
        return ImportReport(added=len(fresh) - opted_out, unchanged=len(known), opted_out=opted_out)

    def _insert_restored(self, connection: Connection, rows: Sequence[RestoredSubscriber], now: datetime) -> None:
        values = []
        for r in rows:
            n = r.new
            active = r.status is SubscriberStatus.ACTIVE
            values.append({
                "email": n.email, "email_key": n.email_key, "name": n.name, "status": r.status.value,
                "frequency": n.frequency.value, "timezone": n.timezone, "send_hour": n.send_hour, "weekday": n.weekday,
                "high_water": r.high_water,
                "next_send_at": next_send_time(n.timezone, n.send_hour, n.frequency, n.weekday, now) if active else None,
                "source": r.source, "created_at": r.created_at, "updated_at": now, "status_changed_at": r.status_changed_at,
                "confirmed_at": r.confirmed_at, "unsubscribed_at": r.unsubscribed_at,
            })
        connection.execute(insert(subscribers), values)
        by_key = dict(connection.execute(
            select(subscribers.c.email_key, subscribers.c.id).where(subscribers.c.email_key.in_([r.new.email_key for r in rows]))
        ).all())
        links = [{"subscriber_id": by_key[r.new.email_key], "slug": slug} for r in rows for slug in r.new.categories]
        if links:
            connection.execute(insert(subscriber_categories), links)

    def sign_up(self, new: NewSubscriber, *, now: datetime, source: str = "signup") -> Subscriber:
        """A new opt-in: a new address becomes pending; a pending, unsubscribed or bounced one becomes
        pending again with the new preferences (it must confirm); an active one is left unchanged."""
        with self.database.write() as connection:
            row = connection.execute(select(subscribers).where(subscribers.c.email_key == new.email_key)).first()
            if row is None:
                subscriber_id = self._insert(connection, [new], now=now, confirmed=False, source=source)[0]
            else:
                subscriber_id = row.id
                if row.status != SubscriberStatus.ACTIVE.value:
                    self._write_preferences(connection, row, new, now)
                    if row.status != SubscriberStatus.PENDING.value:
                        self._set_status(connection, row.id, SubscriberStatus.PENDING, now, next_send_at=None, source=source)
        log.info("subscriber sign-up id=%s source=%s", subscriber_id, source)
        return self.get(subscriber_id)

    # -- lifecycle

    def _set_status(self, connection: Connection, subscriber_id: int, status: SubscriberStatus, now: datetime, **extra: Any) -> None:
        connection.execute(
            update(subscribers).where(subscribers.c.id == subscriber_id)
            .values(status=status.value, status_changed_at=now, updated_at=now, **extra)
        )

    def confirm(self, subscriber_id: int, now: datetime) -> Subscriber:
        """pending -> active (and scheduled). Confirming an active subscriber changes nothing;
        an unsubscribed or bounced one is refused: only a new sign-up can bring it back."""
        with self.database.write() as connection:
            row = self._one(connection, subscribers.c.id == subscriber_id, f"with id {subscriber_id}")
            status = SubscriberStatus(row.status)
            if status in (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED):
                raise TransitionError(
                    f"{row.email} is {status.value} (since {row.status_changed_at:%Y-%m-%d %H:%M} UTC); confirming does not revive it",
                    hint="the subscriber must sign up again",
                )
            if status is SubscriberStatus.PENDING:
                self._set_status(
                    connection, subscriber_id, SubscriberStatus.ACTIVE, now, confirmed_at=now,
                    next_send_at=next_send_time(row.timezone, row.send_hour, row.frequency, row.weekday, now),
                )
                log.info("subscriber confirmed id=%s", subscriber_id)
        return self.get(subscriber_id)

    def unsubscribe(self, subscriber_id: int, now: datetime) -> Subscriber:
        """Any status -> unsubscribed; the row stays as proof of the opt-out. Repeating it changes nothing."""
        with self.database.write() as connection:
            row = self._one(connection, subscribers.c.id == subscriber_id, f"with id {subscriber_id}")
            if row.status != SubscriberStatus.UNSUBSCRIBED.value:
                self._set_status(connection, subscriber_id, SubscriberStatus.UNSUBSCRIBED, now, unsubscribed_at=now, next_send_at=None)
                log.info("subscriber unsubscribed id=%s was=%s", subscriber_id, row.status)
        return self.get(subscriber_id)

    def remove(self, subscriber_id: int) -> None:
        """Delete the subscriber and everything about them (erasure on request)."""
        with self.database.write() as connection:
            result = connection.execute(delete(subscribers).where(subscribers.c.id == subscriber_id))
            if result.rowcount == 0:
                raise UnknownSubscriberError(f"no subscriber with id {subscriber_id}")
        log.info("subscriber removed id=%s", subscriber_id)

    # -- preferences and delivery state

    def set_preferences(
        self,
        subscriber_id: int,
        *,
        now: datetime,
        valid_categories: Collection[str] = (),
        categories: Iterable[str] | None = None,
        frequency: str | None = None,
        timezone: str | None = None,
        send_hour: int | str | None = None,
        weekday: int | str | None = None,
        name: str | None = None,
    ) -> Subscriber:
        """Change the given preferences (None leaves one as it is) and reschedule an active subscriber."""
        current = self.get(subscriber_id)
        new = NewSubscriber(
            address=Address.stored(current.email),
            name=clean_name(name) if name is not None else current.name,
            categories=check_categories(categories, valid_categories) if categories is not None else current.categories,
            frequency=check_frequency(frequency) if frequency is not None else current.frequency,
            timezone=check_timezone(timezone) if timezone is not None else current.timezone,
            send_hour=check_send_hour(send_hour) if send_hour is not None else current.send_hour,
            weekday=check_weekday(weekday) if weekday is not None else current.weekday,
        )
        if _preferences(new) == _preferences(current):
            return current  # nothing to change: no write, no reschedule
        with self.database.write() as connection:
            row = self._one(connection, subscribers.c.id == subscriber_id, f"with id {subscriber_id}")
            self._write_preferences(connection, row, new, now)
        log.info("subscriber preferences changed id=%s", subscriber_id)
        return self.get(subscriber_id)

    def _write_preferences(self, connection: Connection, row: Row[Any], new: NewSubscriber, now: datetime) -> None:
        values: dict[str, Any] = {
            "name": new.name, "frequency": new.frequency.value, "timezone": new.timezone,
            "send_hour": new.send_hour, "weekday": new.weekday, "updated_at": now,
        }
        if row.status == SubscriberStatus.ACTIVE.value:
            values["next_send_at"] = next_send_time(new.timezone, new.send_hour, new.frequency, new.weekday, now)
        connection.execute(update(subscribers).where(subscribers.c.id == row.id).values(**values))
        connection.execute(delete(subscriber_categories).where(subscriber_categories.c.subscriber_id == row.id))
        if new.categories:
            connection.execute(
                insert(subscriber_categories), [{"subscriber_id": row.id, "slug": slug} for slug in new.categories]
            )

    def reschedule(self, moves: Sequence[tuple[int, datetime]]) -> None:
        """Set each (subscriber id, time) active subscriber's next send time, in one transaction."""
        if moves:
            with self.database.write() as connection:
                self.within(connection).reschedule(moves)

    def missed(self, before: datetime) -> list[Subscriber]:
        """Active subscribers whose next send time is before `before` (their digest was not sent in time)."""
        c = subscribers.c
        with self.database.read() as connection:
            rows = connection.execute(
                select(*_SUBSCRIBER_COLUMNS).where(c.status == SubscriberStatus.ACTIVE.value, c.next_send_at < before)
            ).all()
            return self._load(connection, rows)

    def take_confirmation_slot(self, email_key: str, limit: int, now: datetime) -> bool:
        """Record one confirmation email to `email_key` unless `limit` went out within the last hour."""
        with self.database.write() as connection:
            return self.within(connection).take_confirmation_slot(email_key, limit, now)

    # -- changes made by bounces and complaints (#13), recorded and reversible

    def change_status_for_event(
        self, connection: Connection, subscriber_id: int, to: SubscriberStatus, *, now: datetime, reason: str,
        event_id: int | None,
    ) -> int | None:
        """Within the caller's write transaction: pending/active -> bounced, or anything -> unsubscribed,
        recorded in subscriber_changes; the change's id, or None when nothing changed."""
        row = self._one(connection, subscribers.c.id == subscriber_id, f"with id {subscriber_id}")
        current = row.status
        if to is SubscriberStatus.BOUNCED and current not in (SubscriberStatus.PENDING.value, SubscriberStatus.ACTIVE.value):
            return None
        if to is SubscriberStatus.UNSUBSCRIBED and current == SubscriberStatus.UNSUBSCRIBED.value:
            return None
        if to not in (SubscriberStatus.BOUNCED, SubscriberStatus.UNSUBSCRIBED):
            raise ValueError(f"a bounce event cannot make a subscriber {to.value}")
        extra: dict[str, Any] = {"next_send_at": None}
        if to is SubscriberStatus.UNSUBSCRIBED:
            extra["unsubscribed_at"] = now
        self._set_status(connection, subscriber_id, to, now, **extra)
        change_id = connection.execute(insert(subscriber_changes).values(
            subscriber_id=subscriber_id, event_id=event_id, from_status=current, to_status=to.value,
            reason=reason[:500], changed_at=now, reverted_at=None,
        )).inserted_primary_key[0]  # type: ignore[index]
        log.info("subscriber %s by event id=%s event=%s change=%s was=%s", to.value, subscriber_id, event_id, change_id, current)
        return int(change_id)

    def changes(self, subscriber_id: int) -> list[StatusChange]:
        c = subscriber_changes.c
        with self.database.read() as connection:
            rows = connection.execute(
                select(subscriber_changes).where(c.subscriber_id == subscriber_id).order_by(c.id)
            ).all()
        return [StatusChange(*row) for row in rows]

    def get_change(self, change_id: int) -> StatusChange:
        with self.database.read() as connection:
            row = connection.execute(select(subscriber_changes).where(subscriber_changes.c.id == change_id)).first()
        if row is None:
            raise UnknownSubscriberError(f"no status change with id {change_id}")
        return StatusChange(*row)

    def revert_change(self, connection: Connection, change_id: int, now: datetime) -> StatusChange:
        """Within the caller's write transaction: put the subscriber back to the status before the change.
        Refused when it was reverted already or the subscriber's status moved on since."""
        c = subscriber_changes.c
        row = connection.execute(select(subscriber_changes).where(c.id == change_id)).first()
        if row is None:
            raise UnknownSubscriberError(f"no status change with id {change_id}")
        change = StatusChange(*row)
        if change.reverted_at is not None:
            raise TransitionError(f"change {change_id} was already reverted on {change.reverted_at:%Y-%m-%d %H:%M} UTC")
        sub = self._one(connection, subscribers.c.id == change.subscriber_id, f"with id {change.subscriber_id}")
        if sub.status != change.to_status:
            raise TransitionError(
                f"subscriber {change.subscriber_id} is {sub.status} now, not {change.to_status}: change {change_id} is not the latest",
            )
        back = SubscriberStatus(change.from_status)
        extra: dict[str, Any] = {}
        if change.to_status == SubscriberStatus.UNSUBSCRIBED.value:
            extra["unsubscribed_at"] = None
        if back is SubscriberStatus.ACTIVE:
            extra["next_send_at"] = next_send_time(sub.timezone, sub.send_hour, sub.frequency, sub.weekday, now)
        self._set_status(connection, change.subscriber_id, back, now, **extra)
        connection.execute(update(subscriber_changes).where(c.id == change_id).values(reverted_at=now))
        log.info("status change reverted change=%s subscriber=%s back=%s", change_id, change.subscriber_id, back.value)
        return StatusChange(*{**change.__dict__, "reverted_at": now}.values())
