"""The database: engine creation from settings, SQLite pragmas, and migrations run from code."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util.exc import CommandError
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from syndicate.config import DatabaseSettings
from syndicate.errors import SyndicateError

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 10_000  # the default of [database] busy_timeout
CONNECT_TIMEOUT = 10  # seconds to reach a PostgreSQL server before calling it unreachable
_WRITE = "syndicate_write"
VERSION_TABLE = "alembic_version"
_MIGRATION_LOCK = 0x53594E44  # "SYND": the advisory lock key migrations hold on PostgreSQL


class DatabaseError(SyndicateError):
    """The database cannot be opened, is of the wrong version, or failed a migration."""


class DatabaseUnavailableError(DatabaseError):
    """The database cannot be reached or stays locked: an operator's problem, worth retrying later.
    Nothing was written (the transaction it happened in was rolled back)."""

    exit_code = 2


@contextmanager
def _faults_named(url: str, dialect: str, busy_ms: int) -> Iterator[None]:
    """An OperationalError (server down, refused login, SQLite locked past the busy timeout) as one
    clear DatabaseUnavailableError: what, where, what to do; never the SQL or its parameters."""
    try:
        yield
    except OperationalError as e:
        reason = str(e.orig).strip().splitlines()[0][:200] if e.orig is not None else type(e).__name__
        if dialect == "sqlite" and "locked" in reason:
            raise DatabaseUnavailableError(
                f"database {url} is locked by another process (waited {busy_ms / 1000:g} s)",
                hint="try again when the other syndicate command (or sqlite3 shell) is done",
            ) from e
        raise DatabaseUnavailableError(
            f"database {url} is unreachable: {reason}",
            hint="check that the database server runs and accepts connections, and [database] url",
        ) from e


class Database:
    """An engine plus the two ways in: `read()` and `write()` transactions.

    On SQLite `write()` starts with BEGIN IMMEDIATE, so two writers queue on the busy
    timeout instead of failing when a read transaction tries to become a write one.
    """

    def __init__(self, engine: Engine, busy_ms: int = SQLITE_BUSY_TIMEOUT_MS) -> None:
        self.engine = engine
        self.busy_ms = busy_ms

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction; DatabaseUnavailableError when the database cannot be reached."""
        with _faults_named(self.url, self.dialect, self.busy_ms), self.engine.connect() as connection, connection.begin():
            yield connection

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction; DatabaseUnavailableError (all rolled back) when the database cannot be
        reached or stays locked."""
        with _faults_named(self.url, self.dialect, self.busy_ms), self.engine.connect() as connection:
            connection = connection.execution_options(**{_WRITE: True})
            with connection.begin():
                yield connection

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _enable_wal(cursor: Any, busy_ms: int = SQLITE_BUSY_TIMEOUT_MS) -> None:
    """Switch a new database file to WAL. Two connections doing it at once get SQLITE_BUSY at once
    (the busy handler is not consulted for this lock), so retry within the busy timeout."""
    deadline = time.monotonic() + busy_ms / 1000
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                return
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _sqlite_setup(engine: Engine, busy_ms: int = SQLITE_BUSY_TIMEOUT_MS) -> None:
    """WAL, foreign keys and a busy timeout on every connection; explicit BEGINs so that
    transactions (and DDL in migrations) mean what they say under the sqlite3 driver."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_ms)}")
        _enable_wal(cursor, busy_ms)
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        write = connection.get_execution_options().get(_WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def create_database(url: str, *, echo: bool = False, busy_timeout: float = SQLITE_BUSY_TIMEOUT_MS / 1000) -> Database:
    """A Database for `url` (sqlite:///PATH or postgresql+psycopg://...), without migrating it.
    `busy_timeout`: seconds a SQLite writer waits for another's lock."""
    busy_ms = int(busy_timeout * 1000)
    try:
        parsed = make_url(url)
    except ArgumentError as e:
        raise DatabaseError(f"invalid database URL {url!r}: {e}") from e
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, echo=echo)
        _sqlite_setup(engine, busy_ms)
    elif backend == "postgresql":
        if parsed.get_driver_name() != "psycopg":
            raise DatabaseError(
                f"unsupported PostgreSQL driver {parsed.get_driver_name()!r} in {parsed.render_as_string()}",
                hint="use a postgresql+psycopg://USER@HOST:PORT/DATABASE URL",
            )
        try:
            import psycopg  # noqa: F401  (the optional driver: syndicate[postgres])
        except ImportError as e:
            raise DatabaseError(
                "PostgreSQL needs the psycopg driver, which is not installed",
                hint="pip install 'syndicate[postgres]'",
            ) from e
        engine = create_engine(parsed, echo=echo, pool_pre_ping=True, connect_args={"connect_timeout": CONNECT_TIMEOUT})
    else:
        raise DatabaseError(
            f"unsupported database {backend!r} in [database] url",
            hint="use sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DATABASE",
        )
    return Database(engine, busy_ms)


def _alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest migration this code knows."""
    heads = ScriptDirectory.from_config(_alembic_config()).get_heads()
    return heads[0]


def current_revision(database: Database) -> str | None:
    """The migration the database is at, None for a database never migrated."""
    with database.read() as connection:
        if not inspect(connection).has_table(VERSION_TABLE):
            return None
        versions = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    if len(versions) > 1:
        raise DatabaseError(f"database {database.url} has several migration heads ({', '.join(versions)})")
    return versions[0] if versions else None


def _check_known(database: Database) -> str | None:
    """The current revision; a DatabaseError if it is newer than (unknown to) this code."""
    current = current_revision(database)
    if current is None:
        return None
    script = ScriptDirectory.from_config(_alembic_config())
    try:
        known = script.get_revision(current) is not None
    except (CommandError, RevisionError):  # an id this code has no migration for
        known = False
    if not known:
        raise DatabaseError(
            f"database {database.url} is at migration {current}, newer than this version of syndicate "
            f"(which knows up to {head_revision()})",
            hint="upgrade syndicate; never run an older version against a newer database",
        )
    return current


def upgrade(database: Database, revision: str = "head") -> tuple[str | None, str]:
    """Migrate to `revision`; returns (before, after). Refuses a database newer than the code."""
    before = _check_known(database)
    try:
        with database.write() as connection:
            if database.dialect == "postgresql":
                # Two processes opening an empty database at once: the second waits, then finds it migrated.
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
            command.upgrade(_alembic_config(connection), revision)
    except SQLAlchemyError as e:
        raise DatabaseError(f"migrating {database.url} failed: {e}") from e
    after = current_revision(database) or ""
    if before != after:
        log.info("database migrated url=%s from=%s to=%s", database.url, before, after)
    return before, after


def _user_tables(database: Database) -> list[str]:
    with database.read() as connection:
        return [name for name in inspect(connection).get_table_names() if name != VERSION_TABLE]


def open_database(settings: DatabaseSettings, *, upgrade_outdated: bool = False) -> Database:
    """The `[database]` database, ready to use.

    An empty database is migrated on the spot; one at an older migration is migrated only with
    `upgrade_outdated` (else a DatabaseError tells to run `syndicate db upgrade`); one newer than
    the code, or holding tables that are not syndicate's, is refused.
    """
    database = create_database(settings.url, echo=settings.echo, busy_timeout=settings.busy_timeout)
    try:
        _prepare(database, upgrade_outdated)
    except SQLAlchemyError as e:
        database.close()
        raise DatabaseError(f"cannot open database {database.url}: {e}") from e
    except SyndicateError:
        database.close()
        raise
    return database


def _prepare(database: Database, upgrade_outdated: bool) -> None:
    # Tables first, then the revision: another process migrating meanwhile then shows up as migrated.
    tables = _user_tables(database)
    current = _check_known(database)
    head = head_revision()
    if current == head:
        return
    if current is None:
        if tables:
            raise DatabaseError(
                f"database {database.url} has tables ({', '.join(sorted(tables)[:5])}) but no syndicate migration history",
                hint="point [database] url at an empty database or one syndicate created",
            )
        upgrade(database)
    elif upgrade_outdated:
        upgrade(database)
    else:
        raise DatabaseError(
            f"database {database.url} is at migration {current}; this version of syndicate needs {head}",
            hint="run `syndicate db upgrade` (back the database up first)",
        )
