"""Export then `import --restore` is a backup: every status, source and time comes back as it was."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from syndicate.cli import main
from syndicate.subscribers._csv import write_subscribers
from syndicate.subscribers._store import SubscriberDefaults, SubscriberStore, new_subscriber
from tests.outbox_support import open_db

REPO = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def _config(tmp_path: Path, name: str, url: str) -> Path:
    config = tmp_path / f"{name}.toml"
    config.write_text(
        f'[content]\nfolder = "{REPO / "content"}"\ncache = "{tmp_path / name / "articles.pickle"}"\n'
        f'[categories.main]\ntitle = "Main"\n[database]\nurl = "{url}"\n',
        encoding="utf-8",
    )
    return config


@pytest.fixture
def cli(capsys):
    def run(config: Path, *args: str) -> tuple[int, str, str]:
        code = 0
        try:
            main(["--config", str(config), *args])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        out = capsys.readouterr()
        return code, out.out, out.err
    return run


def _fill(database) -> None:
    """One subscriber in every status, from every source, with a high-water mark on one."""
    store = SubscriberStore(database)

    def new(email: str, **kw):
        return new_subscriber(email, categories=kw.pop("categories", ["main"]), valid_categories=["main", "sports"],
                              defaults=SubscriberDefaults(), **kw)

    store.add(new("pending@example.org", name="Pia Pending"), now=T0, source="signup")
    active = store.add(new("active@example.org", categories=[], frequency="weekly", weekday="friday"), now=T0, source="api")
    store.confirm(active.id, T0 + timedelta(hours=1))
    with database.write() as connection:
        store.within(connection).move_high_water([(active.id, T0 + timedelta(days=2, microseconds=123456))])
    gone = store.add(new("gone@example.org", name='Quote "Q" Person, Esq.'), now=T0, confirmed=True, source="cli")
    store.unsubscribe(gone.id, T0 + timedelta(days=3))
    bounced = store.import_batch([new("bounced@example.org", timezone="Asia/Tokyo", send_hour=5)], now=T0, confirmed=True)
    assert bounced.added == 1
    with database.write() as connection:
        assert store.within(connection).mark_bounced(store.get_by_email("bounced@example.org").id, T0 + timedelta(days=4))


def _export(database) -> str:
    out = io.StringIO()
    write_subscribers(SubscriberStore(database).iter_subscribers(), out)
    return out.getvalue()


def test_export_restore_into_an_empty_database_is_byte_equal(tmp_path, cli, database_url):
    """From SQLite into an empty SQLite file, or an empty PostgreSQL schema."""
    source = open_db(f"sqlite:///{tmp_path / 'a.db'}")
    _fill(source)
    first = _export(source)
    source.close()
    rows = {r["email"]: r for r in csv.DictReader(io.StringIO(first))}
    assert {e: (r["status"], r["source"]) for e, r in rows.items()} == {
        "pending@example.org": ("pending", "signup"), "active@example.org": ("active", "api"),
        "gone@example.org": ("unsubscribed", "cli"), "bounced@example.org": ("bounced", "import"),
    }
    assert rows["gone@example.org"]["unsubscribed_at"] == "2026-03-04T09:30:00+00:00"
    backup = tmp_path / "backup.csv"
    backup.write_text(first, encoding="utf-8")

    config = _config(tmp_path, "b", database_url)
    assert cli(config, "db", "upgrade")[0] == 0
    code, out, err = cli(config, "subscribers", "import", str(backup), "--restore", "--dry-run")
    assert code == 0, err
    assert "would add 2, already present 0, would restore as opted out 2, refused 0" in out
    code, out, err = cli(config, "subscribers", "import", str(backup), "--restore")
    assert code == 0, err
    code, again, _ = cli(config, "subscribers", "export")
    assert again == first  # byte-equal
    # Restored as they were: the pending one is not active, the unsubscribed one keeps its proof.
    code, out, _ = cli(config, "subscribers", "show", "pending@example.org")
    assert "status:       pending" in out
    # A second restore changes nothing.
    code, out, _ = cli(config, "subscribers", "import", str(backup), "--restore")
    assert "restored 0, already present 4" in out and cli(config, "subscribers", "export")[1] == first


def test_a_plain_import_never_activates_a_row_that_never_confirmed(tmp_path, cli):
    source = open_db(f"sqlite:///{tmp_path / 'a.db'}")
    _fill(source)
    backup = tmp_path / "backup.csv"
    backup.write_text(_export(source), encoding="utf-8")
    source.close()
    config = _config(tmp_path, "b", f"sqlite:///{tmp_path / 'b.db'}")
    cli(config, "db", "upgrade")
    code, out, err = cli(config, "subscribers", "import", str(backup), "--confirmed")
    assert code == 1  # the two opted-out rows are refused, with their line and a pointer to --restore
    assert err.count("an import never subscribes an opted-out address (--restore keeps it as it is)") == 2
    assert "added 2" in out
    shown = {r["email"]: r["status"] for r in csv.DictReader(io.StringIO(cli(config, "subscribers", "export")[1]))}
    assert shown == {"pending@example.org": "pending", "active@example.org": "active"}
    code, out, err = cli(config, "subscribers", "import", str(backup), "--restore", "--confirmed")
    assert code == 2 and "--confirmed does not apply" in err


def test_restore_refuses_an_active_row_without_proof_of_opt_in(tmp_path, cli):
    config = _config(tmp_path, "b", f"sqlite:///{tmp_path / 'b.db'}")
    cli(config, "db", "upgrade")
    path = tmp_path / "forged.csv"
    path.write_text("email,status,confirmed_at,source\n"
                    "a@example.org,active,,cli\n"
                    "b@example.org,active,2026-01-01T00:00:00+00:00,cli\n"
                    "c@example.org,active,yesterday,cli\n"
                    "d@example.org,pending,,martians\n", encoding="utf-8")
    code, out, err = cli(config, "subscribers", "import", str(path), "--restore")
    assert code == 1
    assert f"{path}:2: status is active but confirmed_at is empty: no proof of opt-in" in err
    assert f"{path}:4: confirmed_at: 'yesterday' is not an ISO 8601 time" in err
    assert f"{path}:5: source: expected one of" in err
    assert "restored 1," in out
