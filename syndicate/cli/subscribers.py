"""`syndicate subscribers ...`: add, import, export, list, show, change and remove subscribers."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import click

from syndicate.audit import AuditLog
from syndicate.cli import AppContext, pass_app
from syndicate.cli._output import confirm as confirm_or_refuse
from syndicate.cli._output import json_option, print_fields, print_json, print_table
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
    import_confirmed_csv,
    import_csv,
    new_subscriber,
    restore_csv,
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


def _audit(store: SubscriberStore, action: str, subscriber_id: int, detail: str = "") -> None:
    """The subscriber's history (shown in the console) records what the CLI changed."""
    AuditLog(store.database).record(_now(), "cli", action, "subscriber", subscriber_id, detail)


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
@click.option("--confirmed", is_flag=True,
              help="Import as active (the addresses already opted in); rows the file says are pending stay pending.")
@click.option("--restore", is_flag=True,
              help="FILE is a backup (an export): every row comes back as it was (status, source, times).")
@click.option("--dry-run", is_flag=True, help="Check every row and report, without writing.")
@click.pass_context
@pass_app
def import_command(app: AppContext, ctx: click.Context, file: Path, confirmed: bool, restore: bool, dry_run: bool) -> None:
    """Import FILE (CSV: email, name, categories, frequency, timezone, send_hour, weekday; only email required).

    Addresses already present are left unchanged; an unsubscribed address is never re-subscribed.
    With --restore, FILE is an export: pending rows stay pending, unsubscribed ones stay
    unsubscribed with the time of their opt-out, active ones stay active with their confirmation time.
    """
    if restore and confirmed:
        raise click.UsageError("--restore takes each row's status from the file: --confirmed does not apply")
    settings = app.settings
    with open_store(settings) as store:
        categories, now = valid_categories(settings), _now()
        rules = Components(settings, database=store.database).addresses
        if restore:
            report = restore_csv(store, file, valid_categories=categories, now=now, dry_run=dry_run, addresses=rules)
        elif confirmed:
            report = import_confirmed_csv(store, file, valid_categories=categories, now=now, dry_run=dry_run, addresses=rules)
        else:
            report = import_csv(store, file, valid_categories=categories, now=now, dry_run=dry_run, addresses=rules)
    for problem in report.problems:
        click.echo(f"error: {problem}", err=True)
    verb = "would add" if dry_run else ("restored" if restore else "added")
    opted_out = (f"{'would restore' if dry_run else 'restored'} as opted out {report.opted_out}" if restore
                 else f"opted out (left unsubscribed) {report.opted_out}")
    click.echo(f"{file}: {verb} {report.added}, already present {report.unchanged}, {opted_out}, refused {len(report.problems)}")
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
@json_option
@pass_app
def list_command(app: AppContext, status: str | None, category: str | None, frequency: str | None, as_json: bool) -> None:
    """A table of subscribers (tab-separated lines when piped; --json for scripts)."""
    where = Filter(
        status=SubscriberStatus(status) if status else None,
        category=category,
        frequency=Frequency(frequency) if frequency else None,
    )
    with open_store(app.settings) as store:
        found = list(store.iter_subscribers(where))
    if as_json:
        print_json([subscriber_record(stored) for stored in found])
        return
    rows = [
        (s.id, s.email, s.status.value, s.frequency.value, f"{s.send_hour:02d}:00", s.timezone, categories_text(s.categories))
        for s in (stored.subscriber for stored in found)
    ]
    print_table(None, ("id", "email", "status", "frequency", "send hour", "timezone", "categories"), rows,
                empty="No subscribers match.", right=("id",))
    click.echo(f"{len(rows)} subscriber{'' if len(rows) == 1 else 's'}", err=True)


def categories_text(categories: tuple[str, ...]) -> str:
    """The same words in `list` and `show`: no category chosen means every one."""
    return ", ".join(categories) or "(all)"


def subscriber_record(stored: StoredSubscriber) -> dict[str, object]:
    """A subscriber for --json: the same fields as the API's."""
    s = stored.subscriber
    return {
        "id": s.id, "email": s.email, "name": s.name, "status": s.status.value, "categories": list(s.categories),
        "frequency": s.frequency.value, "timezone": s.timezone, "send_hour": s.send_hour, "weekday": WEEKDAYS[s.weekday],
        "source": s.source, "created_at": s.created_at, "status_changed_at": s.status_changed_at,
        "next_send_at": stored.next_send_at, "confirmed_at": stored.confirmed_at, "unsubscribed_at": stored.unsubscribed_at,
        "high_water": s.high_water,
    }


def _describe(stored: StoredSubscriber) -> list[tuple[str, str]]:
    s = stored.subscriber
    return [
        ("email", s.email),
        ("name", s.name or "-"),
        ("status", f"{s.status.value} since {s.status_changed_at:%Y-%m-%d %H:%M} UTC"),
        ("categories", categories_text(s.categories)),
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
@json_option
@pass_app
def show(app: AppContext, email: str, as_json: bool) -> None:
    """Everything stored about EMAIL."""
    with open_store(app.settings) as store:
        stored = store.details(store.get_by_email(email).id)
        changes = store.changes(stored.subscriber.id)
    if as_json:
        print_json(subscriber_record(stored))
        return
    fields = list(_describe(stored))
    for change in changes:  # made by bounces and complaints (#13); `syndicate bounces revert ID` undoes one
        undone = f" (reverted {change.reverted_at:%Y-%m-%d %H:%M} UTC)" if change.reverted_at else ""
        fields.append((f"change {change.id}", f"{change.from_status} -> {change.to_status} on "
                       f"{change.changed_at:%Y-%m-%d %H:%M} UTC by event {change.event_id or '-'}: {change.reason}{undone}"))
    print_fields(fields)


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
    if all(v is None for v in (name, categories, frequency, timezone, send_hour, weekday)):
        raise click.UsageError("nothing to change: give at least one of --name, --categories, --frequency, "
                               "--timezone, --send-hour, --weekday")
    settings = app.settings
    with open_store(settings) as store:
        current = store.get_by_email(email)
        subscriber = store.set_preferences(
            current.id, now=_now(),
            valid_categories=valid_categories(settings) if categories is not None else (),
            categories=split_categories(categories) if categories is not None else None,
            frequency=frequency, timezone=timezone, send_hour=send_hour, weekday=weekday, name=name,
        )
        if subscriber != current:
            _audit(store, "subscriber.edit", subscriber.id)
    verb = "unchanged" if subscriber == current else "updated"
    click.echo(f"{verb} {subscriber.email}: {subscriber.frequency.value} at {subscriber.send_hour:02d}:00 "
               f"{subscriber.timezone}, {categories_text(subscriber.categories)}")


@subscribers.command("confirm")
@click.argument("email")
@pass_app
def confirm(app: AppContext, email: str) -> None:
    """Mark a pending EMAIL as confirmed (active)."""
    with open_store(app.settings) as store:
        subscriber = store.confirm(store.get_by_email(email).id, _now())
        _audit(store, "subscriber.confirm", subscriber.id)
    click.echo(f"{subscriber.email}: {subscriber.status.value}")


@subscribers.command("unsubscribe")
@click.argument("email")
@pass_app
def unsubscribe(app: AppContext, email: str) -> None:
    """Unsubscribe EMAIL; the record stays as proof of the opt-out."""
    with open_store(app.settings) as store:
        subscriber = store.unsubscribe(store.get_by_email(email).id, _now())
        _audit(store, "subscriber.unsubscribe", subscriber.id)
    click.echo(f"{subscriber.email}: unsubscribed (since {subscriber.status_changed_at:%Y-%m-%d %H:%M} UTC)")


@subscribers.command("remove")
@click.argument("email")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (needed without a terminal).")
@pass_app
def remove(app: AppContext, email: str, yes: bool) -> None:
    """Delete EMAIL and everything about it (erasure on request)."""
    with open_store(app.settings) as store:
        subscriber = store.get_by_email(email)
        confirm_or_refuse(f"Delete {subscriber.email} and all its data for good?", yes=yes,
                          refusal=f"refusing to delete {subscriber.email} without confirmation")
        store.remove(subscriber.id)
        _audit(store, "subscriber.erase", subscriber.id)  # the id only: nothing personal is kept
    click.echo(f"{subscriber.email}: removed")
