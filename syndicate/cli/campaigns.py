"""`syndicate campaigns ...`: one-off messages (Markdown) to the active subscribers of some categories."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from syndicate.campaigns import VARIANTS, CampaignError, NewCampaign
from syndicate.cli import AppContext, pass_app
from syndicate.cli._output import confirm, json_option, print_json, print_table, run_progress
from syndicate.cli.subscribers import valid_categories
from syndicate.subscribers import split_categories
from syndicate.wiring import Components

CAMPAIGN_ID = click.IntRange(1, 2**31 - 1)


def _when(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time such as 2026-12-24T09:00+01:00", param_hint="--at") from None
    if moment.tzinfo is None:
        raise click.BadParameter(f"{value!r} needs a UTC offset, e.g. 2026-12-24T09:00+01:00", param_hint="--at")
    return moment


@click.group("campaigns")
def campaigns() -> None:
    """One-off messages: create, preview, test, send (now or at a time), list."""


@campaigns.command("create")
@click.option("--subject", required=True, help="The Subject line.")
@click.option("--body", "body_file", type=click.Path(dir_okay=False, exists=True, path_type=Path), required=True,
              help="A Markdown file ('-' is not accepted: keep the text you sent).")
@click.option("--categories", default="", help="Category slugs, comma-separated (default: every active subscriber).")
@click.option("--at", "send_at", default=None, metavar="TIME", help="Send at this time (ISO 8601 with offset); else a draft.")
@click.option("--variant", type=click.Choice(VARIANTS), default="letter", show_default=True,
              help="letter: a greeting, then the body; announcement: the subject as a heading.")
@pass_app
def create(app: AppContext, subject: str, body_file: Path, categories: str, send_at: str | None, variant: str) -> None:
    """Store a campaign (a draft, or scheduled with --at)."""
    settings = app.settings
    try:
        body = body_file.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise click.BadParameter(f"{body_file}: not UTF-8 text ({e.reason})", param_hint="--body") from None
    new = NewCampaign.checked(subject, body, split_categories(categories), valid_categories(settings), variant)
    components = Components(settings)
    try:
        campaign = components.campaigns.create(new, now=datetime.now(UTC), actor="cli", send_at=_when(send_at))
        audience = components.campaigns.audience_count(campaign)
    finally:
        components.close()
    when = f"scheduled for {campaign.send_at:%Y-%m-%d %H:%M %Z}" if campaign.send_at else "draft"
    click.echo(f"campaign {campaign.id} ({when}): {campaign.subject!r} to {audience} active "
               f"subscriber{'' if audience == 1 else 's'} of {', '.join(campaign.categories) or '(all)'}")


@campaigns.command("preview")
@click.argument("campaign_id", type=CAMPAIGN_ID)
@click.option("--subscriber", default=None, metavar="EMAIL", help="As this subscriber would get it.")
@click.option("--text", "as_text", is_flag=True, help="The text part instead of the HTML.")
@pass_app
def preview(app: AppContext, campaign_id: int, subscriber: str | None, as_text: bool) -> None:
    """Print the message (HTML, or --text) with placeholder links."""
    components = Components(app.settings)
    try:
        rendered = components.campaigns.preview(campaign_id, email=subscriber)
    finally:
        components.close()
    click.echo(rendered.text if as_text else rendered.html)


@campaigns.command("test")
@click.argument("campaign_id", type=CAMPAIGN_ID)
@click.option("--to", required=True, metavar="EMAIL", help="Mail one copy here (placeholder links); nothing else changes.")
@click.pass_context
@pass_app
def test(app: AppContext, ctx: click.Context, campaign_id: int, to: str) -> None:
    """Mail a test copy to one address first."""
    components = Components(app.settings)
    try:
        result = components.campaigns.send_test(campaign_id, to, now=datetime.now(UTC))
    finally:
        components.close()
    reply = f"{result.code} {result.reply}".strip() if result.code is not None else (result.reply or "-")
    click.echo(f"test copy to {to}: {result.outcome} ({reply})")
    if result.outcome != "sent":
        ctx.exit(1)


@campaigns.command("send")
@click.argument("campaign_id", type=CAMPAIGN_ID)
@click.option("--at", "send_at", default=None, metavar="TIME", help="Schedule it for this time instead of sending now.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before sending (needed without a terminal).")
@click.pass_context
@pass_app
def send(app: AppContext, ctx: click.Context, campaign_id: int, send_at: str | None, yes: bool) -> None:
    """Send a campaign now (each subscriber gets it once), or schedule it with --at."""
    components = Components(app.settings)
    try:
        service = components.campaigns
        if send_at is not None:
            campaign = service.schedule(campaign_id, _when(send_at))
            click.echo(f"campaign {campaign.id} scheduled for {campaign.send_at:%Y-%m-%d %H:%M %Z} (the service sends it)")
            return
        campaign = service.get(campaign_id)
        count = service.audience_count(campaign)
        confirm(f"Send campaign {campaign_id} ({campaign.subject!r}) to {count} subscribers now?", yes=yes,
                refusal=f"refusing to send campaign {campaign_id} to {count} subscribers without confirmation")
        components.audit.record(datetime.now(UTC), "cli", "campaign.send", "campaign", campaign_id, campaign.subject)
        with run_progress() as progress:
            done = service.send(campaign_id, now=datetime.now(UTC), progress=progress)
    except CampaignError:
        raise
    finally:
        components.close()
    counts = done.counts or {}
    click.echo(f"campaign {done.id} {done.status.value} (run {done.run_id}): sent {counts.get('sent', 0)}/{counts.get('total', 0)}, "
               f"retrying {counts.get('retrying', 0)}, failed {counts.get('failed', 0)}, skipped {counts.get('skipped', 0)}")
    if counts.get("failed"):
        ctx.exit(1)


@campaigns.command("list")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@json_option
@pass_app
def list_command(app: AppContext, limit: int, as_json: bool) -> None:
    """Campaigns, newest first, with the counts of their deliveries."""
    components = Components(app.settings)
    try:
        found = components.campaigns.recent(limit)
    finally:
        components.close()
    if as_json:
        print_json([{k: v for k, v in vars(c).items() if k != "body"} for c in found])
        return
    print_table(None, ("id", "status", "subject", "categories", "send at", "run", "sent", "failed", "total"),
                [(c.id, c.status.value, c.subject, ", ".join(c.categories) or "(all)",
                  f"{c.send_at:%Y-%m-%d %H:%M %Z}" if c.send_at else "-", c.run_id or "-",
                  (c.counts or {}).get("sent", 0), (c.counts or {}).get("failed", 0), (c.counts or {}).get("total", 0))
                 for c in found],
                empty="No campaigns yet.", right=("id", "sent", "failed", "total"))
