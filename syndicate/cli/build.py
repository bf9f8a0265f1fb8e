"""`syndicate build`: write every feed and page of the site."""

from __future__ import annotations

from pathlib import Path

import click

from syndicate.cli import AppContext, pass_app
from syndicate.cli._collector import collector_paused
from syndicate.site import BuildReport, build_site
from syndicate.wiring import build_settings, content_source


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
        report = build_site(build_settings(app.settings), content_source(app.settings), content=content, output=output)
    for warning in report.warnings:
        click.echo(f"{warning} (warning)")
    for problem in report.problems:
        click.echo(str(problem))
    click.echo(
        f"{report.articles} articles, {report.categories} categories: {len(report.written)} files written, "
        f"{report.unchanged} unchanged, {len(report.removed)} removed, {len(report.problems)} problems"
    )
    click.echo(f"feeds in {report.feeds_folder}/ (every feed listed in {report.feeds_folder / 'index.opml'})")
    if app.settings.output.pages:
        _archive(app, output, report)
    if report.problems:
        ctx.exit(1)


def _archive(app: AppContext, output: Path | None, built: BuildReport) -> None:
    """The archive of the digests as sent, from the database (syndicate.archive), which is opened
    only when the archive may have something new (`database_stamp`)."""
    from datetime import UTC, datetime

    from syndicate.archive import build_archive
    from syndicate.storage import database_stamp
    from syndicate.wiring import opened_database

    settings = app.settings
    archive = build_archive(settings, content_source(settings), lambda: opened_database(settings), datetime.now(UTC),
                            output=output, corpus=built.corpus, database_stamp=lambda: database_stamp(settings.database))
    click.echo(f"archive: {archive.issues} issues, {len(archive.written)} files written")
