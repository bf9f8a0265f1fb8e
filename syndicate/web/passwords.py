"""Console users' passwords: argon2id hashes (argon2-cffi is imported here only)."""

from __future__ import annotations

import functools
import hmac
from collections.abc import Sequence

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from syndicate.config import AdminUser

_HASHER = PasswordHasher()


@functools.cache
def _dummy() -> str:
    """Verified when the name is unknown, so a wrong name costs as long as a wrong password. Made
    at the first check, not at import: an argon2id hash is ~0.2 s of CPU and 64 MB of memory, which
    every process importing the web package (the service, `syndicate admin`) paid at start."""
    return _HASHER.hash("not a password of anybody")


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def check_user(users: Sequence[AdminUser], name: str, password: str) -> str | None:
    """`name` when it is a configured user and `password` theirs, else None (in about the same time)."""
    dummy = _dummy()  # made before the names are compared: the first check costs the same either way
    found = next((u for u in users if hmac.compare_digest(u.name.encode(), name.encode())), None)
    try:
        _HASHER.verify(found.password_hash if found else dummy, password)
    except (VerificationError, InvalidHashError):
        return None
    return found.name if found else None
