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


def write_atomic(path: str | os.PathLike[str], data: bytes, *, durable: bool = False) -> bool:
    """Make `path` hold exactly `data`; True when it was (re)written, False when it already did.

    `durable` also flushes the bytes to disk before the rename (slower; survives a power cut).
    """
    return publish(path, data, durable=durable)[0]


def publish(path: str | os.PathLike[str], data: bytes, *, durable: bool = False,
            absent: bool = False) -> tuple[bool, os.stat_result]:
    """`write_atomic`, also returning the file's stat afterwards (size and mtime, for build manifests).

    `absent`: the caller knows the file does not exist yet (a build into a new folder), so
    its folder is made first and nothing is compared. Plain `os` calls on strings: a cold
    build publishes 10,000 pages, and pathlib and file objects cost as much as the system
    calls themselves.
    """
    target = os.fspath(path)
    folder, name = os.path.split(target)
    if absent:
        try:
            os.mkdir(folder)
        except FileExistsError:
            pass
        except FileNotFoundError:
            os.makedirs(folder, exist_ok=True)
    else:
        try:
            current = os.stat(target)
        except FileNotFoundError:
            pass
        else:
            if current.st_size == len(data) and _read(target) == data:
                return False, current
    temporary = os.path.join(folder, f".{name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = _create(temporary, folder)
    try:
        try:
            os.fchmod(fd, FILE_MODE)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if durable:
                os.fsync(fd)
            written = os.fstat(fd)  # a rename keeps size and mtime
        finally:
            os.close(fd)
        os.replace(temporary, target)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    return True, written


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _create(temporary: str, folder: str) -> int:
    """A new, empty file at `temporary`, creating its folder if needed; a stale one from a crash is replaced."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        return os.open(temporary, flags, FILE_MODE)
    except FileNotFoundError:
        os.makedirs(folder, exist_ok=True)
    except FileExistsError:
        os.unlink(temporary)
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
