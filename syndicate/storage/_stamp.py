"""What tells a SQLite database's content apart without opening it (no SQLAlchemy to import)."""

from __future__ import annotations

import os

from syndicate.config import DatabaseSettings

_SQLITE = "sqlite:///"


def database_stamp(settings: DatabaseSettings) -> tuple[tuple[int, int, int] | None, ...] | None:
    """The identity, size and modification time of a SQLite database file and of its write-ahead
    log: any committed write changes one of them (a checkpoint, which writes nothing new, may too).
    `()` when the file does not exist (nothing was ever written to it); None when there is no such
    cheap sign: a server database, an in-memory one, a URL with options."""
    url = settings.url
    if not url.startswith(_SQLITE) or "?" in url:
        return None
    path = url[len(_SQLITE):]
    if not path or path == ":memory:":
        return None
    found = _stat(path)
    return (found, _stat(path + "-wal")) if found is not None else ()


def _stat(path: str) -> tuple[int, int, int] | None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns
