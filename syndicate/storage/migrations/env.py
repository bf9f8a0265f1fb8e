"""Alembic environment: runs on the connection syndicate.storage._database hands over (or a URL for development).

For writing a new migration against a scratch database:
    python -m alembic -c syndicate/migrations/alembic.ini -x url=sqlite:///var/dev.db revision --autogenerate -m "..."
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from syndicate.storage.schema import metadata


def run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("pass -x url=DATABASE_URL")
    engine = create_engine(url)
    with engine.begin() as conn:
        run(conn)
    engine.dispose()
