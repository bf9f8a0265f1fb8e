"""Shared fixtures. `database_url` runs a test on SQLite and, when SYNDICATE_TEST_DATABASE_URL
is set, on PostgreSQL too (each test in a schema of its own, dropped afterwards).

Under pytest-xdist (`make test` runs `-n 2`), a test marked `timing` runs with no other test of
this run beside it: it takes a lock every other test shares (see `_RunLock`)."""

from __future__ import annotations

import fcntl
import os
import uuid
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from syndicate.storage._database import Database, create_database, upgrade

PG_ENV = "SYNDICATE_TEST_DATABASE_URL"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """An empty database's URL: a SQLite file in tmp_path, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'var' / 'syndicate.db'}"
        return
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"PostgreSQL: {PG_ENV} is not set (make test sets it when a server answers on 127.0.0.1:5432)")
    schema = f"test_{uuid.uuid4().hex[:16]}"
    admin = create_engine(base)
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    """A migrated database, closed after the test."""
    db = create_database(database_url)
    upgrade(db)
    try:
        yield db
    finally:
        db.close()



class _RunLock:
    """A readers-writer lock between the xdist workers of one run, on two files: every test holds
    `main` shared, a `timing` test holds it exclusive. A worker waiting for it exclusive holds
    `turn`, which every test passes through first, so the other worker's next test waits for the
    timing test instead of starving it."""

    def __init__(self, folder: Path) -> None:
        self.turn = os.open(folder / "turn.lock", os.O_RDWR | os.O_CREAT, 0o600)
        self.main = os.open(folder / "main.lock", os.O_RDWR | os.O_CREAT, 0o600)

    @contextmanager
    def hold(self, exclusive: bool) -> Generator[None, None, None]:
        fcntl.flock(self.turn, fcntl.LOCK_EX)
        try:
            fcntl.flock(self.main, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        finally:
            fcntl.flock(self.turn, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(self.main, fcntl.LOCK_UN)


_RUN_LOCK = pytest.StashKey[_RunLock]()


def pytest_configure(config: pytest.Config) -> None:
    workerinput = getattr(config, "workerinput", None)  # set in an xdist worker only
    if workerinput is not None and workerinput["workercount"] > 1 and config.option.basetemp:
        # xdist gives each worker a basetemp inside the run's own: the folder they share
        config.stash[_RUN_LOCK] = _RunLock(Path(config.option.basetemp).parent)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, object]:
    """Setup, call and teardown of a test (module fixtures included) inside the run lock, when there is one."""
    lock = item.config.stash.get(_RUN_LOCK, None)
    if lock is None:
        return (yield)
    with lock.hold(exclusive=item.get_closest_marker("timing") is not None):
        return (yield)
