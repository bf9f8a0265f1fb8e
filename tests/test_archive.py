"""The public archive: digests sent through a real SMTP server land, without any personal data, on
/archive/ pages (per day or ISO week, per category) with an RSS feed per category; each digest's
"view in browser" link opens its archive page; issue numbers count each subscriber's series."""

from __future__ import annotations

import email
import email.policy
import re
from contextlib import contextmanager
from datetime import timedelta

import feedparser
import lxml.html
import pytest

from syndicate.archive import build_archive, period_label
from syndicate.delivery._service import SendRequest
from syndicate.storage import database_stamp
from syndicate.subscribers._store import SubscriberStore
from syndicate.wiring import content_source
from tests.outbox_support import NOW, add_subscribers, open_db, service, settings_for
from tests.smtpserver import smtp_server  # noqa: F401  (fixture)


@pytest.fixture
def setup(tmp_path, smtp_server, database_url):
    server = smtp_server(strict=True)
    database = open_db(database_url)
    yield settings_for(tmp_path, database_url, port=server.port), database, server
    database.close()


def send(settings, database, when, **request):
    svc = service(settings, database)
    run = svc.plan_manual(SendRequest(**request), when)
    return svc.work(run.run_id, now=when)


def messages(server):
    return [email.message_from_bytes(r.data, policy=email.policy.default) for r in server.received]


def test_sent_digests_make_archive_pages_and_feeds_without_personal_data(setup):
    settings, database, server = setup
    people = add_subscribers(database, 3)
    SubscriberStore(database).set_preferences(people[2].id, now=NOW, frequency="weekly", valid_categories=("city", "science", "sport"))
    assert send(settings, database, NOW).sent == 3
    report = build_archive(settings, content_source(settings), database, NOW + timedelta(minutes=5))
    assert report.issues == 2 and report.collected > 0
    public = settings.output.folder
    daily = public / "archive" / "daily" / "2026-11-26" / "index.html"
    weekly = public / "archive" / "weekly" / "2026-W48" / "index.html"
    assert daily.is_file() and weekly.is_file()
    page = lxml.html.fromstring(daily.read_bytes())
    assert page.findtext(".//h1") == "Thursday 26 November 2026"
    assert [h.text_content() for h in page.cssselect("section[aria-labelledby^=section-] h2")] == ["city", "science", "sport"]
    assert page.cssselect("section.subscribe h2")[0].text_content() == "Get city, science and sport by email"
    assert {a.text_content() for a in page.cssselect("ul.articles a")} == {f"Story {i}" for i in range(6)}
    everything = b"".join(p.read_bytes() for p in (public / "archive").rglob("*") if p.is_file())
    for person in people:  # no address, no name
        assert person.email.encode() not in everything and person.name.encode() not in everything
    # "View in browser" in each digest opens its own archive page.
    for message in messages(server):
        view = re.search(r"View in browser: (\S+)", message.get_body(("plain",)).get_content()).group(1)
        assert (public / view.split("/", 3)[3] / "index.html").is_file(), view
    # One RSS feed per category, readable by feedparser, one item per issue that had the category.
    feed = feedparser.parse((public / "archive" / "categories" / "sport.rss.xml").read_bytes())
    assert not feed.bozo and feed.feed.title == "Test Times: sport digests"
    assert sorted(e.title for e in feed.entries) == [
        "sport: Thursday 26 November 2026 (daily)", "sport: Week 48 of 2026 (23 November to 29 November) (weekly)"]
    assert all("#section-sport" in e.link for e in feed.entries)
    index = lxml.html.fromstring((public / "archive" / "index.html").read_bytes())
    assert "Daily digests" in index.text_content() and "Weekly digests" in index.text_content()
    # A second build finds nothing new and rewrites nothing.
    again = build_archive(settings, content_source(settings), database, NOW + timedelta(minutes=10))
    assert (again.collected, again.written) == (0, ())


def test_the_archive_outlives_pruning_and_issue_numbers_never_go_back(setup):
    settings, database, server = setup
    add_subscribers(database, 1)
    assert send(settings, database, NOW).sent == 1
    build_archive(settings, content_source(settings), database, NOW + timedelta(minutes=1))
    svc = service(settings, database)
    assert svc.outbox.prune(NOW + timedelta(days=400)) == 1  # the run and its delivery are gone
    later = NOW + timedelta(days=2)
    from tests.site_helpers import write_article
    write_article(settings.content.folder, "late", title="A later story", categories=["city"], date=(later - timedelta(hours=1)).isoformat())
    assert send(settings, database, later).sent == 1
    first, second = messages(server)
    assert "Issue 1" in first.get_body(("plain",)).get_content()
    assert "Issue 2" in second.get_body(("plain",)).get_content()  # counted past the pruned delivery
    build_archive(settings, content_source(settings), database, later + timedelta(minutes=1))
    days = sorted(p.name for p in (settings.output.folder / "archive" / "daily").iterdir())
    assert days == ["2026-11-26", "2026-11-28"]


def test_a_build_with_nothing_new_to_archive_opens_no_database(setup):
    """With a SQLite file, whose stat tells a change, the archive asks the database only when it
    changed (or a page went missing); a server database is asked every time."""
    settings, database, server = setup
    add_subscribers(database, 2)
    assert send(settings, database, NOW).sent == 2
    opened = []

    @contextmanager
    def opener():
        opened.append(True)
        yield database

    def build(when):
        return build_archive(settings, content_source(settings), opener, when,
                             database_stamp=lambda: database_stamp(settings.database))

    first = build(NOW + timedelta(minutes=5))
    assert first.collected > 0 and first.issues == 1 and len(opened) == 1
    again = build(NOW + timedelta(minutes=10))
    on_sqlite = settings.database.url.startswith("sqlite:")
    assert (again.issues, again.written) == (1, ()) and len(opened) == (1 if on_sqlite else 2)
    index = settings.output.folder / "archive" / "index.html"
    index.unlink()  # a page gone behind the build's back is written again
    assert build(NOW + timedelta(minutes=15)).written == ("archive/index.html",) and index.is_file()
    from tests.site_helpers import write_article
    later = NOW + timedelta(days=2)
    write_article(settings.content.folder, "late", title="A later story", categories=["city"], date=(later - timedelta(hours=1)).isoformat())
    assert send(settings, database, later).sent == 2  # the database changed: the next build collects
    before = len(opened)
    report = build(later + timedelta(minutes=1))
    assert report.collected > 0 and report.issues == 2 and len(opened) == before + 1
    assert (settings.output.folder / "archive" / "daily" / "2026-11-28" / "index.html").is_file()


def test_without_a_database_file_the_empty_archive_is_written_and_no_database_made(tmp_path):
    settings = settings_for(tmp_path, f"sqlite:///{tmp_path / 'var' / 'syndicate.db'}")

    def opener():
        raise AssertionError("the database was opened")

    report = build_archive(settings, content_source(settings), opener, NOW,
                           database_stamp=lambda: database_stamp(settings.database))
    assert (report.issues, report.collected, report.written) == (0, 0, ("archive/index.html",))
    page = lxml.html.fromstring((settings.output.folder / "archive" / "index.html").read_bytes())
    assert page.findtext(".//h1") and not (tmp_path / "var" / "syndicate.db").exists()


def test_period_labels():
    assert period_label("daily", "2026-12-05") == "Saturday 5 December 2026"
    assert period_label("weekly", "2026-W49") == "Week 49 of 2026 (30 November to 6 December)"
