"""Storage: the database engine (SQLite or PostgreSQL), its tables (`schema`) and migrations run from code.

SQLAlchemy and Alembic (half a second to import) load with the first name here that needs them:
a `syndicate build` whose archive has nothing new asks only `database_stamp`, and never does.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from syndicate.storage._stamp import database_stamp

if TYPE_CHECKING:
    from syndicate.storage import schema
    from syndicate.storage._database import (
        Database,
        DatabaseError,
        DatabaseUnavailableError,
        create_database,
        current_revision,
        head_revision,
        open_database,
        upgrade,
    )

_DATABASE = ("Database", "DatabaseError", "DatabaseUnavailableError", "create_database", "current_revision", "head_revision",
             "open_database", "upgrade")

__all__ = [
    "Database", "DatabaseError", "DatabaseUnavailableError", "create_database", "current_revision", "database_stamp",
    "head_revision", "open_database", "schema", "upgrade",
]


def __getattr__(name: str) -> Any:
    if name == "schema":
        return importlib.import_module("syndicate.storage.schema")
    if name in _DATABASE:
        return getattr(importlib.import_module("syndicate.storage._database"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
