"""`syndicate suppressions ...`: the addresses and domains that never get mail."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from syndicate.cli import AppContext, pass_app
from syndicate.storage import open_database
from syndicate.subscribers import SuppressionList


def _now() -> datetime:
    return datetime.now(UTC)


@click.group("suppressions")
def suppressions() -> None:
    """Addresses and whole domains that never get mail: add, remove, list, import, export."""


@suppressions.command("add")
@click.argument("entries", nargs=-1, required=True)
@click.option("--reason", default="added by the operator", show_default=True)
@pass_app
def add(app: AppContext, entries: tuple[str, ...], reason: str) -> None:
    """Suppress each ENTRY: user@example.com (an address) or @example.com / example.com (a domain and its subdomains)."""
    database = open_database(app.settings.database)
    try:
        listing = SuppressionList(database)
        for entry in entries:
            added = listing.add(entry, reason=reason, source="operator", now=_now())
            click.echo(f"{'suppressed' if added else 'already suppressed'}: {entry.strip()}")
    finally:
        database.close()


@suppressions.command("remove")
@click.argument("entries", nargs=-1, required=True)
@pass_app
def remove(app: AppContext, entries: tuple[str, ...]) -> None:
    """Lift the suppression of each ENTRY."""
    database = open_database(app.settings.database)
    missing = []
    try:
        listing = SuppressionList(database)
        for entry in entries:
            if listing.remove(entry):
                click.echo(f"removed: {entry.strip()}")
            else:
                missing.append(entry.strip())
    finally:
        database.close()
    if missing:
        raise click.ClickException(f"not suppressed: {', '.join(missing)}")


@suppressions.command("list")
@click.option("--kind", type=click.Choice(["address", "domain"]), default=None)
@pass_app
def list_command(app: AppContext, kind: str | None) -> None:
    """Every suppressed address and domain, with why and since when."""
    database = open_database(app.settings.database)
    try:
        rows = list(SuppressionList(database).iter_all(kind=kind))
    finally:
        database.close()
    if not rows:
        click.echo("The suppression list is empty.")
    for row in rows:
        value = row.value if row.kind == "address" else "@" + row.value
        click.echo(f"{value}\t{row.source}\t{row.created_at:%Y-%m-%d %H:%M}\t{row.reason}")


@suppressions.command("import")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path, allow_dash=True))
@click.option("--reason", default="imported", show_default=True)
@pass_app
def import_command(app: AppContext, path: Path, reason: str) -> None:
    """One address or domain per line (or the first column of a CSV); '-' reads standard input."""
    try:
        if str(path) == "-":
            text = sys.stdin.read()
        else:
            text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise click.ClickException(f"{path}: cannot read: {e}") from None
    database = open_database(app.settings.database)
    try:
        added, problems = SuppressionList(database).import_entries(text.splitlines(), reason=reason, source="import", now=_now())
    finally:
        database.close()
    for problem in problems:
        click.echo(f"{path}: {problem}", err=True)
    click.echo(f"suppressed {added} new entries; {len(problems)} lines refused")
    if problems:
        raise SystemExit(1)


@suppressions.command("export")
@pass_app
def export(app: AppContext) -> None:
    """Print the list as CSV (value, kind, source, created_at, reason) for import elsewhere."""
    import csv

    database = open_database(app.settings.database)
    try:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["value", "kind", "source", "created_at", "reason"])
        for row in SuppressionList(database).iter_all():
            writer.writerow([row.value if row.kind == "address" else "@" + row.value, row.kind, row.source,
                             row.created_at.isoformat(), row.reason])
    finally:
        database.close()
