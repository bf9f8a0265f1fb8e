"""The database: migrations from code, SQLite pragmas, refusal of foreign or newer databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import inspect, text

from syndicate.config import settings_from_mapping
from syndicate.storage._database import DatabaseError, create_database, current_revision, head_revision, open_database, upgrade
from syndicate.storage.schema import subscribers


def _settings(url: str):
    return settings_from_mapping({"database": {"url": url}})


def test_migrations_on_an_empty_database_then_again(database_url):
    with create_database(database_url) as db:
        assert current_revision(db) is None
        assert upgrade(db) == (None, head_revision())
        assert upgrade(db) == (head_revision(), head_revision())
        with db.read() as connection:
            tables = set(inspect(connection).get_table_names())
    assert {"subscribers", "subscriber_categories", "alembic_version"} <= tables


def test_open_database_migrates_an_empty_database_by_itself(database_url):
    with open_database(_settings(database_url).database) as db:
        assert current_revision(db) == head_revision()
    with open_database(_settings(database_url).database) as db:  # and opens it again untouched
        assert current_revision(db) == head_revision()


def test_a_database_newer_than_the_code_is_refused(database_url):
    with open_database(_settings(database_url).database) as db, db.write() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    with pytest.raises(DatabaseError, match="9999_future, newer than this version of syndicate") as caught:
        open_database(_settings(database_url).database)
    assert "upgrade syndicate" in caught.value.hint
    with create_database(database_url) as db, pytest.raises(DatabaseError, match="newer"):
        upgrade(db)


def test_a_database_with_foreign_tables_is_refused(database_url):
    with create_database(database_url) as db, db.write() as connection:
        connection.execute(text("CREATE TABLE invoices (id INTEGER PRIMARY KEY)"))
    with pytest.raises(DatabaseError, match=r"has tables \(invoices\) but no syndicate migration history"):
        open_database(_settings(database_url).database)


def test_sqlite_runs_with_wal_foreign_keys_and_a_busy_timeout(tmp_path):
    url = f"sqlite:///{tmp_path / 'deep' / 'var' / 'syndicate.db'}"
    with open_database(_settings(url).database) as db, db.read() as connection:
        pragma = lambda name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
        assert pragma("journal_mode") == "wal"
        assert pragma("foreign_keys") == 1
        assert pragma("busy_timeout") >= 1000
    assert (tmp_path / "deep" / "var" / "syndicate.db").is_file()


def test_default_database_is_sqlite_under_var(tmp_path):
    settings = settings_from_mapping({}, path=tmp_path / "syndicate.toml")
    with open_database(settings.database) as db:
        assert db.dialect == "sqlite"
    assert (tmp_path / "var" / "syndicate.db").is_file()


@pytest.mark.parametrize("url, message", [
    ("mysql://root@localhost/x", "unsupported database 'mysql'"),
    ("postgresql+psycopg2://u@h/x", "unsupported PostgreSQL driver 'psycopg2'"),
    ("not a url://", "invalid database URL"),
])
def test_unsupported_urls_are_refused_clearly(url, message):
    with pytest.raises(DatabaseError, match=message):
        create_database(url)


def test_datetimes_are_stored_as_utc_and_naive_ones_refused(database):
    paris = timezone(timedelta(hours=2))
    row = {
        "email": "a@example.org", "email_key": "a@example.org", "status": "active", "frequency": "daily",
        "timezone": "UTC", "send_hour": 8, "weekday": 0, "source": "cli",
        "created_at": datetime(2026, 6, 1, 10, 0, tzinfo=paris), "updated_at": datetime(2026, 6, 1, 8, 0, tzinfo=UTC),
        "status_changed_at": datetime(2026, 6, 1, 8, 0, tzinfo=UTC),
    }
    with database.write() as connection:
        connection.execute(subscribers.insert(), row)
    with database.read() as connection:
        created = connection.execute(subscribers.select()).one().created_at
    assert created == datetime(2026, 6, 1, 8, 0, tzinfo=UTC) and created.utcoffset() == timedelta(0)
    with pytest.raises(Exception, match="naive datetime"), database.write() as connection:
        connection.execute(subscribers.update().values(updated_at=datetime(2026, 6, 1, 8, 0)))


def test_the_database_enforces_the_schema_constraints(database):
    good = {
        "email": "a@example.org", "email_key": "a@example.org", "status": "active", "frequency": "daily",
        "timezone": "UTC", "send_hour": 8, "weekday": 0, "source": "cli",
        "created_at": datetime(2026, 6, 1, tzinfo=UTC), "updated_at": datetime(2026, 6, 1, tzinfo=UTC),
        "status_changed_at": datetime(2026, 6, 1, tzinfo=UTC),
    }
    with database.write() as connection:
        connection.execute(subscribers.insert(), good)
    for bad in ({"email_key": "a@example.org"}, {"email_key": "b@x.org", "status": "gone"},
                {"email_key": "c@x.org", "send_hour": 24}):
        with pytest.raises(Exception), database.write() as connection:
            connection.execute(subscribers.insert(), {**good, **bad})


def test_sqlite_writers_queue_instead_of_failing(tmp_path):
    """A second writer waits for the first (BEGIN IMMEDIATE + busy timeout) instead of 'database is locked'."""
    import threading
    import time

    url = f"sqlite:///{tmp_path / 'var' / 'syndicate.db'}"
    with open_database(_settings(url).database) as first, open_database(_settings(url).database) as second:
        holding = threading.Event()
        order = []

        def slow_writer():
            with first.write() as connection:
                connection.execute(text("CREATE TABLE scratch (n INTEGER)"))
                holding.set()
                time.sleep(0.3)
                order.append("first")

        thread = threading.Thread(target=slow_writer)
        thread.start()
        holding.wait()
        with second.write() as connection:
            order.append("second")
            connection.execute(text("INSERT INTO scratch VALUES (1)"))
        thread.join()
        assert order == ["first", "second"]


def test_two_openers_of_an_empty_database_both_succeed(database_url):
    import threading

    errors = []

    def opener():
        try:
            open_database(_settings(database_url).database).close()
        except Exception as e:  # the assertion below shows it
            errors.append(e)

    threads = [threading.Thread(target=opener) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with create_database(database_url) as db:
        assert current_revision(db) == head_revision()
