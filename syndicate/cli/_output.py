"""How commands print: rich tables on a terminal, tab-separated lines when piped, JSON for scripts, prompts."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from datetime import datetime
from enum import Enum
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from syndicate.errors import UsageError

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts) instead of a table.")


def on_terminal() -> bool:
    return sys.stdout.isatty()


def plain(value: Any) -> Any:
    """A dataclass, enum, datetime or container of them as JSON-ready data."""
    if is_dataclass(value) and not isinstance(value, type):
        return {k: plain(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return value


def print_json(value: Any) -> None:
    click.echo(json.dumps(plain(value), indent=2, ensure_ascii=False))


def print_table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]], *, empty: str,
                right: Sequence[str] = ()) -> None:
    """A rich table on a terminal; piped, a header line and one tab-separated line per row (cut/awk ready).
    `empty` is printed instead when there are no rows."""
    if not rows:
        click.echo(empty)
        return
    if on_terminal():
        table = Table(title=title, title_justify="left")
        for name in columns:
            table.add_column(name, justify="right" if name in right else "left")
        for row in rows:
            table.add_row(*("" if v is None else str(v) for v in row))
        Console().print(table)
        return
    if title:
        click.echo(f"# {title}")
    click.echo("\t".join(columns))
    for row in rows:
        click.echo("\t".join("" if v is None else str(v).replace("\t", " ").replace("\n", " ") for v in row))


def print_fields(fields: Sequence[tuple[str, str]]) -> None:
    """`key: value` lines, the values aligned."""
    width = max((len(k) for k, _ in fields), default=0) + 2
    for key, value in fields:
        click.echo(f"{key + ':':<{width}}{value}")


def confirm(question: str, *, yes: bool, refusal: str, hint: str = "add --yes to go ahead without asking") -> None:
    """Ask on a terminal; `yes` answers for the user; without a terminal (a script, cron) refuse
    (`refusal`: "refusing to ... without confirmation") rather than block on a prompt nobody sees."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageError(f"{refusal}: no terminal to ask on", hint=hint)
    click.confirm(question, abort=True)


@contextmanager
def run_progress() -> Iterator[Callable[[Any], None]]:
    """A progress callback for a delivery run (a RunReport each time): a bar on a terminal, a line
    every 2 seconds when piped."""
    if not on_terminal():
        shown = [0.0]

        def line(report: Any) -> None:
            if time.monotonic() - shown[0] >= 2:
                shown[0] = time.monotonic()
                click.echo(f"run {report.run_id}: sent {report.sent}/{report.total}, retrying {report.retrying}, "
                           f"failed {report.failed}", err=True)

        yield line
        return
    columns = (TextColumn("[bold]run {task.fields[run]}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("retrying {task.fields[retrying]}  failed {task.fields[failed]}"), TimeElapsedColumn())
    with Progress(*columns, auto_refresh=False, console=Console(stderr=True)) as bar:
        task = bar.add_task("send", total=None, run="", retrying=0, failed=0)

        def update(report: Any) -> None:
            bar.update(task, total=report.total, completed=report.sent + report.failed + report.skipped, run=report.run_id,
                       retrying=report.retrying, failed=report.failed, refresh=True)

        yield update
