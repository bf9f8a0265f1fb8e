"""Subscribers as CSV: streaming import with a reason for every refused row, and export.

An import reads the whole file before it writes anything: a file that cannot be read to its end
(an unclosed quote at line 2,502) imports nothing, and `--dry-run` reports exactly what the import
would. Export escapes every cell a spreadsheet would run as a formula (OWASP's advice on CSV
injection: a leading `'`); import undoes it, so an export imports back unchanged.
"""

from __future__ import annotations

import csv
import sqlite3
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, TextIO, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from syndicate.errors import Problem, SyndicateError, UsageError
from syndicate.subscribers._address import AddressRules
from syndicate.subscribers._model import SubscriberStatus
from syndicate.subscribers._store import (
    ANY_BACKEND,
    ImportReport,
    InvalidSubscriberError,
    NewSubscriber,
    RestoredSubscriber,
    StoredSubscriber,
    SubscriberDefaults,
    SubscriberStore,
    new_subscriber,
    split_categories,
)
from syndicate.subscribers._store import SOURCES as _SOURCES

IMPORT_COLUMNS = ("email", "name", "categories", "frequency", "timezone", "send_hour", "weekday")
# Written by export; an import accepts them so an export can be re-imported.
EXPORT_COLUMNS = IMPORT_COLUMNS + ("status", "source", "created_at", "status_changed_at", "confirmed_at", "unsubscribed_at",
                                   "high_water")
OPTED_OUT = ("unsubscribed", "bounced")
_EXTRA = "\0extra"  # where csv.DictReader puts fields beyond the header
_Row = TypeVar("_Row")  # what one import writes of a row (a NewSubscriber, a restored row ...)
# A cell starting with one of these is a formula to Excel, LibreOffice and Google Sheets (OWASP).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
ESCAPE = "'"


def escape_cell(value: str) -> str:
    """`value` safe to open in a spreadsheet: a leading `'` before a formula start, and before a
    leading `'` of its own (so that unescape_cell gives back exactly `value`)."""
    return ESCAPE + value if value.startswith(FORMULA_STARTS + (ESCAPE,)) else value


def unescape_cell(value: str) -> str:
    """The value escape_cell escaped; any other value (a hand-written `'Tis`) is left as it is."""
    if value.startswith(ESCAPE) and value[1:].startswith(FORMULA_STARTS + (ESCAPE,)):
        return value[1:]
    return value


@dataclass(frozen=True)
class CsvStopped(Problem):
    """The file cannot be read past this line: the import writes nothing."""


class ImportInterrupted(SyndicateError):
    """Writing stopped part-way (the database went away): says which lines went in."""

    exit_code = 2


def _header(reader: csv.DictReader[str], path: Path) -> None:
    """Read the header row and check it: UsageError naming the file's first line otherwise."""
    try:
        fields = reader.fieldnames
    except csv.Error as e:  # a stray quote or carriage return in the header row
        raise UsageError(f"{path}:1: unreadable header row ({e})") from None
    _check_header(fields, path)


def _check_header(fields: Sequence[str] | None, path: Path) -> None:
    if not fields:
        raise UsageError(f"{path}: empty file (expected a header row with at least an email column)")
    unknown = [f for f in fields if f not in EXPORT_COLUMNS]
    if unknown:
        raise UsageError(
            f"{path}:1: unknown column {', '.join(repr(f) for f in unknown)} (expected: {', '.join(IMPORT_COLUMNS)})"
        )
    if "email" not in fields:
        raise UsageError(f"{path}:1: no email column (expected: {', '.join(IMPORT_COLUMNS)})")
    duplicated = sorted({f for f in fields if fields.count(f) > 1})
    if duplicated:
        raise UsageError(f"{path}:1: column {', '.join(duplicated)} appears twice")


def utf8_lines(binary: BinaryIO) -> Iterator[str]:
    """The lines of a UTF-8 file (BOM dropped). Bytes that are not UTF-8 become lone surrogates,
    so the row holding them is refused with its line number and the rest still read."""
    for number, raw in enumerate(binary):
        if number == 0 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        yield raw.decode("utf-8", errors="surrogateescape")


def _not_utf8(values: Iterable[str]) -> str | None:
    for value in values:
        for ch in value:
            if "\udc80" <= ch <= "\udcff":
                return f"not UTF-8 text (byte 0x{ord(ch) - 0xDC00:02X}); save the file as UTF-8"
    return None


class _SeenAddresses:
    """The first line of each address met in a file, kept on disk (SQLite's private temporary
    database) rather than in memory, so importing a million rows takes no more memory than ten."""

    def __init__(self) -> None:
        self._db = sqlite3.connect("")
        self._db.execute("CREATE TABLE seen (key TEXT PRIMARY KEY, line INTEGER NOT NULL) WITHOUT ROWID")

    def setdefault(self, key: str, line: int) -> int:
        """The line `key` was first seen on, recording `line` if this is the first time."""
        if self._db.execute("INSERT OR IGNORE INTO seen VALUES (?, ?)", (key, line)).rowcount:
            return line
        return self._db.execute("SELECT line FROM seen WHERE key = ?", (key,)).fetchone()[0]

    def close(self) -> None:
        self._db.close()


def read_subscribers(
    stream: Iterable[str],
    path: Path,
    *,
    valid_categories: Collection[str],
    defaults: SubscriberDefaults,
    addresses: AddressRules = ANY_BACKEND,
) -> Iterator[NewSubscriber | Problem]:
    """Each data row as a validated NewSubscriber, or a Problem naming its line and what is wrong."""
    reader = csv.DictReader(stream, restkey=_EXTRA, strict=True)
    _header(reader, path)
    if bad := _not_utf8(reader.fieldnames or ()):
        raise UsageError(f"{path}:1: {bad}")
    seen = _SeenAddresses()
    rows = iter(reader)
    try:
        while True:
            start = reader.line_num + 1  # where the record begins (a quoted field may span lines)
            try:
                row = next(rows)
            except StopIteration:
                return
            except csv.Error as e:
                yield CsvStopped(path, start, f"unreadable CSV ({e}; is a quote left open?); nothing was imported")
                return
            if any((v or "").strip() for k, v in row.items() if k != _EXTRA):
                yield _row(row, start, path, seen, valid_categories, defaults, addresses)
    finally:
        seen.close()


def _row(
    row: dict[str, str | list[str] | None],
    line: int,
    path: Path,
    seen: _SeenAddresses,
    valid_categories: Collection[str],
    defaults: SubscriberDefaults,
    addresses: AddressRules,
) -> NewSubscriber | Problem:
    if bad := _not_utf8(v for v in row.values() if isinstance(v, str)):
        return Problem(path, line, bad)
    extra = row.get(_EXTRA)
    if extra is not None:
        return Problem(path, line, f"{len(extra)} more fields than the header has columns")
    # Trailing fields may be left out of a row: they take their defaults.
    values: dict[str, str] = {k: unescape_cell(v) for k, v in row.items() if isinstance(v, str)}
    status = values.get("status", "").strip().lower()
    if status in OPTED_OUT:
        return Problem(path, line, f"status is {status}: an import never subscribes an opted-out address")
    try:
        new = new_subscriber(
            values["email"],
            name=values.get("name"),
            categories=split_categories(values.get("categories", "")),
            valid_categories=valid_categories,
            defaults=defaults,
            frequency=values.get("frequency"),
            timezone=values.get("timezone", "").strip(),
            send_hour=values.get("send_hour"),
            weekday=values.get("weekday"),
            addresses=addresses,
        )
    except InvalidSubscriberError as e:
        return Problem(path, line, str(e))
    first = seen.setdefault(new.email_key, line)
    if first != line:
        return Problem(path, line, f"email: {new.email} already appears on line {first}")
    return new


def import_csv(
    store: SubscriberStore,
    path: Path,
    *,
    valid_categories: Collection[str],
    now: datetime,
    confirmed: bool = False,
    dry_run: bool = False,
    batch: int = 1000,
    addresses: AddressRules = ANY_BACKEND,
) -> ImportReport:
    """Import the good rows of `path`; report the bad ones (`addresses` checks each address: whether
    the mail backend can carry it, among others). The whole file is read and checked first
    (what a dry run reports); a file unreadable to its end imports nothing. Then the good rows are
    written in batches (one transaction each, re-read from the file: memory stays bounded); a
    database failure part-way is an ImportInterrupted naming the lines that went in."""
    checked = _pass(store, path, valid_categories, now, confirmed=confirmed, dry_run=True, batch=batch,
                    addresses=addresses)
    if any(isinstance(p, CsvStopped) for p in checked.problems):
        return ImportReport(problems=tuple(str(p) for p in checked.problems))  # nothing is imported
    if dry_run:
        return checked.report()
    return _pass(store, path, valid_categories, now, confirmed=confirmed, dry_run=False, batch=batch,
                 addresses=addresses).report()


@dataclass(frozen=True)
class _Pass:
    added: int
    unchanged: int
    opted_out: int
    problems: tuple[Problem, ...]

    def report(self) -> ImportReport:
        return ImportReport(self.added, self.unchanged, self.opted_out, tuple(str(p) for p in self.problems))


def _pass(store: SubscriberStore, path: Path, valid_categories: Collection[str], now: datetime, *,
          confirmed: bool, dry_run: bool, batch: int, addresses: AddressRules) -> _Pass:
    """One reading of the file, writing the good rows in batches unless `dry_run`."""
    report = ImportReport()
    pending: list[NewSubscriber] = []
    pending_lines: list[int] = []
    problems: list[Problem] = []
    last_written = 1  # the header

    def flush() -> None:
        nonlocal report, last_written
        try:
            report = report.merged(store.import_batch(pending, now=now, confirmed=confirmed, dry_run=dry_run))
        except (SyndicateError, SQLAlchemyError) as e:  # the database, not the file: say what went in
            done = f"lines 2 to {last_written} went in ({report.added} added)" if last_written > 1 else "nothing went in"
            reason = str(e).splitlines()[0][:200]
            raise ImportInterrupted(f"{path}: import stopped at line {pending_lines[0]}: {reason}; {done}",
                                    hint="run the same import again when the database is back: the addresses "
                                         "already in are left unchanged") from e
        last_written = pending_lines[-1]
        pending.clear()
        pending_lines.clear()

    try:
        stream = path.open("rb")
    except OSError as e:
        raise UsageError(f"{path}: cannot read: {e.strerror}") from e
    with stream:
        lines = _LineCounter(utf8_lines(stream))
        for item in read_subscribers(lines, path, valid_categories=valid_categories, defaults=store.defaults,
                                     addresses=addresses):
            if isinstance(item, Problem):
                problems.append(item)
                continue
            pending.append(item)
            pending_lines.append(lines.count)
            if len(pending) >= batch:
                flush()
    if pending:
        flush()
    return _Pass(report.added, report.unchanged, report.opted_out, tuple(problems))


class _LineCounter:
    """The lines of a file, counting them (the last line of the record just read)."""

    def __init__(self, lines: Iterable[str]) -> None:
        self._lines = iter(lines)
        self.count = 0

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.count += 1
        return line


def _when(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else ""


def write_subscribers(rows: Iterable[StoredSubscriber], out: TextIO) -> int:
    """Write the export CSV (the import's columns, then status and timestamps in UTC); returns the row count."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    count = 0
    for stored in rows:
        s = stored.subscriber
        writer.writerow([escape_cell(str(value)) for value in (
            s.email, s.name or "", ",".join(s.categories), s.frequency.value, s.timezone, s.send_hour, s.weekday,
            s.status.value, s.source, _when(s.created_at), _when(s.status_changed_at),
            _when(stored.confirmed_at), _when(stored.unsubscribed_at), _exact(s.high_water),
        )])
        count += 1
    return count


def _exact(value: datetime | None) -> str:
    """The high-water mark to the microsecond: a restored subscriber must not get an article twice."""
    return value.isoformat() if value else ""


# ---------------------------------------------------------------- backups (issue 17)
#
# `import --restore` takes an export back as it was: pending stays pending, unsubscribed stays
# unsubscribed with its time (the proof of the opt-out), and each row keeps its source and times.
# A plain import with --confirmed activates only rows the file does not say are pending.

_BACKUP_TIMES = ("created_at", "status_changed_at", "confirmed_at", "unsubscribed_at", "high_water")


def _time(values: dict[str, str], column: str) -> datetime | None:
    text = values.get(column, "").strip()
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{column}: {text!r} is not an ISO 8601 time (as export writes them)") from None
    if moment.tzinfo is None:
        raise ValueError(f"{column}: {text!r} has no UTC offset (as export writes them: +00:00)")
    return moment


def _restored(row: dict[str, str | list[str] | None], base: NewSubscriber, line: int, path: Path, now: datetime,
              *, proof: bool = True) -> RestoredSubscriber | Problem:
    """`proof`: an active row needs its confirmation time, an unsubscribed one its unsubscribe time."""
    values = {k: v for k, v in row.items() if isinstance(v, str)}
    raw_status = values.get("status", "").strip().lower()
    try:
        status = SubscriberStatus(raw_status)
    except ValueError:
        return Problem(path, line, f"status: expected one of {', '.join(s.value for s in SubscriberStatus)}, got {raw_status!r}")
    source = values.get("source", "").strip() or "import"
    if source not in _SOURCES:
        return Problem(path, line, f"source: expected one of {', '.join(_SOURCES)}, got {source!r}")
    try:
        times = {column: _time(values, column) for column in _BACKUP_TIMES}
    except ValueError as e:
        return Problem(path, line, str(e))
    if proof and status is SubscriberStatus.ACTIVE and times["confirmed_at"] is None:
        return Problem(path, line, "status is active but confirmed_at is empty: no proof of opt-in "
                                   "(import it without --restore: it comes back pending)")
    if proof and status is SubscriberStatus.UNSUBSCRIBED and times["unsubscribed_at"] is None:
        return Problem(path, line, "status is unsubscribed but unsubscribed_at is empty (the proof of the opt-out)")
    created = times["created_at"] or now
    return RestoredSubscriber(
        new=base, status=status, source=source, created_at=created,
        status_changed_at=times["status_changed_at"] or created, confirmed_at=times["confirmed_at"],
        unsubscribed_at=times["unsubscribed_at"], high_water=times["high_water"],
    )


def read_backup(
    stream: Iterable[str],
    path: Path,
    *,
    valid_categories: Collection[str],
    defaults: SubscriberDefaults,
    now: datetime,
    refuse_opted_out: bool = False,
    addresses: AddressRules = ANY_BACKEND,
) -> Iterator[RestoredSubscriber | Problem]:
    """Each row of an export as a RestoredSubscriber (every status; unsubscribed and bounced ones
    refused with `refuse_opted_out`), or a Problem naming its line."""
    reader = csv.DictReader(stream, restkey=_EXTRA, strict=True)
    _header(reader, path)
    if "status" not in (reader.fieldnames or ()):
        raise UsageError(f"{path}:1: no status column: --restore reads a file written by `syndicate subscribers export`")
    seen = _SeenAddresses()
    rows = iter(reader)
    try:
        while True:
            start = reader.line_num + 1
            try:
                row = next(rows)
            except StopIteration:
                return
            except csv.Error as e:
                yield Problem(path, start, f"unreadable CSV ({e}; is a quote left open?); the rest of the file was skipped")
                return
            if not any((v or "").strip() for k, v in row.items() if k != _EXTRA):
                continue
            # The subscriber's own fields are checked as a plain import checks them (status aside).
            status = (row.get("status") or "").strip().lower() if isinstance(row.get("status"), str) else ""
            if refuse_opted_out and status in OPTED_OUT:
                yield Problem(path, start, f"status is {status}: an import never subscribes an opted-out address "
                                           "(--restore keeps it as it is)")
                continue
            base = _row({k: v for k, v in row.items() if k != "status"}, start, path, seen, valid_categories, defaults,
                        addresses)
            yield base if isinstance(base, Problem) else _restored(row, base, start, path, now, proof=not refuse_opted_out)
    finally:
        seen.close()


def restore_csv(
    store: SubscriberStore,
    path: Path,
    *,
    valid_categories: Collection[str],
    now: datetime,
    dry_run: bool = False,
    batch: int = 1000,
    addresses: AddressRules = ANY_BACKEND,
) -> ImportReport:
    """Restore the good rows of an export as they were (addresses already present are left as they
    are); report the bad ones."""
    return _in_batches(
        path, lambda stream: read_backup(stream, path, valid_categories=valid_categories, defaults=store.defaults, now=now,
                                         addresses=addresses),
        lambda rows: store.restore_batch(rows, now=now, dry_run=dry_run), batch,
    )


def import_confirmed_csv(
    store: SubscriberStore,
    path: Path,
    *,
    valid_categories: Collection[str],
    now: datetime,
    dry_run: bool = False,
    batch: int = 1000,
    addresses: AddressRules = ANY_BACKEND,
) -> ImportReport:
    """`import --confirmed`: rows become active, except rows the file says are pending (they never
    confirmed: they are imported pending). Opted-out rows are refused as in a plain import."""

    def rows(stream: Iterable[str]) -> Iterator[tuple[NewSubscriber, bool] | Problem]:
        if not _has_status(path):
            for item in read_subscribers(stream, path, valid_categories=valid_categories, defaults=store.defaults,
                                         addresses=addresses):
                yield item if isinstance(item, Problem) else (item, True)
            return
        for row in read_backup(stream, path, valid_categories=valid_categories, defaults=store.defaults, now=now,
                               refuse_opted_out=True, addresses=addresses):
            yield row if isinstance(row, Problem) else (row.new, row.status is not SubscriberStatus.PENDING)

    def write(items: list[tuple[NewSubscriber, bool]]) -> ImportReport:
        report = ImportReport()
        for confirmed in (True, False):
            group = [new for new, active in items if active is confirmed]
            if group:
                report = report.merged(store.import_batch(group, now=now, confirmed=confirmed, dry_run=dry_run))
        return report

    return _in_batches(path, rows, write, batch)


def _has_status(path: Path) -> bool:
    try:
        with path.open("rb") as stream:
            header = next(csv.reader(utf8_lines(stream)), [])
    except OSError as e:
        raise UsageError(f"{path}: cannot read: {e.strerror}") from e
    return "status" in header


def _in_batches(path: Path, read: Callable[[Iterable[str]], Iterable[_Row | Problem]],
                write: Callable[[list[_Row]], ImportReport], batch: int) -> ImportReport:
    """`write` the rows `read` gives from the file at `path`, `batch` at a time; its problems reported."""
    report = ImportReport()
    pending: list[_Row] = []
    problems: list[str] = []
    try:
        stream = path.open("rb")
    except OSError as e:
        raise UsageError(f"{path}: cannot read: {e.strerror}") from e
    with stream:
        for item in read(utf8_lines(stream)):
            if isinstance(item, Problem):
                problems.append(str(item))
                continue
            pending.append(item)
            if len(pending) >= batch:
                report = report.merged(write(pending))
                pending = []
    if pending:
        report = report.merged(write(pending))
    return report.merged(ImportReport(problems=tuple(problems)))
