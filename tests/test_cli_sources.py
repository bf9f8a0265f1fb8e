"""`syndicate sources list|fetch|check` as a user runs them, `syndicate build` mixing the fetched
items in without opening the database, and the sources' state in GET /api/status."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import feedparser
import httpx
import pytest

from syndicate.wiring import make_sources
from tests.feedserver import Route, feed_server
from tests.test_cli_check import run
from tests.test_sources_fetch import GOOD
from tests.web_helpers import ADMIN_TOKEN, serve

AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}


def write_config(tmp_path, feed_url: str) -> str:
    path = tmp_path / "syndicate.toml"
    content = tmp_path / "content"
    content.mkdir()
    (content / "local.md").write_text("---\ntitle: Local story\ndate: 2026-11-01\ncategories: [News]\n---\nBody.\n")
    path.write_text(f"""[site]
timezone = "UTC"
[content]
folder = "content"
cache = "var/cache/articles.pickle"
[output]
folder = "public"
[database]
url = "sqlite:///var/syndicate.db"
[sources.blog]
url = "{feed_url}"
categories = ["News"]
title = "The Test Blog"
""")
    return str(path)


@pytest.mark.slow  # ten real `syndicate` processes: ~7 s
def test_check_fetch_list_and_build(tmp_path):
    with feed_server() as server:
        server.routes["/feed"] = Route(GOOD)
        server.routes["/broken"] = Route(b"no", status=500)
        config = write_config(tmp_path, server.url("/feed"))

        checked = run("--config", config, "sources", "check", server.url("/feed"), "--categories", "News")
        assert checked.returncode == 0, checked.stderr
        assert "rss20 feed 'Test Blog', 2 items" in checked.stdout
        assert "First" in checked.stdout and "https://blog.example/1" in checked.stdout
        broken = run("--config", config, "sources", "check", server.url("/broken"))
        assert broken.returncode == 1 and "HTTP 500 Internal Server Error" in broken.stdout

        dry = run("--config", config, "sources", "fetch", "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert "blog: ok: 2 new" in dry.stdout and "would publish: 2026-11-30 First <https://blog.example/1>" in dry.stdout
        assert "dry run: nothing stored" in dry.stdout
        assert "never fetched" in run("--config", config, "sources", "list").stdout

        fetched = run("--config", config, "sources", "fetch", "blog")
        assert fetched.returncode == 0 and "blog: ok: 2 new, 0 updated" in fetched.stdout
        listed = run("--config", config, "sources", "list").stdout  # piped: "# Sources", a header line, tab-separated rows
        lines = listed.splitlines()
        assert lines[0] == "# Sources"
        header, row = lines[1].split("\t"), next(line for line in lines if line.startswith("blog\t"))
        fields = dict(zip(header, row.split("\t")))
        assert (fields["title"], fields["status"], fields["items"]) == ("The Test Blog", "ok", "2")
        [as_json] = json.loads(run("--config", config, "sources", "list", "--json").stdout)
        assert (as_json["name"], as_json["title"], as_json["items"], as_json["last_status"]) == ("blog", "The Test Blog", 2, "ok")

        unknown = run("--config", config, "sources", "fetch", "nope")
        assert unknown.returncode == 2 and "unknown source 'nope' (known: blog)" in unknown.stderr

        built = run("--config", config, "build")
        assert built.returncode == 0, built.stdout + built.stderr
        feed = feedparser.parse((tmp_path / "public" / "feeds" / "news.rss.xml").read_bytes())
        assert [e.title for e in feed.entries] == ["First", "Second", "Local story"]
        assert feed.entries[0].source.title == "The Test Blog"

        server.routes["/feed"] = Route(b"<html>moved</html>", content_type="text/html")
        failed = run("--config", config, "sources", "fetch")
        assert failed.returncode == 1 and "blog: error: not an RSS, Atom or JSON feed" in failed.stdout


def test_the_sources_state_is_in_the_api_status(tmp_path):
    with feed_server() as server:
        server.routes["/feed"] = Route(GOOD)
        sections = {"sources": {"blog": {"url": server.url("/feed"), "categories": ["main"]}}}
        with serve(tmp_path, sections=sections) as site:
            make_sources(site.settings, site.database).fetch("blog", datetime(2026, 12, 1, tzinfo=UTC))
            status = httpx.get(f"{site.url}/api/status", headers=AUTH).json()
    [blog] = status["sources"]
    assert (blog["name"], blog["items"], blog["last_status"], blog["failures"]) == ("blog", 2, "ok", 0)
    assert blog["title"] == "Test Blog" and blog["next_fetch_at"] == "2026-12-01T01:00:00+00:00"
