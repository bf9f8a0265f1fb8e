"""The `syndicate` command: global options, logging, and the one place errors are printed."""

from __future__ import annotations

import importlib
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


class LazyGroup(click.Group):
    """A group whose commands are imported when first used: `syndicate build` then does not
    import the database, mail and web code (0.6 s of imports)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy: dict[str, str] = {}  # command name -> "module:attribute"

    def add_lazy_command(self, name: str, target: str) -> None:
        self.lazy[name] = target

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            module, attribute = self.lazy[cmd_name].split(":")
            self.add_command(getattr(importlib.import_module(module), attribute), cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
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


# Every command, imported only when it runs (or when --help lists them).
COMMANDS = {
    "check": "syndicate.cli.check:check",
    "build": "syndicate.cli.build:build",
    "subscribers": "syndicate.cli.subscribers:subscribers",
    "db": "syndicate.cli.db:db",
    "run": "syndicate.cli.run:run",
    "preview": "syndicate.cli.preview:preview",
    "send": "syndicate.cli.send:send",
    "status": "syndicate.cli.status:status",
}


def _register() -> None:
    for name, target in COMMANDS.items():
        cli.add_lazy_command(name, target)


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
