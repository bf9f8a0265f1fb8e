"""`syndicate subscribers ...`: add, import, export, list, show, change and remove subscribers."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import click

from syndicate.cli import AppContext, pass_app
from syndicate.config import Settings
from syndicate.errors import MissingSecretError
from syndicate.subscribers import (
    WEEKDAYS,
    Filter,
    Frequency,
    StoredSubscriber,
    Subscriber,
    SubscriberStatus,
    SubscriberStore,
    import_csv,
    new_subscriber,
    split_categories,
    write_subscribers,
)
from syndicate.wiring import Components, load_corpus

FREQUENCIES = click.Choice([f.value for f in Frequency])
STATUSES = click.Choice([s.value for s in SubscriberStatus])
HOURS = click.IntRange(0, 23)


def valid_categories(settings: Settings) -> set[str]:
    """Category slugs a subscriber may choose: those in the content plus those in the config."""
    corpus = load_corpus(settings)
    return {c.slug for c in corpus.categories} | set(settings.categories)


@contextmanager
def open_store(settings: Settings) -> Iterator[SubscriberStore]:
    components = Components(settings)
    try:
        yield components.store
    finally:
        components.close()


def _now() -> datetime:
    return datetime.now(UTC)


def _local(value: datetime | None, timezone: str) -> str:
    if value is None:
        return "-"
    return f"{value:%Y-%m-%d %H:%M} UTC ({value.astimezone(ZoneInfo(timezone)):%a %H:%M} {timezone})"


@click.group("subscribers")
def subscribers() -> None:
    """Manage subscribers: add, import, export, list, show, set, confirm, unsubscribe, remove."""


@subscribers.command("add")
@click.argument("email")
@click.option("--name", default=None, help="Display name.")
@click.option("--categories", required=True, help="Category slugs, comma-separated.")
@click.option("--frequency", type=FREQUENCIES, default=None, help="daily or weekly (default from [digest]).")
@click.option("--timezone", default=None, help="IANA timezone (default from [digest] or [site]).")
@click.option("--send-hour", type=HOURS, default=None, help="Local hour 0-23 to send the digest.")
@click.option("--weekday", type=click.Choice(WEEKDAYS), default=None, help="Day of weekly digests.")
@click.option("--confirmed", is_flag=True, help="Active at once (the address owner already opted in).")
@pass_app
def add(app: AppContext, email: str, name: str | None, categories: str, frequency: str | None,
        timezone: str | None, send_hour: int | None, weekday: str | None, confirmed: bool) -> None:
    """Add EMAIL, pending confirmation unless --confirmed."""
    settings = app.settings
    with open_store(settings) as store:
        new = new_subscriber(
            email, name=name, categories=split_categories(categories), valid_categories=valid_categories(settings),
            defaults=store.defaults, frequency=frequency, timezone=timezone, send_hour=send_hour, weekday=weekday,
            addresses=Components(settings, database=store.database).addresses,
        )
        subscriber = store.add(new, now=_now(), confirmed=confirmed, source="cli")
        click.echo(f"added {subscriber.email} ({subscriber.status.value}): {', '.join(subscriber.categories)}")
        if not confirmed:
            _mail_confirmation(settings, store, subscriber)


def _mail_confirmation(settings: Settings, store: SubscriberStore, subscriber: Subscriber) -> None:
    """Send the double opt-in email; the subscriber stays added (pending) whatever happens to it."""
    try:
        mailed = Components(settings, database=store.database).confirmations.send(subscriber, now=_now())
    except MissingSecretError as e:
        click.echo(f"warning: confirmation email not sent: {e} ({e.hint})", err=True)
        return
    if mailed:
        click.echo(f"confirmation email sent to {subscriber.email}", err=True)
    else:
        click.echo(f"warning: confirmation email not sent: {subscriber.email} got too many this hour", err=True)


@subscribers.command("import")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--confirmed", is_flag=True, help="Import as active (the addresses already opted in).")
@click.option("--dry-run", is_flag=True, help="Check every row and report, without writing.")
@click.pass_context
@pass_app
def import_command(app: AppContext, ctx: click.Context, file: Path, confirmed: bool, dry_run: bool) -> None:
    """Import FILE (CSV: email, name, categories, frequency, timezone, send_hour, weekday; only email required).

    Addresses already present are left unchanged; an unsubscribed address is never re-subscribed.
    """
    settings = app.settings
    with open_store(settings) as store:
        report = import_csv(
            store, file, valid_categories=valid_categories(settings), now=_now(), confirmed=confirmed, dry_run=dry_run,
            addresses=Components(settings, database=store.database).addresses,
        )
    for problem in report.problems:
        click.echo(f"error: {problem}", err=True)
    verb = "would add" if dry_run else "added"
    click.echo(
        f"{file}: {verb} {report.added}, already present {report.unchanged}, "
        f"opted out (left unsubscribed) {report.opted_out}, refused {len(report.problems)}"
    )
    if report.problems:
        ctx.exit(1)


@subscribers.command("export")
@click.option("--status", type=STATUSES, default=None, help="Only subscribers with this status.")
@pass_app
def export(app: AppContext, status: str | None) -> None:
    """Write subscribers as CSV on stdout (the import's columns plus status and timestamps)."""
    with open_store(app.settings) as store:
        where = Filter(status=SubscriberStatus(status) if status else None)
        write_subscribers(store.iter_subscribers(where), sys.stdout)


@subscribers.command("list")
@click.option("--status", type=STATUSES, default=None)
@click.option("--category", default=None, help="Only subscribers of this category slug.")
@click.option("--frequency", type=FREQUENCIES, default=None)
@pass_app
def list_command(app: AppContext, status: str | None, category: str | None, frequency: str | None) -> None:
    """A table of subscribers."""
    where = Filter(
        status=SubscriberStatus(status) if status else None,
        category=category,
        frequency=Frequency(frequency) if frequency else None,
    )
    count = 0
    with open_store(app.settings) as store:
        click.echo(f"{'ID':>6}  {'EMAIL':<32} {'STATUS':<12} {'FREQ':<6} {'HOUR':>4} {'TIMEZONE':<20} CATEGORIES")
        for stored in store.iter_subscribers(where):
            s = stored.subscriber
            click.echo(
                f"{s.id:>6}  {s.email:<32} {s.status.value:<12} {s.frequency.value:<6} {s.send_hour:>4} "
                f"{s.timezone:<20} {','.join(s.categories)}"
            )
            count += 1
    click.echo(f"{count} subscriber{'' if count == 1 else 's'}")


def _describe(stored: StoredSubscriber) -> list[tuple[str, str]]:
    s = stored.subscriber
    return [
        ("email", s.email),
        ("name", s.name or "-"),
        ("status", f"{s.status.value} since {s.status_changed_at:%Y-%m-%d %H:%M} UTC"),
        ("categories", ", ".join(s.categories) or "(all)"),
        ("frequency", s.frequency.value + (f" on {WEEKDAYS[s.weekday].title()}" if s.frequency is Frequency.WEEKLY else "")),
        ("timezone", s.timezone),
        ("send hour", f"{s.send_hour:02d}:00 local"),
        ("next digest", _local(stored.next_send_at, s.timezone)),
        ("high water", _local(s.high_water, s.timezone)),
        ("source", f"{s.source} on {s.created_at:%Y-%m-%d %H:%M} UTC"),
        ("confirmed", _local(stored.confirmed_at, s.timezone)),
        ("unsubscribed", _local(stored.unsubscribed_at, s.timezone)),
    ]


@subscribers.command("show")
@click.argument("email")
@pass_app
def show(app: AppContext, email: str) -> None:
    """Everything stored about EMAIL."""
    with open_store(app.settings) as store:
        stored = store.details(store.get_by_email(email).id)
    for key, value in _describe(stored):
        click.echo(f"{key + ':':<14}{value}")


@subscribers.command("set")
@click.argument("email")
@click.option("--name", default=None)
@click.option("--categories", default=None, help="Category slugs, comma-separated (replaces the current ones).")
@click.option("--frequency", type=FREQUENCIES, default=None)
@click.option("--timezone", default=None)
@click.option("--send-hour", type=HOURS, default=None)
@click.option("--weekday", type=click.Choice(WEEKDAYS), default=None)
@pass_app
def set_command(app: AppContext, email: str, name: str | None, categories: str | None, frequency: str | None,
                timezone: str | None, send_hour: int | None, weekday: str | None) -> None:
    """Change the preferences of EMAIL (only the options given)."""
    settings = app.settings
    with open_store(settings) as store:
        current = store.get_by_email(email)
        subscriber = store.set_preferences(
            current.id, now=_now(),
            valid_categories=valid_categories(settings) if categories is not None else (),
            categories=split_categories(categories) if categories is not None else None,
            frequency=frequency, timezone=timezone, send_hour=send_hour, weekday=weekday, name=name,
        )
    click.echo(f"updated {subscriber.email}: {subscriber.frequency.value} at {subscriber.send_hour:02d}:00 "
               f"{subscriber.timezone}, {', '.join(subscriber.categories) or '(all)'}")


@subscribers.command("confirm")
@click.argument("email")
@pass_app
def confirm(app: AppContext, email: str) -> None:
    """Mark a pending EMAIL as confirmed (active)."""
    with open_store(app.settings) as store:
        subscriber = store.confirm(store.get_by_email(email).id, _now())
    click.echo(f"{subscriber.email}: {subscriber.status.value}")


@subscribers.command("unsubscribe")
@click.argument("email")
@pass_app
def unsubscribe(app: AppContext, email: str) -> None:
    """Unsubscribe EMAIL; the record stays as proof of the opt-out."""
    with open_store(app.settings) as store:
        subscriber = store.unsubscribe(store.get_by_email(email).id, _now())
    click.echo(f"{subscriber.email}: unsubscribed (since {subscriber.status_changed_at:%Y-%m-%d %H:%M} UTC)")


@subscribers.command("remove")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def remove(app: AppContext, email: str, yes: bool) -> None:
    """Delete EMAIL and everything about it (erasure on request)."""
    with open_store(app.settings) as store:
        subscriber = store.get_by_email(email)
        if not yes:
            click.confirm(f"Delete {subscriber.email} and all its data for good?", abort=True)
        store.remove(subscriber.id)
    click.echo(f"{subscriber.email}: removed")
