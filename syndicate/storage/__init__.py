"""Storage: the database engine (SQLite or PostgreSQL), its tables (`schema`) and migrations run from code."""

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

__all__ = [
    "Database", "DatabaseError", "DatabaseUnavailableError", "create_database", "current_revision", "head_revision", "open_database",
    "schema", "upgrade",
]
