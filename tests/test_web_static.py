"""The built site over real HTTP: feeds a feed reader can read, content types, ETag/304, gzip, no escape from public/."""

from __future__ import annotations

import gzip
import http.client
import json
import os
import time
from email.utils import formatdate
from urllib.parse import urlsplit

import feedparser
import httpx
import pytest

from tests.web_helpers import serve


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with serve(tmp_path_factory.mktemp("static")) as running:
        yield running


def raw_get(site, path: str, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    """A GET sent byte for byte (no client-side path normalisation)."""
    parts = urlsplit(site.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    connection.putrequest("GET", path, skip_accept_encoding=True)
    for name, value in (headers or {}).items():
        connection.putheader(name, value)
    connection.endheaders()
    response = connection.getresponse()
    response.body = response.read()  # type: ignore[attr-defined]
    connection.close()
    return response


def test_feeds_over_http_are_read_by_feedparser(site):
    with httpx.Client(base_url=site.url) as client:
        for path, version in (("/feeds/all.rss.xml", "rss20"), ("/feeds/all.atom.xml", "atom10")):
            response = client.get(path)
            assert response.status_code == 200
            feed = feedparser.parse(response.content, response_headers=dict(response.headers))
            assert not feed.bozo, feed.get("bozo_exception")
            assert feed.version == version
            assert len(feed.entries) == 15 and all(entry.title for entry in feed.entries)
        json_feed = client.get("/feeds/all.json").json()
        assert json_feed["version"].startswith("https://jsonfeed.org/version/1")
        assert len(json_feed["items"]) == 15


def test_content_types(site):
    expected = {
        "/feeds/all.rss.xml": "application/rss+xml",
        "/feeds/all.atom.xml": "application/atom+xml",
        "/feeds/all.json": "application/feed+json",
        "/feeds/index.opml": "text/x-opml",
        "/": "text/html",
        "/index.html": "text/html",
    }
    with httpx.Client(base_url=site.url) as client:
        for path, kind in expected.items():
            response = client.get(path)
            assert response.status_code == 200, path
            assert response.headers["content-type"].split(";")[0] == kind, path
            assert response.headers["x-content-type-options"] == "nosniff"


def test_etag_and_last_modified_give_304_with_the_same_validators(site):
    with httpx.Client(base_url=site.url, headers={"accept-encoding": "identity"}) as client:
        first = client.get("/feeds/all.rss.xml")
        etag, modified = first.headers["etag"], first.headers["last-modified"]
        assert etag.startswith('"') and not etag.startswith("W/")
        assert first.headers["cache-control"]
        again = client.get("/feeds/all.rss.xml", headers={"if-none-match": etag})
        assert again.status_code == 304 and again.content == b""
        assert again.headers["etag"] == etag and again.headers["cache-control"] == first.headers["cache-control"]
        assert client.get("/feeds/all.rss.xml", headers={"if-modified-since": modified}).status_code == 304
        assert client.get("/feeds/all.rss.xml", headers={"if-none-match": '"other", ' + etag}).status_code == 304
        assert client.get("/feeds/all.rss.xml", headers={"if-none-match": '"other"'}).status_code == 200
        # If-None-Match decides when both are sent (RFC 9110): a stale tag means a full answer.
        both = client.get("/feeds/all.rss.xml", headers={"if-none-match": '"stale"', "if-modified-since": modified})
        assert both.status_code == 200
        old = formatdate(0, usegmt=True)
        assert client.get("/feeds/all.rss.xml", headers={"if-modified-since": old}).status_code == 200


def test_a_changed_file_gets_a_new_etag(site):
    path = site.settings.output.folder / "feeds" / "all.json"
    with httpx.Client(base_url=site.url) as client:
        before = client.get("/feeds/all.json").headers["etag"]
        data = json.loads(path.read_text())
        data["title"] = "Changed"
        path.write_text(json.dumps(data))
        later = time.time() + 5
        os.utime(path, (later, later))
        response = client.get("/feeds/all.json", headers={"if-none-match": before})
        assert response.status_code == 200 and response.json()["title"] == "Changed"
        assert response.headers["etag"] != before


def test_gzip_only_when_asked(site):
    plain = raw_get(site, "/feeds/all.atom.xml")
    assert plain.getheader("content-encoding") is None
    packed = raw_get(site, "/feeds/all.atom.xml", {"Accept-Encoding": "br;q=1, gzip;q=0.8"})
    assert packed.getheader("content-encoding") == "gzip"
    assert "Accept-Encoding" in packed.getheader("vary")
    assert gzip.decompress(packed.body) == plain.body
    assert len(packed.body) < len(plain.body) / 2
    refused = raw_get(site, "/feeds/all.atom.xml", {"Accept-Encoding": "gzip;q=0"})
    assert refused.getheader("content-encoding") is None
    # The gzip representation has its own strong tag, and it revalidates too.
    again = raw_get(site, "/feeds/all.atom.xml", {"Accept-Encoding": "gzip", "If-None-Match": packed.getheader("etag")})
    assert again.status == 304 and again.getheader("etag") == packed.getheader("etag")
    assert packed.getheader("etag") != plain.getheader("etag")


@pytest.mark.parametrize("path", [
    "/../../../../etc/passwd", "/feeds/../../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd",
    "/feeds/..%2f..%2f..%2fetc%2fpasswd", "/..%5c..%5cetc%5cpasswd", "/%00", "/.build-manifest",
])
def test_nothing_outside_the_output_folder_is_served(site, path):
    response = raw_get(site, path)
    assert response.status in (400, 404)
    assert b"root:" not in response.body


def test_a_symlink_out_of_the_output_folder_is_not_followed(site, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    link = site.settings.output.folder / "leak.txt"
    link.symlink_to(secret)
    try:
        assert raw_get(site, "/leak.txt").status == 404
    finally:
        link.unlink()


def test_folders_serve_their_index_and_gain_a_slash(site):
    with httpx.Client(base_url=site.url) as client:
        redirect = client.get("/categories/main")
        assert redirect.status_code == 301 and redirect.headers["location"] == "/categories/main/"
        page = client.get("/categories/main/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert client.get("/no/such/file.xml").status_code == 404
        head = client.head("/feeds/all.rss.xml")
        assert head.status_code == 200 and head.content == b"" and int(head.headers["content-length"]) > 1000
        assert client.post("/feeds/all.rss.xml").status_code == 405


def test_old_article_urls_with_the_folder_answer_301_to_the_new_ones(site):
    moves = (site.settings.output.folder / "redirects.map").read_text()
    assert "/articles/posts-derby-result/ /articles/derby-result/;" in moves.splitlines()
    with httpx.Client(base_url=site.url) as client:
        for old in ("/articles/posts-derby-result/", "/articles/posts-derby-result"):
            response = client.get(old)
            assert response.status_code == 301 and response.headers["location"] == "/articles/derby-result/", old
        landed = client.get("/articles/posts-derby-result/", follow_redirects=True)
        assert landed.status_code == 200 and "Late Goal Settles the City Derby" in landed.text


@pytest.mark.parametrize("path", ["/" + "x" * 300, "/feeds/" + "x" * 300, "/articles/" + "x" * 300 + "/", "/" + "x" * 5000])
def test_a_name_longer_than_the_file_system_holds_is_not_found(site, path):
    with httpx.Client(base_url=site.url) as client:
        assert client.get(path).status_code == 404
        assert client.head(path).status_code == 404


def test_an_unknown_path_gets_the_html_404_page(site):
    with httpx.Client(base_url=site.url) as client:
        response = client.get("/no/such/page")
    assert response.status_code == 404 and response.headers["content-type"].startswith("text/html")
    assert "This page does not exist" in response.text and 'action="' in response.text  # with its subscribe box
