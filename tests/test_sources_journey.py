"""The journey of another site's post: fetched from a real HTTP server, in our feeds (read by
feedparser) beside local articles, in a subscriber's digest once, not again after a re-fetch,
and updated in our feeds after an edit upstream."""

from __future__ import annotations

import email
import email.policy
import json
from datetime import timedelta

import feedparser

from syndicate.delivery._service import SendRequest
from syndicate.mail.memory import MemoryBackend
from syndicate.site import build_site
from syndicate.sources import FetchPolicy
from syndicate.wiring import build_settings, content_source, make_sources
from tests.feedserver import Route, feed_server
from tests.outbox_support import NOW, add_subscribers, open_db, service, settings_for


def upstream(title: str) -> bytes:
    return f"""<?xml version="1.0"?><rss version="2.0"><channel><title>Lab Notes</title>
<link>https://lab.example/</link><description>A lab's blog</description>
<item><guid isPermaLink="false">lab-17</guid><link>https://lab.example/posts/17</link><title>{title}</title>
<pubDate>Thu, 26 Nov 2026 06:30:00 GMT</pubDate><description>What we found in the samples.</description>
</item></channel></rss>""".encode()


def digest_texts(backend: MemoryBackend) -> list[str]:
    texts = []
    for message in backend.outbox:
        parsed = email.message_from_bytes(message.data, policy=email.policy.default)
        texts.append(parsed.get_body(("plain",)).get_content())
    return texts


def test_a_source_item_goes_into_feeds_and_one_digest_and_is_updated_after_an_upstream_edit(tmp_path, database_url):
    with feed_server() as server:
        server.routes["/feed"] = Route(upstream("Microplastics in river water"))
        settings = settings_for(tmp_path, database_url, sources={"lab": {"url": server.url("/feed"), "categories": ["science"]}})
        backend = MemoryBackend()
        delivery = service(settings, open_db(database_url), backend)
        sources = make_sources(settings, delivery.database, policy=FetchPolicy(read_timeout=2))
        [subscriber] = add_subscribers(delivery.database, 1, categories=("science",))

        [report] = sources.fetch_due(NOW)
        assert (report.status, report.new) == ("ok", 1)
        build = build_site(build_settings(settings), content_source(settings))
        assert build.ok

        # Our feeds: the item, linked to the original, its source named; local articles beside it.
        rss = feedparser.parse((build.feeds_folder / "science.rss.xml").read_bytes())
        titles = [e.title for e in rss.entries]
        assert "Microplastics in river water" in titles and "Story 1" in titles
        item = next(e for e in rss.entries if e.title == "Microplastics in river water")
        assert item.link == "https://lab.example/posts/17"
        assert item.source == {"href": server.url("/feed"), "title": "Lab Notes"}
        atom = feedparser.parse((build.feeds_folder / "all.atom.xml").read_bytes())
        entry = next(e for e in atom.entries if e.title == "Microplastics in river water")
        assert entry.source.title == "Lab Notes" and entry.link == "https://lab.example/posts/17"
        feed_json = json.loads((build.feeds_folder / "science.json").read_text())
        [as_json] = [i for i in feed_json["items"] if i["url"] == "https://lab.example/posts/17"]
        assert as_json["_source"] == {"title": "Lab Notes", "feed_url": server.url("/feed")}
        page = (build.output / "categories" / "science" / "index.html").read_text()
        assert "via <a href=\"" + server.url("/feed") + "\" rel=\"nofollow\">Lab Notes</a>" in page

        # One digest carries it, naming its source.
        delivery.send_manual(SendRequest(), NOW)
        [text] = digest_texts(backend)
        assert "Microplastics in river water" in text and "(via Lab Notes)" in text
        assert "https://lab.example/posts/17" in text
        assert backend.outbox[0].recipients == (subscriber.email,)

        # Fetched again, unchanged: not sent again.
        later = NOW + timedelta(hours=2)
        again = sources.fetch("lab", later)
        assert (again.new, again.updated, again.unchanged) == (0, 0, 1)
        build_site(build_settings(settings), content_source(settings))
        delivery.send_manual(SendRequest(), later)
        assert len(backend.outbox) == 1

        # Edited upstream: the same item, updated in our feeds (same id, new title, newer <updated>).
        server.routes["/feed"] = Route(upstream("Microplastics in river water (corrected figures)"))
        edited = sources.fetch("lab", later + timedelta(hours=1))
        assert (edited.new, edited.updated) == (0, 1)
        rebuilt = build_site(build_settings(settings), content_source(settings))
        assert "feeds/science.atom.xml" in rebuilt.written
        atom = feedparser.parse((rebuilt.feeds_folder / "science.atom.xml").read_bytes())
        [after] = [e for e in atom.entries if e.link == "https://lab.example/posts/17"]
        assert after.title == "Microplastics in river water (corrected figures)"
        assert after.id == entry.id
        assert after.updated_parsed > after.published_parsed
        delivery.send_manual(SendRequest(), later + timedelta(hours=1))
        assert len(backend.outbox) == 1  # an edit is no new article: no second digest
