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
    config_warnings = []
    if not settings.site.postal_address:
        config_warnings.append("[site] postal_address: not set; the law in many places (CAN-SPAM in the US) wants "
                               "the sender's postal address in every digest's footer")
    for warning in (*config_warnings, *corpus.warnings):
        click.echo(f"{warning} (warning)")
    for problem in corpus.problems:
        click.echo(str(problem))
    click.echo(
        f"{len(corpus.refs)} articles, {len(corpus.categories)} categories, "
        f"{len(corpus.problems)} problems, {len(corpus.warnings) + len(config_warnings)} warnings"
    )
    if corpus.problems:
        ctx.exit(1)
