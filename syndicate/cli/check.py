"""`syndicate check`: validate the config and every article."""

from __future__ import annotations

from pathlib import Path

import click

from syndicate.cli import AppContext, pass_app
from syndicate.wiring import load_corpus


@click.command()
@click.option("--content", "content", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Content folder to check (default: the configured one).")
@click.pass_context
@pass_app
def check(app: AppContext, ctx: click.Context, content: Path | None) -> None:
    """Validate the config and every article; print each problem as PATH:LINE: message."""
    settings = app.settings
    corpus = load_corpus(settings, content)
    for warning in corpus.warnings:
        click.echo(f"{warning} (warning)")
    for problem in corpus.problems:
        click.echo(str(problem))
    click.echo(
        f"{len(corpus.articles)} articles, {len(corpus.categories)} categories, "
        f"{len(corpus.problems)} problems, {len(corpus.warnings)} warnings"
    )
    if corpus.problems:
        ctx.exit(1)
