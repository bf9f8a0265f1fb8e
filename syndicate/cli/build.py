"""`syndicate build`: write every feed and page of the site."""

from __future__ import annotations

from pathlib import Path

import click

from syndicate.cli import AppContext, pass_app
from syndicate.cli._collector import collector_paused
from syndicate.site import build_site
from syndicate.wiring import content_source


@click.command()
@click.option("--content", "content", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Content folder to read (default: the configured one).")
@click.option("--output", "output", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder to write the site to (default: the configured one).")
@click.pass_context
@pass_app
def build(app: AppContext, ctx: click.Context, content: Path | None, output: Path | None) -> None:
    """Write every feed (RSS, Atom, JSON Feed, OPML) and page; exit 1 if any article was skipped."""
    with collector_paused():
        report = build_site(app.settings, content_source(app.settings), content=content, output=output)
    for warning in report.warnings:
        click.echo(f"{warning} (warning)")
    for problem in report.problems:
        click.echo(str(problem))
    click.echo(
        f"{report.articles} articles, {report.categories} categories: {len(report.written)} files written, "
        f"{report.unchanged} unchanged, {len(report.removed)} removed, {len(report.problems)} problems"
    )
    click.echo(f"feeds in {report.feeds_folder}/ (every feed listed in {report.feeds_folder / 'index.opml'})")
    if report.problems:
        ctx.exit(1)
