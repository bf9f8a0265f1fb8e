"""Writes output files atomically, and only when their bytes change.

A file is written to a temporary file in its own folder and renamed over the old
one, so a reader sees the old bytes or the new bytes, never half of them. A file
whose bytes are already right is not touched, so its modification time (and the
HTTP validators derived from it) stays.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

FILE_MODE = 0o644  # temporary files are created 0600; published files are world-readable


def write_atomic(path: Path, data: bytes, *, durable: bool = False) -> bool:
    """Make `path` hold exactly `data`; True when it was (re)written, False when it already did.

    `durable` also flushes the bytes to disk before the rename (slower; survives a power cut).
    """
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(temporary, FILE_MODE)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    return True


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
