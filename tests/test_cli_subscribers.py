"""`syndicate subscribers ...` and `syndicate db ...` as a user runs them."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from syndicate.cli import main
from syndicate.storage._database import head_revision

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def run(tmp_path, database_url, capsys):
    """Run the CLI on a config using the repository's sample content and the test database."""
    config = tmp_path / "syndicate.toml"
    config.write_text(
        f'[content]\nfolder = "{REPO / "content"}"\ncache = "{tmp_path / "cache" / "articles.pickle"}"\n'
        f'[categories.main]\ntitle = "Main"\n'
        f'[digest]\nsend_hour = 7\ntimezone = "Europe/Paris"\n'
        f'[database]\nurl = "{database_url}"\n[logging]\nlevel = "WARNING"\n',
        encoding="utf-8",
    )

    def invoke(*args: str) -> tuple[int, str, str]:
        try:
            main(["--config", str(config), *args])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        out = capsys.readouterr()
        return code, out.out, out.err

    return invoke


def test_add_show_confirm_and_list(run):
    code, out, err = run("subscribers", "add", "Ann@Example.org", "--name", "Ann Ørsted", "--categories", "main,sports")
    assert code == 0, err
    assert out.strip() == "added Ann@example.org (pending): main, sports"
    code, out, _ = run("subscribers", "show", "ann@example.org")
    assert "status:       pending" in out and "send hour:    07:00 local" in out and "timezone:     Europe/Paris" in out
    assert run("subscribers", "confirm", "ANN@example.org")[1].strip() == "Ann@example.org: active"
    code, out, _ = run("subscribers", "show", "ann@example.org")
    assert "next digest:" in out and "Europe/Paris)" in out
    code, out, err = run("subscribers", "list", "--status", "active", "--category", "sports")
    # Piped: a header and tab-separated rows on stdout, the count on stderr.
    assert out.splitlines()[1].split("\t")[1:3] == ["Ann@example.org", "active"] and err.strip() == "1 subscriber"
    code, out, err = run("subscribers", "list", "--category", "technology")
    assert out.strip() == "No subscribers match." and err.strip() == "0 subscribers"


def test_add_refuses_bad_input_with_a_clear_error(run):
    code, _, err = run("subscribers", "add", "ann@example.org", "--categories", "main,knitting")
    assert code == 2 and "error: categories: unknown category knitting (valid: army-wars" in err
    code, _, err = run("subscribers", "add", "ann@example.org\r\nBcc: x@example.org", "--categories", "main")
    assert code == 2 and "contains a line break" in err
    code, _, err = run("subscribers", "add", "ann@example.org", "--name", "A\nB", "--categories", "main")
    assert code == 2 and "name: contains a line break" in err
    # a byte that is not UTF-8 in an argument comes as a lone surrogate (os.fsdecode): no database can store it
    code, _, err = run("subscribers", "add", "ann@example.org", "--name", "Ann \udcff", "--categories", "main")
    assert code == 2 and "name: is not valid text" in err
    code, _, err = run("subscribers", "add", "ann@example.org", "--categories", "main", "--timezone", "Paris")
    assert code == 2 and "unknown timezone 'Paris'" in err
    for not_a_place in ("Factory", "localtime"):
        code, _, err = run("subscribers", "add", "ann@example.org", "--categories", "main", "--timezone", not_a_place)
        assert code == 2 and f"timezone: '{not_a_place}' is not a place's time zone" in err
    assert run("subscribers", "add", "ann@example.org", "--categories", "main")[0] == 0
    code, _, err = run("subscribers", "add", "ANN@example.org", "--categories", "main")
    assert code == 1 and "already in the database" in err


def test_unsubscribe_keeps_the_record_and_remove_erases_it(run):
    run("subscribers", "add", "ann@example.org", "--categories", "main", "--confirmed")
    assert run("subscribers", "unsubscribe", "ann@example.org")[0] == 0
    code, _, err = run("subscribers", "confirm", "ann@example.org")
    assert code == 1 and "confirming does not revive it" in err
    assert "unsubscribed" in run("subscribers", "list")[1]
    assert run("subscribers", "remove", "ann@example.org", "--yes")[1].strip() == "ann@example.org: removed"
    code, _, err = run("subscribers", "show", "ann@example.org")
    assert code == 1 and "no subscriber with address ann@example.org" in err


def test_set_changes_preferences(run):
    run("subscribers", "add", "ann@example.org", "--categories", "main", "--confirmed")
    code, out, err = run("subscribers", "set", "ann@example.org", "--frequency", "weekly", "--weekday", "friday",
                         "--categories", "technology,sports", "--timezone", "Asia/Tokyo", "--send-hour", "6")
    assert code == 0, err
    assert out.strip() == "updated ann@example.org: weekly at 06:00 Asia/Tokyo, sports, technology"
    assert "next digest:" in run("subscribers", "show", "ann@example.org")[1]
    assert "(Fri 06:00 Asia/Tokyo)" in run("subscribers", "show", "ann@example.org")[1]


def test_import_reports_bad_rows_and_reimport_changes_nothing(run, tmp_path):
    path = tmp_path / "people.csv"
    path.write_text(
        "email,name,categories,frequency,timezone,send_hour\n"
        "ann@example.org,Ann,main,daily,Europe/Paris,8\n"
        "bob@example.org,\"Bob\r\nBcc: x@example.org\",main,,,\n"
        "chloé@example.org,Chloé,sports;technology,weekly,,\n"
        "dan@example.org,Dan,main,daily,UTC,99\n"  # line 6: the quoted name above spans two lines
        "eve@example.org,Eve,main,daily,localtime,8\n",
        encoding="utf-8",
    )
    code, out, err = run("subscribers", "import", str(path), "--dry-run")
    assert code == 1 and "would add 2" in out
    assert run("subscribers", "list")[2].strip() == "0 subscribers"
    code, out, err = run("subscribers", "import", str(path), "--confirmed")
    assert code == 1
    assert out.strip().endswith("added 2, already present 0, opted out (left unsubscribed) 0, refused 3")
    assert f"error: {path}:7: timezone: 'localtime' is not a place's time zone" in err
    assert f"error: {path}:3: name: contains a line break" in err
    assert f"error: {path}:6: send_hour: expected a whole hour 0 to 23, got 99" in err
    run("subscribers", "unsubscribe", "ann@example.org")
    code, out, _ = run("subscribers", "import", str(path), "--confirmed")
    assert "added 0, already present 1, opted out (left unsubscribed) 1, refused 3" in out
    assert "unsubscribed" in run("subscribers", "show", "ann@example.org")[1]


def test_export_writes_csv_that_filters_by_status(run):
    run("subscribers", "add", "ann@example.org", "--name", "Ann, \"the\" first", "--categories", "main", "--confirmed")
    run("subscribers", "add", "bob@example.org", "--categories", "sports,main")
    code, out, _ = run("subscribers", "export")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["email"] for r in rows] == ["ann@example.org", "bob@example.org"]
    assert rows[0]["name"] == "Ann, \"the\" first" and rows[1]["categories"] == "main,sports"
    assert rows[0]["status"] == "active" and rows[0]["confirmed_at"].endswith("+00:00")
    code, out, _ = run("subscribers", "export", "--status", "pending")
    assert [r["email"] for r in csv.DictReader(io.StringIO(out))] == ["bob@example.org"]


def test_db_upgrade_and_status(run):
    code, out, _ = run("db", "status")
    assert code == 0 and "at nothing" in out and "(empty)" in out
    code, out, _ = run("db", "upgrade")
    assert code == 0 and f"migrated from an empty database to {head_revision()}" in out
    code, out, _ = run("db", "upgrade")
    assert f"already at migration {head_revision()}" in out
    assert "(up to date)" in run("db", "status")[1]
