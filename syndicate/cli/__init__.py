"""The `syndicate` command: global options, logging, and the one place errors are printed."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import click

from syndicate import __version__
from syndicate.config import Settings, load_settings
from syndicate.errors import ConfigError, SyndicateError


@dataclass
class AppContext:
    """What every command gets: the config path and, loaded once on first use, the settings."""

    config_path: Path | None
    log_level: str | None = None
    _settings: Settings | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path)
            configure_logging(self.log_level or self._settings.logging.level)
        return self._settings


def configure_logging(level: str) -> None:
    """One line per event on stderr, at the configured level."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_syndicate", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._syndicate = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)


pass_app = click.make_pass_decorator(AppContext)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="syndicate")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="PATH",
    envvar="SYNDICATE_CONFIG",
    default=None,
    help="Config file (default: config/syndicate.toml, or $SYNDICATE_CONFIG).",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default=None,
    help="Override the configured log level.",
)
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, log_level: str | None) -> None:
    """Newsletter and feed syndication: Markdown articles to feeds and email digests."""
    ctx.obj = AppContext(config_path=config_path, log_level=log_level.upper() if log_level else None)


def _register() -> None:
    from syndicate.cli import check
    from syndicate.cli import build

    for command in (check.check,):
        cli.add_command(command)
    cli.add_command(build.build)

    from syndicate.cli import db, subscribers

    for command in (subscribers.subscribers, db.db):
        cli.add_command(command)

    from syndicate.cli import run

    cli.add_command(run.run)

    from syndicate.cli import preview

    cli.add_command(preview.preview)

    from syndicate.cli import send, status

    cli.add_command(send.send)
    cli.add_command(status.status)


_register()


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, print any SyndicateError once, exit with its code."""
    try:
        code = cli.main(args=argv, prog_name="syndicate", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except ConfigError as e:
        for problem in e.problems:
            click.echo(f"error: {problem}", err=True)
        if e.hint:
            click.echo(f"hint: {e.hint}", err=True)
        sys.exit(e.exit_code)
    except SyndicateError as e:
        click.echo(f"error: {e}", err=True)
        if e.hint:
            click.echo(f"hint: {e.hint}", err=True)
        sys.exit(e.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
