"""`syndicate sources list|fetch|check`: other sites' feeds as sources of articles."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import click
from rich.console import Console
from rich.table import Table

from syndicate.cli import AppContext, pass_app
from syndicate.cli._output import json_option, print_json, print_table
from syndicate.errors import UsageError
from syndicate.sources import check_url
from syndicate.wiring import Components


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def _console() -> Console:
    return Console(width=None if sys.stdout.isatty() else 160)


@click.group("sources")
def sources() -> None:
    """Other sites' feeds whose items become articles ([sources.NAME] in the config)."""


@sources.command("list")
@json_option
@pass_app
def list_sources(app: AppContext, as_json: bool) -> None:
    """Each source: its last fetch, status, items kept and next fetch."""
    settings = app.settings
    if not settings.sources:
        if as_json:
            print_json([])
            return
        click.echo("No sources configured (add a [sources.NAME] table with url and categories).")
        return
    components = Components(settings)
    try:
        statuses = components.sources.statuses()
    finally:
        components.close()
    if as_json:
        print_json(statuses)
        return
    print_table("Sources", ("name", "title", "categories", "enabled", "items", "last fetch", "status", "failures",
                            "next fetch", "error"),
                [(s.name, s.title, ", ".join(s.categories), "yes" if s.enabled else "no", s.items,
                  _when(s.last_fetch_at), s.last_status or "never fetched", s.failures,
                  _when(s.next_fetch_at) if s.enabled else "-", s.last_error or "") for s in statuses],
                empty="No sources.", right=("items", "failures"))


@sources.command("fetch")
@click.argument("name", required=False)
@click.option("--dry-run", is_flag=True, help="Fetch and show what would change; store nothing.")
@click.pass_context
@pass_app
def fetch(app: AppContext, ctx: click.Context, name: str | None, dry_run: bool) -> None:
    """Fetch source NAME (default: every enabled source) now, due or not; exit 1 if any failed."""
    settings = app.settings
    if name is not None and name not in settings.sources:
        known = ", ".join(sorted(settings.sources)) or "none configured"
        raise UsageError(f"unknown source {name!r} (known: {known})")
    names = [name] if name else [n for n, s in settings.sources.items() if s.enabled]
    if not names:
        click.echo("No enabled source to fetch.")
        return
    now = datetime.now(UTC)
    components = Components(settings)
    try:
        runner = components.sources
        reports = [runner.fetch(n, now, dry_run=dry_run, publish=False) for n in names]
        if not dry_run and any(r.changed for r in reports):
            runner.publish()
    finally:
        components.close()
    for report in reports:
        if report.status == "error":
            click.echo(f"{report.name}: error: {report.error} (next fetch {_when(report.next_fetch_at)})")
            continue
        click.echo(f"{report.name}: {report.status}: {report.new} new, {report.updated} updated, "
                   f"{report.unchanged} unchanged, {report.filtered} filtered out"
                   + (f" (warning: {report.warning})" if report.warning else ""))
        for article in report.articles:
            click.echo(f"  would publish: {article.published:%Y-%m-%d} {article.title} <{article.url or 'no link'}>")
    if dry_run:
        click.echo("dry run: nothing stored")
    if any(r.status == "error" for r in reports):
        ctx.exit(1)


@sources.command("check")
@click.argument("url")
@click.option("--categories", default="main", show_default=True, help="Comma-separated categories to show them in.")
@click.pass_context
@pass_app
def check(app: AppContext, ctx: click.Context, url: str, categories: str) -> None:
    """Fetch URL once and show what its items would become as articles (nothing stored)."""
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"URL: expected an absolute http(s) URL, got {url!r}")
    wanted = tuple(c.strip() for c in categories.split(",") if c.strip())
    fetched, feed, articles, error = check_url(url, datetime.now(UTC), categories=wanted,
                                               summary_length=app.settings.content.summary_length)
    if error is not None:
        click.echo(f"{url}: {error}")
        ctx.exit(1)
    assert feed is not None
    click.echo(f"{fetched.url}: {feed.format} feed {feed.title or '(untitled)'!r}, {len(feed.items)} items"
               + (f" (warning: {feed.warning})" if feed.warning else ""))
    table = Table(title_justify="left")
    for name in ("published", "updated", "title", "author", "categories", "link", "summary"):
        table.add_column(name)
    for a in articles:
        table.add_row(f"{a.published:%Y-%m-%d %H:%M}", f"{a.updated:%Y-%m-%d %H:%M}", a.title, a.author,
                      ", ".join(c.name for c in a.categories), a.url or "-", a.summary[:80])
    _console().print(table)
