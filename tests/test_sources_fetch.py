"""External feeds as sources, against a real HTTP server on 127.0.0.1: real-shaped feeds read,
broken ones recorded without losing the items already kept, politeness (conditional GET,
User-Agent, backoff, Retry-After, one request per host)."""

from __future__ import annotations

import gzip
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from syndicate.config import SourceSettings
from syndicate.content import read_snapshot, snapshot_path
from syndicate.sources import FetchPolicy, Sources
from tests.feedserver import FeedServer, Route, feed_server

DATA = Path(__file__).parent / "data" / "sources"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
POLICY = FetchPolicy(connect_timeout=5, read_timeout=1.5, deadline=3.0)  # roomy: the machine is shared


def feed(name: str) -> bytes:
    return (DATA / name).read_bytes()


def rss(*items: tuple[str, str, str, str], title: str = "Test Blog") -> bytes:
    """An RSS 2.0 document of (guid, link, title, pubDate) items."""
    body = "".join(
        f"<item><guid>{guid}</guid><link>{link}</link><title>{t}</title><pubDate>{date}</pubDate>"
        f"<description>About {t}.</description></item>"
        for guid, link, t, date in items
    )
    return (f'<?xml version="1.0"?><rss version="2.0"><channel><title>{title}</title>'
            f"<link>https://blog.example/</link><description>x</description>{body}</channel></rss>").encode()


GOOD = rss(("g1", "https://blog.example/1", "First", "Mon, 30 Nov 2026 10:00:00 GMT"),
           ("g2", "https://blog.example/2", "Second", "Sun, 29 Nov 2026 10:00:00 GMT"))


@pytest.fixture
def server():
    with feed_server() as running:
        yield running


def make_sources(database, tmp_path, server: FeedServer, policy: FetchPolicy = POLICY, **configs: dict) -> Sources:
    settings = {name: SourceSettings(**{"categories": ("garden",), **config, "url": server.url(config["url"])})
                for name, config in configs.items()}
    return Sources(database, settings, var_folder=tmp_path / "var", policy=policy)


def published(tmp_path) -> list:
    articles, problems = read_snapshot(snapshot_path(tmp_path / "var"))
    assert problems == ()
    return list(articles)


# ---------------------------------------------------------------- real-shaped feeds

def test_wordpress_rss_becomes_sanitised_articles_naming_their_source(database, tmp_path, server):
    server.routes["/feed/"] = Route(feed("wordpress.rss"))
    sources = make_sources(database, tmp_path, server, garden={"url": "/feed/", "title": "Garden Notes (WP)"})
    [report] = sources.fetch_due(NOW)
    assert (report.status, report.new) == ("ok", 3)
    articles = {a.title: a for a in published(tmp_path)}
    tomato = articles["Tomatoes on a balcony – what worked"]
    assert tomato.url == "https://gardennotes.example/2026/11/23/tomatoes-on-a-balcony/"
    assert tomato.source_name == "Garden Notes (WP)" and tomato.source_url == server.url("/feed/")
    assert tomato.author == "Maria Lopez"
    assert tomato.published == datetime(2026, 11, 23, 9, 12, 44, tzinfo=UTC)
    assert [c.slug for c in tomato.categories] == ["garden"]
    body = tomato.body_html
    assert "<strong>cherry</strong>" in body and 'href="https://gardennotes.example/seeds/"' in body
    for hostile in ("<script", "onerror", "javascript:", "<iframe", "tracker"):
        assert hostile not in body
    # An item with only a <description> publishes it as its body.
    assert "sponsored post about gloves" in articles["Sponsored: the best garden gloves"].body_html


def test_blogger_atom_json_feed_and_podcast_rss_are_read(database, tmp_path, server):
    server.routes["/atom"] = Route(feed("blogger.atom"), content_type="application/atom+xml")
    server.routes["/json"] = Route(feed("jsonfeed.json"), content_type="application/feed+json")
    server.routes["/pod"] = Route(feed("podcast.rss"))
    sources = make_sources(database, tmp_path, server, rail={"url": "/atom"}, micro={"url": "/json"},
                           pod={"url": "/pod", "categories": ("podcasts", "garden")})
    reports = {r.name: r for r in sources.fetch_due(NOW)}
    assert {n: (r.status, r.new) for n, r in reports.items()} == {"rail": ("ok", 2), "micro": ("ok", 2), "pod": ("ok", 2)}
    articles = {a.title: a for a in published(tmp_path)}

    venice = articles["Vienna to Venice by night"]
    assert venice.source_name == "Rail Journeys"  # no title configured: the feed's own
    assert venice.url == "https://railjourneys.blogspot.com/2026/11/vienna-to-venice-by-night.html"
    assert venice.published == datetime(2026, 11, 25, 22, 0, tzinfo=UTC)
    assert venice.updated == datetime(2026, 11, 25, 22, 3, 11, tzinfo=UTC)
    assert "Nightjet" in venice.body_html and "steal()" not in venice.body_html and "style=" not in venice.body_html

    reading = articles["Reading list for December"]
    assert reading.source_name == "Micro Notes" and reading.author == "Ada K."
    assert reading.published == datetime(2026, 11, 24, 17, 0, tzinfo=UTC)
    assert "<em>one</em>" in reading.body_html and "<script" not in reading.body_html
    untitled = next(a for a in articles.values() if a.url == "https://micro.example/2026/11/22/b")
    assert untitled.title.startswith("A short note without a title")
    assert "&lt;b&gt;not&lt;/b&gt;" in untitled.body_html  # content_text is text, never markup

    worms = articles["Episode 42: Worms"]
    assert worms.url == "https://soilpod.example/episodes/42"  # no <link>: the guid is a permalink
    assert 'href="https://cdn.soilpod.example/ep42.mp3"' in worms.body_html and "audio/mpeg, 34.6 MB" in worms.body_html
    assert [c.slug for c in worms.categories] == ["podcasts", "garden"]


# ---------------------------------------------------------------- politeness

def test_conditional_get_and_user_agent(database, tmp_path, server):
    server.routes["/f"] = Route(GOOD, etag='"v1"', headers={"Last-Modified": "Mon, 30 Nov 2026 10:00:00 GMT"})
    sources = make_sources(database, tmp_path, server, blog={"url": "/f", "interval": 60})
    assert sources.fetch("blog", NOW).status == "ok"
    again = sources.fetch("blog", NOW + timedelta(minutes=1))
    assert again.status == "not-modified" and not again.changed
    first, second = server.hits("/f")
    assert first.headers["user-agent"].startswith("syndicate/") and "if-none-match" not in first.headers
    assert second.headers["if-none-match"] == '"v1"'
    assert second.headers["if-modified-since"] == "Mon, 30 Nov 2026 10:00:00 GMT"
    [status] = sources.statuses()
    assert (status.items, status.last_status, status.failures) == (2, "not-modified", 0)
    assert status.next_fetch_at == NOW + timedelta(minutes=2)


def test_one_request_at_a_time_per_host(database, tmp_path, server):
    for i in range(3):
        server.routes[f"/f{i}"] = Route(GOOD, delay=0.3)
    sources = make_sources(database, tmp_path, server, **{f"s{i}": {"url": f"/f{i}"} for i in range(3)})
    reports = sources.fetch_due(NOW)
    assert [r.status for r in reports] == ["ok"] * 3
    assert server.max_in_flight == 1


def test_failures_back_off_doubling_and_retry_after_is_honoured(database, tmp_path, server):
    server.routes["/f"] = Route(b"oops", status=500, content_type="text/plain")
    sources = make_sources(database, tmp_path, server, blog={"url": "/f", "interval": 600})
    waits = []
    now = NOW
    for _ in range(3):
        report = sources.fetch("blog", now)
        assert report.status == "error" and report.error == "HTTP 500 Internal Server Error"
        waits.append(report.next_fetch_at - now)
        now = report.next_fetch_at
    assert waits == [timedelta(minutes=10), timedelta(minutes=20), timedelta(minutes=40)]
    server.routes["/f"] = Route(b"slow down", status=429, content_type="text/plain", headers={"Retry-After": "7200"})
    report = sources.fetch("blog", now)
    assert report.error == "HTTP 429 Too Many Requests" and report.next_fetch_at == now + timedelta(hours=2)
    # Not due yet: fetch_due leaves it alone.
    assert sources.fetch_due(now + timedelta(hours=1)) == []
    server.routes["/f"] = Route(GOOD)
    report = sources.fetch("blog", now + timedelta(hours=2))
    assert report.status == "ok" and sources.statuses()[0].failures == 0


# ---------------------------------------------------------------- broken feeds

BROKEN = {
    "malformed XML": (Route(b"<rss version='2.0'><channel><title>x</ti"), "malformed feed"),
    "HTTP 500": (Route(b"error", status=500), "HTTP 500"),
    "HTTP 404": (Route(b"gone", status=404), "HTTP 404"),
    "HTML page, not a feed": (Route(b"<!doctype html><html><body><p>Hello</p></body></html>", content_type="text/html"),
                              "not an RSS, Atom or JSON feed"),
    "empty body": (Route(b""), "not an RSS, Atom or JSON feed"),
    "timeout": (Route(GOOD, delay=4), "timed out"),
    "dripping body past the deadline": (Route(GOOD, drip=0.01), "not complete after 3 s"),
    "redirect loop": (Route(b"", redirect="/f"), "redirects (a redirect loop?)"),
    "50 MB response": (Route(b"", endless=True), "cut off after 10485760 bytes"),
    "declared 50 MB": (Route(b"<rss/>", headers={"Content-Length": str(50 * 1024 * 1024)}), None),
    "gzip bomb": (Route(gzip.compress(b" " * (60 * 1024 * 1024)), headers={"Content-Encoding": "gzip"}),
                  "cut off after 10485760 bytes"),
    "JSON that is no JSON Feed": (Route(b'{"items": []}', content_type="application/json"), "not a JSON Feed"),
    "broken JSON": (Route(b'{"version": "https://jsonfeed.org/version/1.1", "items": [', content_type="application/json"),
                    "malformed JSON Feed"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_feed_is_recorded_and_the_items_already_kept_stay(database, tmp_path, server, case):
    route, error = BROKEN[case]
    server.routes["/f"] = Route(GOOD)
    sources = make_sources(database, tmp_path, server, blog={"url": "/f"})
    assert sources.fetch_due(NOW)[0].new == 2
    before = published(tmp_path)
    if case == "declared 50 MB":  # a lying Content-Length: answered by hand
        def lying(request) -> None:
            request.send_response(200)
            request.send_header("Content-Type", "application/rss+xml")
            request.send_header("Content-Length", str(50 * 1024 * 1024))
            request.end_headers()
            request.wfile.write(b"<rss/>")
        route = Route(handler=lying)
        error = "response of 52428800 bytes refused"
    server.routes["/f"] = route
    report = sources.fetch("blog", NOW + timedelta(hours=2))
    assert report.status == "error" and error in report.error
    [status] = sources.statuses()
    assert (status.last_status, status.failures, status.items) == ("error", 1, 2)
    assert error in status.last_error
    sources.publish()
    assert published(tmp_path) == before


def test_a_json_feed_item_with_fields_of_another_shape_keeps_the_other_items(database, tmp_path, server):
    odd = [  # what a JSON Feed spells as lists or objects, given as numbers or text
        {"id": "j1", "url": "https://micro.example/1", "title": "Authors as a number", "content_text": "one", "authors": 5},
        {"id": "j2", "url": "https://micro.example/2", "title": "Attachments as a number", "content_text": "two",
         "attachments": 7},
        {"id": "j3", "url": "https://micro.example/3", "title": "Author as text", "content_text": "three", "author": "Ann"},
        {"id": "j4", "url": "https://micro.example/4", "title": "A plain one", "content_text": "four",
         "date_published": "2026-11-30T10:00:00Z"},
    ]
    body = json.dumps({"version": "https://jsonfeed.org/version/1.1", "title": "Micro", "authors": "everyone",
                       "items": odd}).encode()
    server.routes["/json"] = Route(body, content_type="application/feed+json")
    sources = make_sources(database, tmp_path, server, micro={"url": "/json"})
    [report] = sources.fetch_due(NOW)
    assert (report.status, report.new) == ("ok", 4), report
    assert sorted(a.title for a in published(tmp_path)) == [
        "A plain one", "Attachments as a number", "Author as text", "Authors as a number"]


def test_a_lone_surrogate_in_a_json_feed_link_never_reaches_a_page_or_a_message(database, tmp_path, server):
    """JSON's \\ud800 escapes decode to a lone surrogate, which no UTF-8 page or message can carry."""
    item = {"id": "s1", "url": "https://micro.example/a\ud800b", "title": "Odd link", "content_text": "text"}
    body = json.dumps({"version": "https://jsonfeed.org/version/1.1", "title": "Micro", "items": [item]}).encode()
    server.routes["/json"] = Route(body, content_type="application/feed+json")
    sources = make_sources(database, tmp_path, server, micro={"url": "/json"})
    assert [(r.status, r.new) for r in sources.fetch_due(NOW)] == [("ok", 1)]
    [article] = published(tmp_path)
    assert article.url == "https://micro.example/ab"
    assert article.url.encode("utf-8")


@pytest.mark.parametrize("odd", ["&#xD800;", "&#55296;", "&#x110000;", "&#99999999999999999999;"])
def test_a_character_reference_no_character_has_costs_no_item(database, tmp_path, server, odd):
    """feedparser fails a whole document on a reference to a surrogate or beyond U+10FFFF: it is read as U+FFFD."""
    body = feed("wordpress.rss").replace(b"<title>", f"<title>{odd}".encode(), 2)  # the channel's and the first item's
    server.routes["/f"] = Route(body)
    sources = make_sources(database, tmp_path, server, blog={"url": "/f"})
    [report] = sources.fetch_due(NOW)
    assert (report.status, report.new) == ("ok", 3), report
    assert sum(a.title.startswith("\ufffd") for a in published(tmp_path)) == 1


@pytest.mark.parametrize("nul", ["&#0;", "&#x0;", "\x00"])
def test_a_nul_in_a_remote_item_costs_no_item_and_is_stored_nowhere(database, tmp_path, server, nul):
    """PostgreSQL's text cannot hold a NUL at all: one in one title must not fail the feed's store."""
    body = feed("wordpress.rss").replace(b"<title>", f"<title>{nul}".encode(), 2)
    server.routes["/f"] = Route(body)
    sources = make_sources(database, tmp_path, server, blog={"url": "/f"})
    [report] = sources.fetch_due(NOW)
    assert (report.status, report.new) == ("ok", 3), report
    assert all("\x00" not in a.title for a in published(tmp_path))


def test_an_xml_declaration_naming_its_encoding_in_other_than_ascii_is_read(database, tmp_path, server):
    body = feed("wordpress.rss").replace(b'encoding="UTF-8"', b'encoding="UT\xc0-8"', 1)
    assert body != feed("wordpress.rss")
    server.routes["/f"] = Route(body)
    sources = make_sources(database, tmp_path, server, blog={"url": "/f"})
    assert [(r.status, r.new) for r in sources.fetch_due(NOW)] == [("ok", 3)]


def test_a_malformed_feed_with_readable_items_is_read_with_a_warning(database, tmp_path, server):
    server.routes["/f"] = Route(GOOD)
    sources = make_sources(database, tmp_path, server, blog={"url": "/f"})
    sources.fetch_due(NOW)
    server.routes["/f"] = Route(GOOD.replace(b"<title>Second</title>", b"<title>Fish & Chips</title>")
                                .replace(b"</channel></rss>", b""))  # a bare & and no end: not XML
    report = sources.fetch("blog", NOW + timedelta(hours=1))
    assert report.status == "ok" and "feed read despite" in report.warning
    assert "feed read despite" in sources.statuses()[0].last_error
    assert sorted(a.title for a in published(tmp_path)) == ["First", "Fish & Chips"]  # edited, not repeated


def test_invalid_missing_and_future_dates_are_normalised(database, tmp_path, server):
    server.routes["/f"] = Route(rss(("a", "https://b.example/a", "No date", ""),
                                    ("b", "https://b.example/b", "Bad date", "yesterday-ish"),
                                    ("c", "https://b.example/c", "Future", "Fri, 01 Jan 2100 00:00:00 GMT"),
                                    ("d", "https://b.example/d", "Good", "Mon, 30 Nov 2026 10:00:00 GMT")))
    sources = make_sources(database, tmp_path, server, blog={"url": "/f"})
    sources.fetch_due(NOW)
    dates = {a.title: a.published for a in published(tmp_path)}
    assert dates == {"No date": NOW, "Bad date": NOW, "Future": NOW, "Good": datetime(2026, 11, 30, 10, tzinfo=UTC)}
    sources.fetch("blog", NOW + timedelta(hours=3))  # seen again: still dated when first seen
    assert {a.title: a.published for a in published(tmp_path)}["No date"] == NOW


def test_guid_churn_is_deduplicated_by_link_and_otherwise_bounded(database, tmp_path, server):
    sources = make_sources(database, tmp_path, server, blog={"url": "/f", "max_items": 5})
    for round_ in range(4):  # new guids every fetch, same links
        server.routes["/f"] = Route(rss(*[(f"g{round_}-{i}", f"https://b.example/{i}", f"Post {i}", "Mon, 30 Nov 2026 10:00:00 GMT")
                                          for i in range(3)]))
        report = sources.fetch("blog", NOW + timedelta(hours=round_))
        assert report.new == (3 if round_ == 0 else 0)
    assert len(published(tmp_path)) == 3
    for round_ in range(4):  # new guids and new links every fetch: at most max_items kept
        server.routes["/f"] = Route(rss(*[(f"x{round_}-{i}", f"https://b.example/x{round_}/{i}", f"Churn {i}",
                                           "Mon, 30 Nov 2026 11:00:00 GMT") for i in range(4)]))
        report = sources.fetch("blog", NOW + timedelta(hours=5 + round_))
    assert report.warning and "guids" in report.warning
    assert sources.statuses()[0].items == 5 and len(published(tmp_path)) == 5


def test_an_item_edited_upstream_is_updated_not_repeated(database, tmp_path, server):
    server.routes["/f"] = Route(GOOD)
    sources = make_sources(database, tmp_path, server, blog={"url": "/f"})
    sources.fetch_due(NOW)
    [first] = [a for a in published(tmp_path) if a.title == "First"]
    server.routes["/f"] = Route(GOOD.replace(b"<title>First</title>", b"<title>First (corrected)</title>"))
    report = sources.fetch("blog", NOW + timedelta(hours=1))
    assert (report.new, report.updated, report.unchanged) == (0, 1, 1)
    articles = published(tmp_path)
    [edited] = [a for a in articles if a.id == first.id]
    assert len(articles) == 2 and edited.title == "First (corrected)"
    assert edited.published == first.published and edited.updated == NOW + timedelta(hours=1)


def test_include_and_exclude_filter_items(database, tmp_path, server):
    server.routes["/feed/"] = Route(feed("wordpress.rss"))
    sources = make_sources(database, tmp_path, server, garden={"url": "/feed/", "include": "(?i)tomato|compost",
                                                                "exclude": "(?i)winter"})
    [report] = sources.fetch_due(NOW)
    assert (report.new, report.filtered) == (1, 2)
    assert [a.title for a in published(tmp_path)] == ["Tomatoes on a balcony – what worked"]


def test_dry_run_stores_nothing_and_says_what_items_would_become(database, tmp_path, server):
    server.routes["/f"] = Route(GOOD, etag='"v1"')
    sources = make_sources(database, tmp_path, server, blog={"url": "/f"})
    report = sources.fetch("blog", NOW, dry_run=True)
    assert [a.title for a in report.articles] == ["First", "Second"]
    assert sources.statuses()[0].last_fetch_at is None and sources.statuses()[0].items == 0


def test_one_failing_source_never_stops_the_others(database, tmp_path, server):
    server.routes["/good"] = Route(GOOD)
    server.routes["/bad"] = Route(b"nope", status=503)
    sources = make_sources(database, tmp_path, server, good={"url": "/good"}, bad={"url": "/bad"},
                           off={"url": "/good", "enabled": False})
    reports = {r.name: r.status for r in sources.fetch_due(NOW)}
    assert reports == {"good": "ok", "bad": "error"}
    assert {a.source_name for a in published(tmp_path)} == {"Test Blog"}


def test_the_stop_event_skips_sources_not_yet_started(database, tmp_path, server):
    server.routes["/f"] = Route(GOOD)
    sources = make_sources(database, tmp_path, server, blog={"url": "/f"})
    stop = threading.Event()
    stop.set()
    assert [r.status for r in sources.fetch_due(NOW, stop)] == ["skipped"]
    assert server.requests == []


def test_the_same_item_twice_in_one_document_is_kept_once(database, tmp_path, server):
    server.routes["/f"] = Route(rss(("g1", "https://b.example/1", "Once", "Mon, 30 Nov 2026 10:00:00 GMT"),
                                    ("g2", "https://b.example/1", "Once again", "Mon, 30 Nov 2026 09:00:00 GMT"),
                                    ("g3", "https://b.example/3", "Other", "Mon, 30 Nov 2026 08:00:00 GMT"),
                                    ("g3", "https://b.example/3b", "Other copy", "Mon, 30 Nov 2026 07:00:00 GMT")))
    sources = make_sources(database, tmp_path, server, blog={"url": "/f"})
    assert sources.fetch("blog", NOW).new == 2
    assert sorted(a.title for a in published(tmp_path)) == ["Once", "Other"]


def test_the_scheduler_job_fetches_due_sources_and_rebuilds_only_when_items_changed(database, tmp_path, server):
    from syndicate.service._scheduler import fetch_sources

    server.routes["/f"] = Route(GOOD, etag='"v1"')
    sources = make_sources(database, tmp_path, server, blog={"url": "/f", "interval": 60})
    rebuilds = []
    stop = threading.Event()
    assert fetch_sources(sources, lambda: rebuilds.append(1), NOW, stop) == 1
    assert rebuilds == [1] and len(published(tmp_path)) == 2
    assert fetch_sources(sources, lambda: rebuilds.append(1), NOW + timedelta(seconds=30), stop) == 0  # not due
    assert fetch_sources(sources, lambda: rebuilds.append(1), NOW + timedelta(minutes=1), stop) == 1  # a 304
    assert rebuilds == [1] and len(server.hits("/f")) == 2
