"""The feeds a reader fetches: valid RSS 2.0, Atom 1.0, JSON Feed 1.1 and OPML, read back by real parsers."""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path, PurePosixPath
from xml.etree import ElementTree

import feedparser
import pytest

from syndicate.content._model import Article, Category
from syndicate.site._build import build_site
from syndicate.site._feeds import FeedSpec, SiteInfo, item_id, render_feed
from syndicate.site._urls import SiteUrls
from syndicate.wiring import build_settings, content_source, load_corpus
from tests.site_helpers import BASE_URL, copy_sample, make_settings, write_article

ATOM = "{http://www.w3.org/2005/Atom}"
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def build_configured(settings, **options):
    """build_site over the configured content folder."""
    return build_site(build_settings(settings), content_source(settings), **options)



def items(data: bytes, name: str) -> list[dict]:
    """The entries of a feed as a reader sees them: feedparser for RSS and Atom (it must find no
    fault), the json module for JSON Feed (feedparser 6.0 does not read JSON Feed)."""
    if name.endswith(".json"):
        return [
            {"id": i["id"], "title": i["title"], "link": i["url"], "content": i["content_html"],
             "summary": i.get("summary"), "author": i["authors"][0]["name"]}
            for i in json.loads(data)["items"]
        ]
    parsed = feedparser.parse(data)
    assert parsed.bozo == 0, f"{name}: {parsed.get('bozo_exception')}"
    return [
        {"id": e.id, "title": e.title, "link": e.link, "content": e.content[0].value,
         "summary": html.unescape(e.get("summary", "")), "author": e.get("author")}
        for e in parsed.entries
    ]


def file_items(path: Path) -> list[dict]:
    return items(path.read_bytes(), path.name)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """The repository's sample articles, built once: (settings, corpus, report)."""
    root = tmp_path_factory.mktemp("sample")
    settings = make_settings(root, copy_sample(root))
    report = build_site(build_settings(settings), content_source(settings), workers=1)
    assert report.ok, report.problems
    return settings, load_corpus(settings), report


def feed_files(report, suffix: str) -> list[Path]:
    files = sorted(report.feeds_folder.glob(f"*{suffix}"))
    assert files, f"no {suffix} feeds written"
    return files


def expected_articles(corpus, path: Path) -> tuple[Article, ...]:
    slug = path.name.split(".")[0]
    return corpus.articles if slug == "all" else corpus.in_category(slug)


@pytest.mark.parametrize("suffix", [".rss.xml", ".atom.xml", ".json"])
def test_feedparser_reads_every_feed_cleanly_with_the_expected_entries(sample, suffix):
    settings, corpus, report = sample
    urls = SiteUrls(BASE_URL)
    for path in feed_files(report, suffix):
        entries = file_items(path)
        articles = expected_articles(corpus, path)[:50]
        assert [e["title"] for e in entries] == [a.title for a in articles], path.name
        assert [e["id"] for e in entries] == [item_id(a, urls) for a in articles], path.name
        assert [e["link"] for e in entries] == [urls.article(a) for a in articles], path.name


def test_every_feed_carries_full_html_content_summary_author_and_dates(sample):
    _, corpus, report = sample
    newest = corpus.articles[0]
    for suffix in (".rss.xml", ".atom.xml", ".json"):
        entry = file_items(report.feeds_folder / f"all{suffix}")[0]
        assert entry["content"].strip() == newest.body_html.strip(), suffix
        assert entry["summary"] == newest.summary, suffix
        assert entry["author"] == newest.author, suffix
    for suffix in (".rss.xml", ".atom.xml"):
        entry = feedparser.parse((report.feeds_folder / f"all{suffix}").read_bytes()).entries[0]
        assert datetime(*entry.published_parsed[:6], tzinfo=UTC) == newest.published, suffix
        assert sorted(t.term for t in entry.tags) == sorted(
            c.slug if suffix == ".atom.xml" else c.name for c in newest.categories), suffix


def test_json_feeds_have_the_required_fields_of_json_feed_1_1(sample):
    _, corpus, report = sample
    for path in feed_files(report, ".json"):
        feed = json.loads(path.read_text("utf-8"))
        assert feed["version"] == "https://jsonfeed.org/version/1.1"
        assert isinstance(feed["title"], str) and feed["title"]
        assert feed["feed_url"] == f"{BASE_URL}/feeds/{path.name}"
        assert feed["home_page_url"].startswith(BASE_URL)
        assert isinstance(feed["items"], list) and feed["items"]
        assert all(isinstance(a["name"], str) for a in feed["authors"])
        for item in feed["items"]:
            assert isinstance(item["id"], str) and item["id"]
            assert isinstance(item["content_html"], str) and item["content_html"]
            assert isinstance(item["url"], str) and isinstance(item["title"], str)
            assert RFC3339.match(item["date_published"]) and RFC3339.match(item["date_modified"])
            assert isinstance(item["tags"], list) and all(isinstance(t, str) for t in item["tags"])
            assert "authors" in item and "author" not in item  # 1.1 deprecates `author`


def test_atom_feeds_follow_rfc_4287(sample):
    _, corpus, report = sample
    for path in feed_files(report, ".atom.xml"):
        feed = ElementTree.fromstring(path.read_bytes())
        assert feed.tag == f"{ATOM}feed"
        for field in ("id", "title", "updated"):
            assert len(feed.findall(f"{ATOM}{field}")) == 1, f"{path.name}: feed {field}"
        assert RFC3339.match(feed.findtext(f"{ATOM}updated"))
        self_links = [link for link in feed.findall(f"{ATOM}link") if link.get("rel") == "self"]
        assert [link.get("href") for link in self_links] == [f"{BASE_URL}/feeds/{path.name}"]
        feed_has_author = feed.find(f"{ATOM}author/{ATOM}name") is not None
        entries = feed.findall(f"{ATOM}entry")
        ids = [entry.findtext(f"{ATOM}id") for entry in entries]
        assert len(set(ids)) == len(ids) and all(i.startswith("urn:uuid:") for i in ids)
        for entry in entries:
            for field in ("id", "title", "updated"):
                assert len(entry.findall(f"{ATOM}{field}")) == 1, f"{path.name}: entry {field}"
            assert RFC3339.match(entry.findtext(f"{ATOM}updated"))
            assert RFC3339.match(entry.findtext(f"{ATOM}published"))
            assert feed_has_author or entry.find(f"{ATOM}author/{ATOM}name") is not None
            assert entry.find(f"{ATOM}content").get("type") == "html"
            assert entry.find(f"{ATOM}link").get("href").startswith("http")
            for category in entry.findall(f"{ATOM}category"):
                assert category.get("term") and category.get("label")


def test_rss_feeds_have_a_self_link_truthful_guids_and_rfc_822_dates(sample):
    _, corpus, report = sample
    for path in feed_files(report, ".rss.xml"):
        channel = ElementTree.fromstring(path.read_bytes()).find("channel")
        assert channel.find(f"{ATOM}link[@rel='self']").get("href") == f"{BASE_URL}/feeds/{path.name}"
        assert channel.findtext("link").startswith(BASE_URL) and not channel.findtext("link").endswith(".xml")
        articles = expected_articles(corpus, path)
        assert parsedate_to_datetime(channel.findtext("lastBuildDate")) == max(a.updated for a in articles)
        for item in channel.findall("item"):
            assert item.find("guid").get("isPermaLink") == "false"  # a URN, not a URL
            parsedate_to_datetime(item.findtext("pubDate"))
            assert item.find("{http://purl.org/rss/1.0/modules/content/}encoded").text


def test_an_article_in_three_categories_has_the_same_id_in_each_feed_and_once_in_the_site_feed(sample):
    _, corpus, report = sample
    article = next(a for a in corpus.articles if len(a.categories) == 3)
    wanted = item_id(article, SiteUrls(BASE_URL))
    for fmt in (".rss.xml", ".atom.xml", ".json"):
        for category in article.categories:
            ids = [e["id"] for e in file_items(report.feeds_folder / f"{category.slug}{fmt}")]
            assert ids.count(wanted) == 1
        site_ids = [e["id"] for e in file_items(report.feeds_folder / f"all{fmt}")]
        assert site_ids.count(wanted) == 1


def test_feed_updated_is_the_newest_items_updated_not_the_build_time(tmp_path):
    content = tmp_path / "content"
    write_article(content, "old", title="Old", categories=["News"], date="2020-01-02T10:00:00+00:00",
                  updated="2020-03-04T05:06:07+00:00")
    write_article(content, "older", title="Older", categories=["News"], date="2019-05-01T10:00:00+00:00")
    report = build_configured(make_settings(tmp_path, content), workers=1)
    for fmt in (".rss.xml", ".atom.xml"):
        parsed = feedparser.parse((report.feeds_folder / f"news{fmt}").read_bytes())
        assert parsed.feed.updated_parsed[:6] == (2020, 3, 4, 5, 6, 7)
    newest = max(i["date_modified"] for i in json.loads((report.feeds_folder / "news.json").read_text())["items"])
    assert newest == "2020-03-04T05:06:07+00:00"


def test_items_are_newest_first_and_limited_to_the_configured_number(tmp_path):
    content = tmp_path / "content"
    for day in range(1, 8):
        write_article(content, f"day-{day}", title=f"Day {day}", categories=["News"], date=f"2024-05-0{day}T09:00:00Z")
    report = build_configured(make_settings(tmp_path, content, feeds={"items": 3}), workers=1)
    for fmt in (".rss.xml", ".atom.xml", ".json"):
        titles = [e["title"] for e in file_items(report.feeds_folder / f"news{fmt}")]
        assert titles == ["Day 7", "Day 6", "Day 5"], fmt


def test_only_the_configured_formats_are_written(tmp_path):
    content = tmp_path / "content"
    write_article(content, "a", title="A", categories=["News"], date="2024-05-01T09:00:00Z")
    report = build_configured(make_settings(tmp_path, content, feeds={"formats": ["atom"]}), workers=1)
    assert sorted(p.name for p in report.feeds_folder.iterdir()) == ["all.atom.xml", "index.atom.opml", "index.opml", "news.atom.xml"]


TRICKY_TITLE = 'Fish & Chips <b>bold</b> ]]> "quoted" café 東京 🎉 שלום עולם'


def _tricky_article() -> Article:
    published = datetime(2024, 2, 29, 23, 59, tzinfo=UTC)
    return Article(
        id="tricky", slug="tricky", title=TRICKY_TITLE + "\x01\x0b", author="Zoë \x1fO'Brien",
        published=published, updated=published,
        categories=(Category("cafe-culture", "Café & <Culture>"),),
        body_html="<p>Body with ]]> and &amp; and \x00\x08 controls, 東京 🎉 שלום</p>",
        summary="A summary ]]> & <tag>\x0c", source=PurePosixPath("tricky.md"), content_hash="x",
    )


@pytest.mark.parametrize("fmt", ["rss", "atom", "json"])
def test_special_characters_round_trip_and_control_characters_are_removed(fmt):
    article = _tricky_article()
    site = SiteInfo("Site \x02 & <Co>", "Desc ]]>", "en", "Desk")
    spec = FeedSpec("cafe-culture", "Site: Café & <Culture>", "About ]]> cafés", (article,), article.categories[0])
    data = render_feed(fmt, spec, site, SiteUrls(BASE_URL))
    entry = items(data, {"rss": "x.rss.xml", "atom": "x.atom.xml", "json": "x.json"}[fmt])[0]
    assert entry["title"] == TRICKY_TITLE
    assert entry["author"] == "Zoë O'Brien"
    assert entry["summary"] == "A summary ]]> & <tag>"
    assert entry["content"] == "<p>Body with ]]> and &amp; and  controls, 東京 🎉 שלום</p>"
    if fmt == "json":
        assert json.loads(data)["title"] == "Site: Café & <Culture>"
    else:
        assert feedparser.parse(data).feed.title == "Site: Café & <Culture>"
        ElementTree.fromstring(data)  # well-formed XML 1.0


def test_item_id_does_not_change_when_the_title_and_body_are_edited(tmp_path):
    content = tmp_path / "content"
    settings = make_settings(tmp_path, content)
    write_article(content, "story", title="First title", categories=["News"], date="2024-05-01T09:00:00Z")
    report = build_site(build_settings(settings), content_source(settings), workers=1)
    before = {fmt: file_items(report.feeds_folder / f"news{fmt}")[0]
              for fmt in (".rss.xml", ".atom.xml", ".json")}
    write_article(content, "story", title="Second, better title", categories=["News"], date="2024-05-01T09:00:00Z",
                  body="Rewritten.", updated="2024-05-02T09:00:00Z")
    build_site(build_settings(settings), content_source(settings), workers=1)
    for fmt, old in before.items():
        new = file_items(report.feeds_folder / f"news{fmt}")[0]
        assert new["title"] == "Second, better title" and old["title"] == "First title"
        assert new["id"] == old["id"]


def test_the_main_opml_lists_each_category_once_and_one_opml_per_format_lists_the_rest(sample):
    _, corpus, report = sample
    on_disk = {f"{BASE_URL}/feeds/{p.name}" for p in report.feeds_folder.iterdir()}
    categories = [c for c in corpus.categories if c.slug != "all"]
    for name, fmt, suffix in (("index.opml", "atom", ".atom.xml"), ("index.atom.opml", "atom", ".atom.xml"),
                              ("index.rss.opml", "rss", ".rss.xml"), ("index.json.opml", "json", ".json")):
        opml = ElementTree.fromstring((report.feeds_folder / name).read_bytes())
        assert opml.get("version") == "2.0" and opml.findtext("head/title"), name
        outlines = opml.findall("body/outline")
        listed = [o.get("xmlUrl") for o in outlines]
        # One feed per category, each existing, in the site's category order: importing it subscribes once.
        assert listed == [f"{BASE_URL}/feeds/{c.slug}{suffix}" for c in categories], name
        assert set(listed) <= on_disk
        for outline in outlines:
            assert outline.get("type") == "rss" and outline.get("text") and outline.get("title")
            assert outline.get("htmlUrl").startswith(BASE_URL)
            # OPML 2.0 knows version="RSS" (and RSS1, scriptingNews) only: nothing else is written.
            assert outline.get("version") == ("RSS" if fmt == "rss" else None), name


def test_the_main_opml_format_is_configurable(tmp_path):
    content = tmp_path / "content"
    write_article(content, "a", title="A", categories=["News"], date="2024-05-01T09:00:00Z")
    report = build_configured(make_settings(tmp_path, content, feeds={"opml_format": "rss"}), workers=1)
    opml = ElementTree.fromstring((report.feeds_folder / "index.opml").read_bytes())
    assert [(o.get("xmlUrl"), o.get("version")) for o in opml.findall("body/outline")] == [
        (f"{BASE_URL}/feeds/news.rss.xml", "RSS")]
