"""The subscriber store: validation, lifecycle, schedules, delivery state and CSV import/export."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from syndicate.subscribers._csv import import_csv, write_subscribers
from syndicate.subscribers._model import Frequency, SubscriberStatus
from syndicate.subscribers._store import (
    Filter,
    InvalidSubscriberError,
    SubscriberDefaults,
    SubscriberExistsError,
    SubscriberStore,
    TransitionError,
    UnknownSubscriberError,
    new_subscriber,
    next_send_time,
)

NOW = datetime(2026, 6, 1, 6, 0, tzinfo=UTC)  # a Monday
VALID = {"city", "science", "sports", "main"}
DEFAULTS = SubscriberDefaults(frequency=Frequency.DAILY, timezone="Europe/Paris", send_hour=8, weekday=0)


@pytest.fixture
def store(database):
    return SubscriberStore(database, DEFAULTS)


def make(email="ann@example.org", categories=("city",), **fields):
    return new_subscriber(email, categories=categories, valid_categories=VALID, defaults=DEFAULTS, **fields)


# ------------------------------------------------------------------ validation

@pytest.mark.parametrize("raw, email", [
    ("Ann@Example.ORG", "Ann@example.org"),
    ("  bob@example.org ", "bob@example.org"),
    ("josé@exämple.org", "josé@exämple.org"),
])
def test_addresses_are_normalised(raw, email):
    assert make(raw).email == email


@pytest.mark.parametrize("raw", [
    "", "ann", "ann@", "@example.org", "ann@@example.org", "Ann <ann@example.org>",
    "ann@example.org\r\nBcc: victim@example.org", "ann@example.org\nSubject: spam", "ann\x00@example.org",
    "ann@example.org,eve@example.org", "a" * 330 + "@example.org",
])
def test_bad_and_header_injecting_addresses_are_refused(raw):
    with pytest.raises(InvalidSubscriberError) as caught:
        make(raw)
    assert caught.value.field == "email"


@pytest.mark.parametrize("name", [
    "Ann\r\nBcc: victim@example.org", "Ann\nSubject: x", "Ann\rX", "Ann\x00", "Ann\x1b[31m", "Ann\u2028x",
    "Ann\u0085x", "\u202eevil", "x" * 201, "Ann\ud800", "Ann\udcff",
])
def test_names_with_line_breaks_or_control_characters_are_refused(name):
    with pytest.raises(InvalidSubscriberError, match="^name: "):
        make(name=name)


def test_unicode_names_round_trip(store):
    name = "Zoë Ørsted-Łukasiewicz 李小龍 🎉 Ἀθηνᾶ"
    stored = store.add(make(name=name), now=NOW)
    assert store.get(stored.id).name == name
    assert store.get_by_email("ANN@example.org").name == name


@pytest.mark.parametrize("fields, message", [
    ({"categories": ("city", "cooking")}, "unknown category cooking (valid: city, main, science, sports)"),
    ({"frequency": "hourly"}, "frequency: expected daily or weekly"),
    ({"timezone": "Mars/Olympus"}, "unknown timezone 'Mars/Olympus'"),
    ({"timezone": "Factory"}, "timezone: 'Factory' is not a place's time zone"),
    ({"timezone": "localtime"}, "timezone: 'localtime' is not a place's time zone"),
    ({"timezone": "posixrules"}, "timezone: 'posixrules' is not a place's time zone"),
    ({"timezone": "EST5EDT"}, "timezone: 'EST5EDT' is not a place's time zone"),
    ({"timezone": "Etc/GMT+5"}, "timezone: 'Etc/GMT+5' is a fixed offset, not a place"),
    ({"send_hour": 24}, "send_hour: expected a whole hour 0 to 23, got 24"),
    ({"send_hour": "8am"}, "send_hour: expected a whole hour"),
    ({"weekday": "someday"}, "weekday: expected a day name"),
])
def test_bad_preferences_are_refused_with_the_reason(fields, message):
    with pytest.raises(InvalidSubscriberError, match=re.escape(message)):
        make(**fields)


def test_a_zone_alias_is_stored_as_the_place_it_names():
    assert make(timezone="US/Eastern").timezone == "America/New_York"
    assert make(timezone="Asia/Calcutta").timezone == "Asia/Kolkata"
    assert make(timezone="UTC").timezone == "UTC"


def test_defaults_come_from_config_and_weekday_names_are_accepted():
    new = make(frequency="weekly", weekday="friday")
    assert (new.frequency, new.weekday, new.timezone, new.send_hour) == (Frequency.WEEKLY, 4, "Europe/Paris", 8)


# ------------------------------------------------------------------ lifecycle

def test_the_lifecycle_pending_active_unsubscribed(store):
    pending = store.add(make(categories=("city", "sports")), now=NOW)
    assert pending.status is SubscriberStatus.PENDING and pending.categories == ("city", "sports")
    assert store.details(pending.id).next_send_at is None

    later = NOW + timedelta(hours=1)
    active = store.confirm(pending.id, later)
    assert active.status is SubscriberStatus.ACTIVE and active.status_changed_at == later
    assert store.details(active.id).next_send_at == datetime(2026, 6, 1, 6, 0, tzinfo=UTC) + timedelta(days=1)
    assert store.confirm(active.id, later + timedelta(hours=1)).status_changed_at == later  # idempotent

    gone_at = NOW + timedelta(days=3)
    gone = store.unsubscribe(active.id, gone_at)
    assert gone.status is SubscriberStatus.UNSUBSCRIBED and gone.status_changed_at == gone_at
    details = store.details(gone.id)
    assert details.unsubscribed_at == gone_at and details.next_send_at is None and details.confirmed_at == later
    assert store.get_by_email("ann@example.org").status is SubscriberStatus.UNSUBSCRIBED  # the proof stays


def _bounce(store, subscriber_id, now):
    """Bounce the subscriber as the outbox does: through the store, inside a transaction of its own."""
    with store.database.write() as connection:
        return store.within(connection).mark_bounced(subscriber_id, now)


@pytest.mark.parametrize("end", ["unsubscribe", "bounce"])
def test_confirming_never_revives_an_unsubscribed_or_bounced_address(store, end):
    subscriber = store.confirm(store.add(make(), now=NOW).id, NOW)
    if end == "bounce":
        assert _bounce(store, subscriber.id, NOW + timedelta(days=1)) is True
    else:
        store.unsubscribe(subscriber.id, NOW + timedelta(days=1))
    with pytest.raises(TransitionError, match="confirming does not revive it"):
        store.confirm(subscriber.id, NOW + timedelta(days=2))
    assert store.get(subscriber.id).status in (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED)


def test_bouncing_keeps_an_unsubscribe_and_a_new_sign_up_needs_confirming(store):
    subscriber = store.add(make(), now=NOW, confirmed=True)
    store.unsubscribe(subscriber.id, NOW)
    assert _bounce(store, subscriber.id, NOW + timedelta(hours=1)) is False
    assert store.get(subscriber.id).status is SubscriberStatus.UNSUBSCRIBED
    again = store.sign_up(make(categories=("science",)), now=NOW + timedelta(days=1))
    assert (again.id, again.status, again.categories) == (subscriber.id, SubscriberStatus.PENDING, ("science",))
    assert store.confirm(again.id, NOW + timedelta(days=1)).status is SubscriberStatus.ACTIVE


def test_sign_up_of_an_active_address_changes_nothing(store):
    active = store.add(make(categories=("city",)), now=NOW, confirmed=True)
    assert store.sign_up(make(categories=("sports",)), now=NOW).categories == ("city",)
    assert store.get(active.id).status is SubscriberStatus.ACTIVE


def test_addresses_are_unique_whatever_their_case(store):
    store.add(make("ann@example.org"), now=NOW)
    with pytest.raises(SubscriberExistsError, match="already in the database"):
        store.add(make("ANN@EXAMPLE.ORG"), now=NOW)
    assert store.count() == 1


def test_remove_erases_the_subscriber_and_their_categories(store, database):
    subscriber = store.add(make(categories=("city", "main")), now=NOW)
    store.remove(subscriber.id)
    with pytest.raises(UnknownSubscriberError):
        store.get(subscriber.id)
    with pytest.raises(UnknownSubscriberError):
        store.remove(subscriber.id)
    with database.read() as connection:
        assert connection.exec_driver_sql("SELECT COUNT(*) FROM subscriber_categories").scalar() == 0


def test_high_water_only_moves_forward_and_a_rollback_takes_it_back(store):
    subscriber = store.add(make(), now=NOW, confirmed=True)
    t1, t0 = NOW + timedelta(hours=2), NOW
    with store.database.write() as connection:
        store.within(connection).move_high_water([(subscriber.id, t1)])
    assert store.get(subscriber.id).high_water == t1
    with store.database.write() as connection:
        store.within(connection).move_high_water([(subscriber.id, t0)])
    assert store.get(subscriber.id).high_water == t1
    with pytest.raises(RuntimeError), store.database.write() as connection:  # the caller's transaction fails
        store.within(connection).move_high_water([(subscriber.id, t1 + timedelta(hours=1))])
        raise RuntimeError("the outbox could not record the delivery")
    assert store.get(subscriber.id).high_water == t1
    other = store.add(make(email="other@example.org"), now=NOW, confirmed=True)
    with store.database.write() as connection:  # one batch, the newer mark first: the newer one stays
        store.within(connection).move_high_water([(subscriber.id, t1 + timedelta(hours=3)), (other.id, t0),
                                                  (subscriber.id, t1 + timedelta(hours=1))])
    assert (store.get(subscriber.id).high_water, store.get(other.id).high_water) == (t1 + timedelta(hours=3), t0)


def test_changing_preferences_reschedules(store):
    subscriber = store.add(make(), now=NOW, confirmed=True)
    assert store.details(subscriber.id).next_send_at == datetime(2026, 6, 1, 6, 0, tzinfo=UTC) + timedelta(days=1)
    changed = store.set_preferences(subscriber.id, now=NOW, valid_categories=VALID, categories=["sports"],
                                    timezone="America/New_York", send_hour=7, frequency="weekly", weekday="wednesday")
    assert (changed.categories, changed.frequency, changed.weekday) == (("sports",), Frequency.WEEKLY, 2)
    assert store.details(subscriber.id).next_send_at == datetime(2026, 6, 3, 11, 0, tzinfo=UTC)  # Wed 07:00 EDT
    with pytest.raises(InvalidSubscriberError, match="unknown category"):
        store.set_preferences(subscriber.id, now=NOW, valid_categories=VALID, categories=["nope"])


# ------------------------------------------------------------------ schedule

PARIS = "Europe/Paris"


@pytest.mark.parametrize("after, hour, expected", [
    (datetime(2026, 6, 1, 5, 0, tzinfo=UTC), 8, datetime(2026, 6, 1, 6, 0, tzinfo=UTC)),
    (datetime(2026, 6, 1, 6, 0, tzinfo=UTC), 8, datetime(2026, 6, 2, 6, 0, tzinfo=UTC)),  # strictly after
    # 2026-03-29 02:00 does not exist in Paris: the digest goes at 03:00 CEST
    (datetime(2026, 3, 28, 12, 0, tzinfo=UTC), 2, datetime(2026, 3, 29, 1, 0, tzinfo=UTC)),
    # 2026-10-25 02:00 happens twice in Paris: the first one only, then the next day
    (datetime(2026, 10, 24, 12, 0, tzinfo=UTC), 2, datetime(2026, 10, 25, 0, 0, tzinfo=UTC)),
    (datetime(2026, 10, 25, 0, 0, tzinfo=UTC), 2, datetime(2026, 10, 26, 1, 0, tzinfo=UTC)),
    (datetime(2026, 10, 25, 0, 30, tzinfo=UTC), 2, datetime(2026, 10, 26, 1, 0, tzinfo=UTC)),
])
def test_next_send_time_daily_across_dst(after, hour, expected):
    assert next_send_time(PARIS, hour, "daily", 0, after) == expected


def test_next_send_time_weekly_and_far_timezones():
    monday_noon = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    assert next_send_time(PARIS, 8, "weekly", 0, monday_noon) == datetime(2026, 6, 8, 6, 0, tzinfo=UTC)
    assert next_send_time(PARIS, 8, "weekly", 6, monday_noon) == datetime(2026, 6, 7, 6, 0, tzinfo=UTC)
    # Monday noon UTC is already Tuesday 02:00 in Kiritimati (UTC+14): Tuesday 06:00 there is 16:00 UTC
    assert next_send_time("Pacific/Kiritimati", 6, "weekly", 1, monday_noon) == datetime(2026, 6, 1, 16, 0, tzinfo=UTC)


@hsettings(max_examples=300, deadline=None)
@given(
    after=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2037, 1, 1), timezones=st.just(UTC)),
    zone=st.sampled_from(["Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "America/Santiago"]),
    hour=st.integers(0, 23),
    weekly=st.booleans(),
    weekday=st.integers(0, 6),
)
def test_next_send_time_properties(after, zone, hour, weekly, weekday):
    at = next_send_time(zone, hour, "weekly" if weekly else "daily", weekday, after)
    local = at.astimezone(ZoneInfo(zone))
    assert at > after and at.tzinfo is UTC
    assert at - after <= timedelta(days=7 if weekly else 1, hours=2)
    wall = datetime.combine(local.date(), time(hour), tzinfo=ZoneInfo(zone))  # `hour`:00 on that local day
    if wall.astimezone(UTC).astimezone(ZoneInfo(zone)).replace(tzinfo=None) == wall.replace(tzinfo=None):
        assert (local.hour, local.minute, local.second) == (hour, 0, 0)  # a wall time that exists: exactly it
    else:  # skipped by a DST change: the instant the clocks jumped to, just after the gap
        assert at == wall.astimezone(UTC) and local.replace(tzinfo=None) > wall.replace(tzinfo=None)
        assert local.replace(tzinfo=None) - wall.replace(tzinfo=None) <= timedelta(hours=1)
    if weekly:
        assert local.weekday() == weekday


def _due_setup(store):
    """Six subscribers confirmed on Monday 09:30 Paris; on Tuesday 08:00 Paris the active ones
    sending at 08:00 Paris or earlier are due (the weekly one sends on Tuesdays)."""
    emails = []
    for i, (tz, hour, freq, confirm) in enumerate([
        ("Europe/Paris", 8, "daily", True), ("Europe/Paris", 7, "daily", True), ("Europe/Paris", 9, "daily", True),
        ("UTC", 6, "daily", True), ("Europe/Paris", 8, "weekly", True), ("Europe/Paris", 8, "daily", False),
    ]):
        store.add(make(f"s{i}@example.org", timezone=tz, send_hour=hour, frequency=freq, weekday="tuesday"),
                  now=datetime(2026, 6, 1, 7, 30, tzinfo=UTC), confirmed=confirm)
        emails.append(f"s{i}@example.org")
    return emails


def test_iter_due_streams_active_subscribers_whose_time_has_come(store):
    _due_setup(store)
    at = datetime(2026, 6, 2, 6, 0, tzinfo=UTC)  # Tuesday 08:00 Paris
    due = [s.email for s in store.iter_due(at, frequency=Frequency.DAILY, batch=2)]
    assert sorted(due) == ["s0@example.org", "s1@example.org", "s3@example.org"]
    assert sorted(s.email for s in store.iter_due(at, batch=1)) == ["s0@example.org", "s1@example.org",
                                                                    "s3@example.org", "s4@example.org"]
    assert [s.email for s in store.iter_due(at, frequency=Frequency.WEEKLY)] == ["s4@example.org"]


def test_advancing_while_iterating_neither_repeats_nor_skips(store):
    for i in range(7):
        store.add(make(f"n{i}@example.org", timezone="UTC", send_hour=i % 3), now=NOW - timedelta(days=2), confirmed=True)
    seen = []
    for subscriber in store.iter_due(NOW, batch=2):
        seen.append(subscriber.email)
        store.reschedule([(subscriber.id, next_send_time(subscriber.timezone, subscriber.send_hour,
                                                         subscriber.frequency, subscriber.weekday, NOW))])
    assert sorted(seen) == sorted(f"n{i}@example.org" for i in range(7))
    assert list(store.iter_due(NOW)) == []


def test_listing_filters_by_status_category_and_frequency(store):
    store.add(make("a@example.org", categories=("city",)), now=NOW, confirmed=True)
    store.add(make("b@example.org", categories=("sports", "city"), frequency="weekly"), now=NOW)
    store.add(make("c@example.org", categories=("main",)), now=NOW, confirmed=True)
    emails = lambda where: [s.subscriber.email for s in store.iter_subscribers(where, batch=1)]  # noqa: E731
    assert emails(Filter()) == ["a@example.org", "b@example.org", "c@example.org"]
    assert emails(Filter(status=SubscriberStatus.ACTIVE)) == ["a@example.org", "c@example.org"]
    assert emails(Filter(category="city")) == ["a@example.org", "b@example.org"]
    assert emails(Filter(category="city", frequency=Frequency.WEEKLY)) == ["b@example.org"]


# ------------------------------------------------------------------ CSV

BAD_ROWS = [
    (",Nobody,city", "email: is missing"),
    ("not-an-address,,city", "is not a valid address"),
    ('"eve@example.org\nBcc: x@example.org",,city', "contains a line break"),
    ('mallory@example.org,"Mal\r\nBcc: x@example.org",city', "name: contains a line break"),
    ("ann@example.org,,cooking", "unknown category cooking (valid: city, main, science, sports)"),
    ("ann@example.org,,city,hourly", "frequency: expected daily or weekly, got 'hourly'"),
    ("ann@example.org,,city,daily,Mars/Olympus", "unknown timezone 'Mars/Olympus'"),
    ("ann@example.org,,city,daily,Europe", "unknown timezone 'Europe'"),  # a folder of the zone database
    ("ann@example.org,,city,daily," + "x" * 300, "unknown timezone 'xxx"),  # longer than a file name may be
    ("ann@example.org,,city,daily,UTC,25", "send_hour: expected a whole hour 0 to 23, got 25"),
    ("ann@example.org,,city,daily,UTC,eight", "send_hour: expected a whole hour 0 to 23, got 'eight'"),
    ("ann@example.org,,city,weekly,UTC,8,funday", "weekday: expected a day name"),
    ("ann@example.org,,city,daily,UTC,8,0,surplus", "1 more fields than the header has columns"),
    ("good@example.org,,city\nGOOD@example.org,,main", "already appears on line 3"),
    ("ann@example.org,,city,daily,UTC,8,0\nann@example.org,,city,daily,UTC,8,0", "already appears on line"),
]
HEADER = "email,name,categories,frequency,timezone,send_hour,weekday\n"


@pytest.mark.parametrize("row, reason", BAD_ROWS)
def test_each_kind_of_bad_csv_row_is_reported_with_its_line_and_the_good_rows_imported(store, tmp_path, row, reason):
    path = tmp_path / "in.csv"
    path.write_text(HEADER + "first@example.org,First,city\n" + row + "\nlast@example.org,Last,sports;main\n",
                    encoding="utf-8")
    report = import_csv(store, path, valid_categories=VALID, now=NOW)
    assert len(report.problems) == 1, report.problems
    assert report.problems[0].startswith(f"{path}:") and reason in report.problems[0]
    line = int(report.problems[0].split(":")[1])
    assert line >= 3
    assert store.get_by_email("first@example.org").name == "First"
    assert store.get_by_email("last@example.org").categories == ("main", "sports")


def test_an_unclosed_quote_is_reported_where_the_record_starts(store, tmp_path):
    path = tmp_path / "in.csv"
    path.write_text(HEADER + "first@example.org,First,city\n" + 'ann@example.org,"Ann,city\nlast@example.org,,city\n')
    report = import_csv(store, path, valid_categories=VALID, now=NOW)
    assert report.added == 0 and store.count() == 0  # a file unreadable to its end imports nothing
    assert report.problems == (f"{path}:3: unreadable CSV (unexpected end of data; is a quote left open?); "
                               "nothing was imported",)


def test_a_file_that_is_not_utf8_is_reported(store, tmp_path):
    path = tmp_path / "in.csv"
    path.write_bytes(b"email,name\nfirst@example.org,First\n" + "zo\u00eb@example.org,Zo\u00eb\n".encode("latin-1")
                     + b"last@example.org,Last\n")
    report = import_csv(store, path, valid_categories=VALID, now=NOW)
    assert report.problems == (f"{path}:3: not UTF-8 text (byte 0xEB); save the file as UTF-8",)
    assert report.added == 2


@pytest.mark.parametrize("header, message", [
    ("", "empty file"),
    ("name,categories\n", "no email column"),
    ("email,categroies\n", "unknown column 'categroies'"),
    ("email,email\n", "column email appears twice"),
    ("email,na\rme\n", ":1: unreadable header row"),  # a stray carriage return
    ('"email,name\n', ":1: unreadable header row"),  # a quote left open to the end
])
def test_a_bad_header_is_refused_before_any_row(store, tmp_path, header, message):
    path = tmp_path / "in.csv"
    path.write_text(header + "a@example.org,x\n" if header else "", encoding="utf-8")
    with pytest.raises(Exception, match=message):
        import_csv(store, path, valid_categories=VALID, now=NOW)
    assert store.count() == 0


def test_reimporting_changes_nothing_and_never_overwrites_an_unsubscribe(store, tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("\ufeffemail,name,categories\nann@example.org,Ann,city\nbob@example.org,Bob,main\n", encoding="utf-8")
    first = import_csv(store, path, valid_categories=VALID, now=NOW, confirmed=True)
    assert (first.added, first.unchanged, first.problems) == (2, 0, ())
    bob = store.get_by_email("bob@example.org")
    store.unsubscribe(bob.id, NOW + timedelta(days=1))
    again = import_csv(store, path, valid_categories=VALID, now=NOW + timedelta(days=2), confirmed=True)
    assert (again.added, again.unchanged, again.opted_out) == (0, 1, 1)
    assert store.count() == 2
    assert store.get(bob.id).status is SubscriberStatus.UNSUBSCRIBED


def test_a_dry_run_reports_but_writes_nothing(store, tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("email\nann@example.org\nbad\n", encoding="utf-8")
    report = import_csv(store, path, valid_categories=VALID, now=NOW, dry_run=True)
    assert report.added == 1 and len(report.problems) == 1 and store.count() == 0


def test_export_then_import_into_another_database_round_trips(store, tmp_path):
    store.add(make("ann@example.org", name="Zoë, \"the\" reader", categories=("city", "main")), now=NOW, confirmed=True)
    gone = store.add(make("bob@example.org"), now=NOW, confirmed=True)
    store.unsubscribe(gone.id, NOW)
    out = io.StringIO()
    assert write_subscribers(store.iter_subscribers(), out) == 2
    path = tmp_path / "export.csv"
    path.write_text(out.getvalue(), encoding="utf-8")
    with store.database.write() as connection:
        connection.exec_driver_sql("DELETE FROM subscribers")
    report = import_csv(store, path, valid_categories=VALID, now=NOW, confirmed=True)
    assert report.added == 1 and "an import never subscribes an opted-out address" in report.problems[0]
    ann = store.get_by_email("ann@example.org")
    assert (ann.name, ann.categories, ann.timezone) == ("Zoë, \"the\" reader", ("city", "main"), "Europe/Paris")
