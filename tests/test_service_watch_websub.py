"""`syndicate run` (a real subprocess) rebuilds as soon as an article is saved, leader or not,
and tells a WebSub hub (a real HTTP server in the test) about exactly the feeds that changed."""

from __future__ import annotations

import time

import feedparser
import httpx
import pytest

from syndicate.config import settings_from_mapping
from syndicate.wiring import build_settings, content_source, load_corpus
from tests.feedserver import feed_server
from tests.service_helpers import RunningService, write_config
from tests.site_helpers import write_article

BASE = "http://127.0.0.1:8000"


def wait_until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"not within {timeout} s: {what}")


def feeds(*slugs: str, base: str = BASE) -> set[str]:
    return {f"{base}/feeds/{slug}{suffix}" for slug in slugs for suffix in (".rss.xml", ".atom.xml", ".json")}


@pytest.mark.timing
def test_a_save_is_served_within_a_second_and_exactly_the_changed_feeds_are_announced(tmp_path):
    content = tmp_path / "content"
    write_article(content, "alpha", title="Alpha", categories=["Science"], date="2026-11-20T10:00:00+00:00")
    write_article(content, "beta", title="Beta", categories=["Sport"], date="2026-11-21T10:00:00+00:00")
    with feed_server() as hub:
        hub.refuse_posts = 1  # the hub's first answer is a 503: that announcement is retried
        config = write_config(tmp_path, content=content, extra=f"""
[websub]
hubs = ["{hub.url('/hub')}"]

[watch]
debounce_ms = 50
""")
        with RunningService(config, "--no-scheduler") as service:  # not the scheduler's leader: it still watches
            base = service.base_url
            service.wait_for("watching for changes")
            first = wait_until(lambda: len(hub.announced()) == 10 and hub.announced(), 15, "the first build announced")
            # base_url is the loopback default: the service's links follow the port it bound (issue 17)
            assert set(first) == feeds("all", "science", "sport", base=base)
            assert first.count(first[0]) == 2  # refused once, then accepted
            served = feedparser.parse(httpx.get(f"{base}/feeds/all.atom.xml").content)
            assert {(link.rel, link.href) for link in served.feed.links} >= {("hub", hub.url("/hub")), ("self", f"{base}/feeds/all.atom.xml")}
            time.sleep(0.6)  # the watch is in place

            before = len(hub.posts)
            started = time.monotonic()
            write_article(content, "alpha", title="Alpha, edited", categories=["Science"], date="2026-11-20T10:00:00+00:00")
            wait_until(lambda: b"Alpha, edited" in httpx.get(f"{base}/feeds/science.rss.xml").content, 5, "the edit served")
            elapsed = time.monotonic() - started
            assert elapsed < 1.0, f"the edit took {elapsed:.2f} s to reach the served feed"

            wait_until(lambda: len(hub.announced(since=before)) >= 6, 10, "the edit announced")
            time.sleep(0.5)  # nothing else comes
            changed = hub.announced(since=before)
            assert sorted(changed) == sorted(feeds("all", "science", base=base))
        assert "rebuilt after a change" in service.output


def test_build_with_another_content_folder_is_incremental_and_keeps_its_own_cache(tmp_path):
    settings = settings_from_mapping({
        "content": {"folder": str(tmp_path / "content"), "cache": str(tmp_path / "var" / "cache" / "articles.pickle")},
    })
    other = tmp_path / "elsewhere"
    for i in range(5):
        write_article(other, f"a{i}", title=f"Other {i}", categories=["News"], date="2026-11-20T10:00:00+00:00")
    write_article(tmp_path / "content", "a0", title="Configured", categories=["News"], date="2026-11-20T10:00:00+00:00")
    assert load_corpus(settings, other).parsed == 5
    again = load_corpus(settings, other)
    assert again.parsed == 0 and len(again.articles) == 5
    assert content_source(settings).cache_for(other) != settings.content.cache and content_source(settings).cache_for(other).exists()
    # The configured folder has its own cache: same file names, other articles.
    assert [a.title for a in load_corpus(settings).articles] == ["Configured"]
    assert load_corpus(settings, other).parsed == 0


def test_a_read_told_which_files_changed_finds_what_a_full_read_finds(tmp_path):
    from syndicate.content import CorpusMemory

    settings = settings_from_mapping({
        "content": {"folder": str(tmp_path / "content"), "cache": str(tmp_path / "var" / "cache" / "articles.pickle")},
    })
    content = tmp_path / "content"
    for i in range(4):
        write_article(content / "batch", f"a{i}", title=f"Story {i}", categories=["News"], date=f"2026-11-2{i}T10:00:00+00:00")
    memory = CorpusMemory()
    load_corpus(settings, memory=memory)
    write_article(content / "batch", "a1", title="Story 1, edited", categories=["News"], date="2026-11-21T10:00:00+00:00")
    write_article(content / "new", "b", title="Added", categories=["Sport"], date="2026-11-25T10:00:00+00:00")
    (content / "batch" / "a2.md").unlink()
    write_article(content / "batch", "a3", title="Unseen edit", categories=["News"], date="2026-11-23T10:00:00+00:00")
    told = load_corpus(settings, memory=memory, changed=["batch/a1.md", "new/b.md", "batch/a2.md"])
    assert [a.title for a in told.articles] == ["Added", "Story 3", "Story 1, edited", "Story 0"]
    assert told.parsed == 2  # only the two changed files were read; a3's edit waits for a full read
    full = load_corpus(settings, memory=CorpusMemory())
    assert [a.title for a in full.articles] == ["Added", "Unseen edit", "Story 1, edited", "Story 0"]
    # A changed folder (not an article file) makes it look at everything.
    (content / "batch" / "a0.md").unlink()
    assert "Story 0" not in [a.title for a in load_corpus(settings, memory=memory, changed=["batch"]).articles]


def test_a_watchers_rebuild_leaves_the_site_as_a_full_build_would(tmp_path):
    from syndicate.content import CorpusMemory
    from syndicate.site import build_site

    content = tmp_path / "content"
    for i in range(6):
        write_article(content, f"a{i}", title=f"Story {i}", categories=["News", "Sport"][i % 2:], date=f"2026-11-1{i}T10:00:00+00:00")
    settings = settings_from_mapping({
        "site": {"base_url": "https://news.example"},
        "content": {"folder": str(content), "cache": str(tmp_path / "var" / "cache" / "articles.pickle")},
        "output": {"folder": str(tmp_path / "public")},
    })
    source, memory = content_source(settings), CorpusMemory()
    assert build_site(build_settings(settings), source, memory=memory).ok
    edited = write_article(content, "a1", title="Story 1, edited", categories=["Sport"], date="2026-11-11T10:00:00+00:00")
    added = write_article(content, "b", title="Weather", categories=["Weather"], date="2026-11-20T10:00:00+00:00")
    report = build_site(build_settings(settings), source, memory=memory, changed=[str(edited), str(added)])
    assert {"feeds/all.rss.xml", "feeds/sport.atom.xml", "feeds/weather.json", "articles/b/index.html",
            "articles/a1/index.html", "categories/weather/index.html"} <= set(report.written)
    assert "feeds/news.rss.xml" not in report.written  # a1 was never in News
    assert b"Story 1, edited" in (tmp_path / "public" / "feeds" / "sport.rss.xml").read_bytes()
    again = build_site(build_settings(settings), source, memory=CorpusMemory())  # a fresh process's full check agrees
    assert again.written == () and again.removed == () and again.ok
