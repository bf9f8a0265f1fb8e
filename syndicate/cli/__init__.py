"""The `syndicate` command: global options, logging, and the one place errors are printed."""

from __future__ import annotations

import gc
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
    verbosity: int = 0
    quiet_level: str = "WARNING"  # the level when neither an option nor [logging] level says
    _settings: Settings | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path)
            configure_logging(self.effective_log_level(self._settings))
        return self._settings

    def settings_override(self, settings: Settings) -> None:
        """Use `settings` from now on (the service moves a loopback base_url to the port it bound)."""
        self._settings = settings

    def effective_log_level(self, settings: Settings) -> str:
        """--log-level, else -v (INFO) / -vv (DEBUG), else `[logging] level` when the file sets it,
        else WARNING: a command's own output is not mixed with INFO lines about what it did."""
        if self.log_level:
            return self.log_level
        if self.verbosity:
            return "DEBUG" if self.verbosity > 1 else "INFO"
        if "level" in settings.logging.model_fields_set:
            return settings.logging.level
        return self.quiet_level


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
@click.option("-v", "--verbose", "verbosity", count=True,
              help="Log what happens on stderr: -v at INFO, -vv at DEBUG (default: WARNING, or [logging] level).")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, log_level: str | None, verbosity: int) -> None:
    """Newsletter and feed syndication: Markdown articles to feeds and email digests."""
    ctx.obj = AppContext(config_path=config_path, log_level=log_level.upper() if log_level else None, verbosity=verbosity)


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
    # deliverability (#13)
    "bounces": "syndicate.cli.bounces:bounces",
    "suppressions": "syndicate.cli.suppressions:suppressions",
    "dkim": "syndicate.cli.dkim:dkim",
    "worker": "syndicate.cli.worker:worker",
    # issue 15
    "sources": "syndicate.cli.sources:sources",
    # -- issue 17: operators
    "deliveries": "syndicate.cli.deliveries:deliveries",
    "campaigns": "syndicate.cli.campaigns:campaigns",
    "admin": "syndicate.cli.admin:admin",
}


def _register() -> None:
    for name, target in COMMANDS.items():
        cli.add_lazy_command(name, target)


_register()


def entry() -> None:
    """The process's entry point (the `syndicate` script, `python -m syndicate`): `main()`, then exit."""
    try:
        main()
    finally:
        # The process ends here. Interpreter shutdown runs a full cyclic collection, which would walk
        # every object the command made (a build's 10,000 articles: 30-40 ms of a 0.4 s build); frozen,
        # they are left to the exit, as every object outside a reference cycle is. (Nothing a command
        # leaves needs the collector to be closed: files are closed by their with-blocks, logging's
        # handlers by its own exit hook.) Not in main(): tests call it in their own process.
        gc.freeze()


def main(argv: list[str] | None = None) -> None:
    """Run the CLI, print any SyndicateError once, exit with its code."""
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
