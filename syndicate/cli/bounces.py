"""`syndicate bounces ...`: receive a message from the MTA (pipe), list and show recorded events, revert a change."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

import click

from syndicate.bounces import EVENT_KINDS, BounceEvents
from syndicate.cli import AppContext, pass_app
from syndicate.cli._output import json_option, print_json
from syndicate.errors import SyndicateError
from syndicate.wiring import Components

log = logging.getLogger(__name__)

EX_OK, EX_TEMPFAIL = 0, 75  # sysexits.h: what Postfix's pipe and Exim's transports understand
_CHUNK = 1 << 20


def _now() -> datetime:
    return datetime.now(UTC)


def parse_since(text: str, now: datetime) -> datetime:
    """`7d`, `12h`, `30m` before now, or an ISO date/time (UTC when it has no offset)."""
    value = text.strip().lower()
    units = {"d": "days", "h": "hours", "m": "minutes"}
    if value[-1:] in units and value[:-1].isdigit():
        return now - timedelta(**{units[value[-1]]: int(value[:-1])})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.BadParameter(f"expected 7d, 12h, 30m or an ISO date, got {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@click.group("bounces")
def bounces() -> None:
    """Bounces, complaints and unsubscribe mail: receive (pipe), list, show, revert."""


@bounces.command("receive")
@click.option("--recipient", default=None,
              help="The envelope recipient (Postfix pipe: ${original_recipient}); default $ORIGINAL_RECIPIENT or $RECIPIENT.")
@pass_app
def receive(app: AppContext, recipient: str | None) -> None:
    """Read one message on standard input and record it. Exit 0 when taken, 75 (try again later) when not."""
    try:
        settings = app.settings
        limit = settings.bounces.max_message_bytes
        stream = sys.stdin.buffer
        raw = stream.read(limit)
        dropped = 0
        while chunk := stream.read(_CHUNK):  # bounded memory: the rest is counted, not kept
            dropped += len(chunk)
        if not raw.strip():
            click.echo("error: no message on standard input", err=True)
            sys.exit(EX_OK)  # retrying an empty message would never succeed
        envelope = recipient or os.environ.get("ORIGINAL_RECIPIENT") or os.environ.get("RECIPIENT")
        components = Components(settings)
        try:
            outcome = components.bounces.receive_message(
                raw, source="pipe", now=_now(), envelope_recipient=envelope, keep_unrecognised=True, dropped=dropped)
        finally:
            components.close()
    except SystemExit:
        raise
    except SyndicateError as e:
        click.echo(f"error: {e} (the MTA will try again)", err=True)
        sys.exit(EX_TEMPFAIL)
    except Exception as e:  # any failure: the MTA keeps the message and retries; nothing is lost
        log.exception("bounce receive failed")
        click.echo(f"error: {type(e).__name__}: {e} (the MTA will try again)", err=True)
        sys.exit(EX_TEMPFAIL)
    click.echo(f"{outcome.action} kind={outcome.kind} event={outcome.event_id or '-'} "
               f"subscriber={outcome.subscriber_id or '-'} delivery={outcome.delivery_id or '-'}")
    sys.exit(EX_OK)


@bounces.command("list")
@click.option("--kind", type=click.Choice(EVENT_KINDS), default=None)
@click.option("--since", default=None, help="7d, 12h, 30m or an ISO date.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@json_option
@pass_app
def list_command(app: AppContext, kind: str | None, since: str | None, limit: int, as_json: bool) -> None:
    """Recorded events, newest first."""
    components = Components(app.settings)
    try:
        events = BounceEvents(components.database).list(kind=kind, since=parse_since(since, _now()) if since else None, limit=limit)
    finally:
        components.close()
    if as_json:  # the raw messages stay out of the listing (`bounces show ID` has them)
        print_json([{k: v for k, v in asdict(e).items() if k != "raw"} for e in events])
        return
    if not events:
        click.echo("No bounce events.")
        return
    click.echo(f"{'id':>6}  {'received (UTC)':<16}  {'kind':<11}  {'source':<8}  {'status':<12}  {'subscriber':>10}  recipient")
    for e in events:
        click.echo(f"{e.id:>6}  {e.received_at:%Y-%m-%d %H:%M}  {e.kind:<11}  {e.source:<8}  {(e.status_code or '-'):<12}  "
                   f"{(e.subscriber_id or '-')!s:>10}  {e.recipient or '-'}")


@bounces.command("show")
@click.argument("event_id", type=int)
@click.option("--no-raw", is_flag=True, help="Leave out the raw message.")
@pass_app
def show(app: AppContext, event_id: int, no_raw: bool) -> None:
    """One event with its raw message or payload."""
    components = Components(app.settings)
    try:
        event = BounceEvents(components.database).get(event_id)
    finally:
        components.close()
    if event is None:
        raise click.ClickException(f"no bounce event with id {event_id}")
    for key, value in (
        ("id", event.id), ("received", f"{event.received_at:%Y-%m-%d %H:%M:%S} UTC"), ("kind", event.kind),
        ("source", event.source), ("read by", event.method), ("delivery", event.delivery_id or "-"),
        ("subscriber", event.subscriber_id or "-"), ("recipient", event.recipient or "-"),
        ("status", event.status_code or "-"), ("diagnostic", event.diagnostic or "-"),
    ):
        click.echo(f"{key + ':':<12}{value}")
    if event.truncated:
        click.echo(f"{'truncated:':<12}{event.truncated} bytes beyond [bounces] max_message_bytes were not kept")
    if not no_raw:
        click.echo("")
        click.echo(event.raw.decode("utf-8", "replace"))


@bounces.command("revert")
@click.argument("change_id", type=int)
@pass_app
def revert(app: AppContext, change_id: int) -> None:
    """Undo the status change CHANGE_ID made by a bounce or complaint (see `subscribers show`), lifting its suppression."""
    components = Components(app.settings)
    try:
        change = components.bounces.revert(change_id, _now())
    finally:
        components.close()
    click.echo(f"reverted change {change.id}: subscriber {change.subscriber_id} is {change.from_status} again")
