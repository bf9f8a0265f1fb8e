"""`syndicate db ...`: migrate the database and show its version."""

from __future__ import annotations

import click

from syndicate.cli import AppContext, pass_app
from syndicate.storage import create_database, current_revision, head_revision, upgrade


@click.group("db")
def db() -> None:
    """The database: migrations and version."""


@db.command("upgrade")
@pass_app
def upgrade_command(app: AppContext) -> None:
    """Migrate the configured database to this version of syndicate."""
    settings = app.settings
    with create_database(settings.database.url, echo=settings.database.echo,
                         busy_timeout=settings.database.busy_timeout) as database:
        before, after = upgrade(database)
        if before == after:
            click.echo(f"{database.url}: already at migration {after}")
        else:
            click.echo(f"{database.url}: migrated from {before or 'an empty database'} to {after}")


@db.command("status")
@pass_app
def status_command(app: AppContext) -> None:
    """Show the database's migration and the newest one this code knows."""
    settings = app.settings
    with create_database(settings.database.url, busy_timeout=settings.database.busy_timeout) as database:
        current = current_revision(database)
        head = head_revision()
        state = "up to date" if current == head else "needs `syndicate db upgrade`" if current else "empty"
        click.echo(f"{database.url}: at {current or 'nothing'}, code at {head} ({state})")
