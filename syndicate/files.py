"""Writes output files atomically, and only when their bytes change.

A file is written to a temporary file in its own folder and renamed over the old
one, so a reader sees the old bytes or the new bytes, never half of them. A file
whose bytes are already right is not touched, so its modification time (and the
HTTP validators derived from it) stays.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

FILE_MODE = 0o644  # temporary files are created 0600; published files are world-readable


def write_atomic(path: Path, data: bytes, *, durable: bool = False) -> bool:
    """Make `path` hold exactly `data`; True when it was (re)written, False when it already did.

    `durable` also flushes the bytes to disk before the rename (slower; survives a power cut).
    """
    return publish(path, data, durable=durable)[0]


def publish(path: Path, data: bytes, *, durable: bool = False) -> tuple[bool, os.stat_result]:
    """`write_atomic`, also returning the file's stat afterwards (size and mtime, for build manifests)."""
    try:
        current = os.stat(path)
        if current.st_size == len(data) and path.read_bytes() == data:
            return False, current
    except FileNotFoundError:
        pass
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = _create(temporary)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), FILE_MODE)
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
            written = os.fstat(f.fileno())  # a rename keeps size and mtime
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    return True, written


def _create(temporary: Path) -> int:
    """A new, empty file at `temporary`, creating its folder if needed; a stale one from a crash is replaced."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        return os.open(temporary, flags, FILE_MODE)
    except FileNotFoundError:
        temporary.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        temporary.unlink()
    return os.open(temporary, flags, FILE_MODE)


def remove_file(path: Path, *, stop: Path) -> bool:
    """Remove `path` if it exists, then every folder above it that became empty, up to `stop`
    (excluded). True when a file was removed."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    folder = path.parent
    while folder != stop and stop in folder.parents:
        try:
            folder.rmdir()
        except OSError:  # not empty (or gone): stop climbing
            break
        folder = folder.parent
    return True
