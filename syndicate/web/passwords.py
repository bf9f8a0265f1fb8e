"""Console users' passwords: argon2id hashes (argon2-cffi is imported here only)."""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from syndicate.config import AdminUser

_HASHER = PasswordHasher()
# Verified when the name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY = _HASHER.hash("not a password of anybody")


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def check_user(users: Sequence[AdminUser], name: str, password: str) -> str | None:
    """`name` when it is a configured user and `password` theirs, else None (in about the same time)."""
    found = next((u for u in users if hmac.compare_digest(u.name.encode(), name.encode())), None)
    try:
        _HASHER.verify(found.password_hash if found else _DUMMY, password)
    except (VerificationError, InvalidHashError):
        return None
    return found.name if found else None
