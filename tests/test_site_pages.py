"""The site's pages: what a visitor and a browser's feed autodiscovery find on them."""

from __future__ import annotations

from html.parser import HTMLParser
from zoneinfo import ZoneInfo

import pytest

from syndicate.site._build import build_site
from syndicate.wiring import build_settings, content_source, load_corpus
from tests.site_helpers import BASE_URL, copy_sample, make_settings, write_article


class Page(HTMLParser):
    """What matters of an HTML page: alternate links, anchors, scripts, text, and well-nested tags."""

    VOID = {"meta", "link", "br", "hr", "img", "input", "col", "wbr", "source", "area"}

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.alternates: list[tuple[str, str, str]] = []
        self.links: list[str] = []
        self.scripts = 0
        self.text: list[str] = []
        self.stack: list[str] = []
        self.lang: str | None = None
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        if tag == "html":
            self.lang = values.get("lang")
        if tag == "link" and values.get("rel") == "alternate":
            self.alternates.append((values["type"], values["title"], values["href"]))
        if tag == "a":
            self.links.append(values.get("href"))
        if tag == "script" or any(name.startswith("on") for name in values):
            self.scripts += 1
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1] if self.stack else None}>"
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)

    @property
    def all_text(self) -> str:
        return " ".join(" ".join(self.text).split())

    def feed_urls(self) -> set[str]:
        return {href for _, _, href in self.alternates}


def feed_urls(slug: str) -> set[str]:
    return {f"{BASE_URL}/feeds/{slug}{suffix}" for suffix in (".rss.xml", ".atom.xml", ".json")}


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("pages")
    settings = make_settings(root, copy_sample(root))
    report = build_site(build_settings(settings), content_source(settings), workers=1)
    assert report.ok, report.problems
    return load_corpus(settings), report.output


def read_page(output, path: str) -> Page:
    return Page((output / path).read_text("utf-8"))


def test_front_page_lists_every_category_with_its_feeds_and_discovers_the_site_feeds(sample):
    corpus, output = sample
    page = read_page(output, "index.html")
    assert page.feed_urls() == feed_urls("all")
    assert {t for t, _, _ in page.alternates} == {"application/rss+xml", "application/atom+xml", "application/feed+json"}
    for category in corpus.categories:
        assert category.name in page.all_text
        assert f"{BASE_URL}/categories/{category.slug}/" in page.links
        assert feed_urls(category.slug) <= set(page.links)
    assert f"{BASE_URL}/feeds/index.opml" in page.links
    assert page.lang == "en" and page.scripts == 0 and not page.stack


def test_category_page_lists_its_newest_articles_and_discovers_its_feeds_and_the_sites(sample):
    corpus, output = sample
    for category in corpus.categories:
        page = read_page(output, f"categories/{category.slug}/index.html")
        assert page.feed_urls() == feed_urls(category.slug) | feed_urls("all")
        articles = corpus.in_category(category.slug)
        positions = [page.all_text.index(a.title) for a in articles]
        assert positions == sorted(positions), "newest first"
        assert page.scripts == 0 and not page.stack


def test_article_page_shows_title_date_author_categories_and_body(sample):
    corpus, output = sample
    article = next(a for a in corpus.articles if len(a.categories) >= 2)
    page = read_page(output, f"articles/{article.slug}/index.html")
    text = page.all_text
    assert article.title in text and article.author in text
    local = article.published.astimezone(ZoneInfo("Europe/Paris"))
    assert f"{local.day} {local:%B %Y}" in text
    for category in article.categories:
        assert category.name in text and f"{BASE_URL}/categories/{category.slug}/" in page.links
    assert article.summary.split(" ")[0] in text
    expected = feed_urls("all").union(*(feed_urls(c.slug) for c in article.categories))
    assert page.feed_urls() == expected
    assert page.scripts == 0 and not page.stack


def test_every_article_without_a_canonical_url_has_a_page(sample):
    corpus, output = sample
    pages = {p.parent.name for p in (output / "articles").glob("*/index.html")}
    assert pages == {a.slug for a in corpus.articles if a.url is None}


def test_article_with_a_canonical_url_has_no_page_and_is_linked_there(tmp_path):
    content = tmp_path / "content"
    write_article(content, "elsewhere", title="Published elsewhere", categories=["News"],
                  date="2024-05-01T09:00:00Z", extra="url: https://partner.example/story")
    write_article(content, "here", title="Published here", categories=["News"], date="2024-05-02T09:00:00Z")
    report = build_site(build_settings(settings := make_settings(tmp_path, content)), content_source(settings), workers=1)
    assert sorted(p.parent.name for p in (report.output / "articles").glob("*/index.html")) == ["here"]
    page = read_page(report.output, "categories/news/index.html")
    assert "https://partner.example/story" in page.links and f"{BASE_URL}/articles/here/" in page.links


def test_markup_in_titles_is_shown_as_text_never_run(tmp_path):
    content = tmp_path / "content"
    title = '<script>alert(1)</script> Fish & "Chips" 東京 🎉 שלום'
    write_article(content, "tricky", title=title, categories=["Café & <Culture>"], date="2024-05-01T09:00:00Z",
                  body="Hello <script>alert(2)</script> <img src=x onerror=alert(3)> world.")
    report = build_site(build_settings(settings := make_settings(tmp_path, content)), content_source(settings), workers=1)
    for path in ("index.html", "categories/cafe-culture/index.html", "articles/tricky/index.html"):
        page = read_page(report.output, path)
        assert page.scripts == 0, path
        assert title in page.all_text, path
        assert "Café & <Culture>" in page.all_text, path


def test_characters_xml_cannot_carry_never_reach_a_page(tmp_path):
    content = tmp_path / "content"
    content.mkdir()
    # YAML's double-quoted escapes make the title and category hold the characters themselves;
    # the body carries raw ones and an entity that decodes to one.
    (content / "controls.md").write_text(
        '---\ntitle: "Bell \\x01 and \\x1f unit"\ndate: 2024-05-01T09:00:00Z\ncategories: ["News \\x0b"]\n---\n'
        "Raw \x0c\x1b here, &#x1; entity, fine text.\n", encoding="utf-8")
    report = build_site(build_settings(settings := make_settings(tmp_path, content)), content_source(settings), workers=1)
    assert report.ok, report.problems
    for path in ("index.html", "categories/news/index.html", "articles/controls/index.html"):
        raw = (report.output / path).read_text("utf-8")
        assert not [c for c in raw if ord(c) < 32 and c not in "\t\n\r"], path
        assert "Bell and unit" in read_page(report.output, path).all_text, path


def test_a_configured_templates_folder_replaces_the_built_in_pages_file_by_file(tmp_path):
    from syndicate.site._pages import TEMPLATE_FOLDER

    content = tmp_path / "content"
    write_article(content, "story", title="A story", categories=["News"], date="2024-05-02T09:00:00Z")
    overrides = tmp_path / "theme"
    overrides.mkdir()
    base = (TEMPLATE_FOLDER / "base.html.j2").read_text()
    (overrides / "base.html.j2").write_text(base.replace("<body>", '<body class="theme-one">'))
    (overrides / "site.css").write_text("body { color: rebeccapurple; }\n")
    (overrides / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")  # a hidden file is no template, and no problem
    settings = make_settings(tmp_path, content, output={"templates": str(overrides)})
    report = build_site(build_settings(settings), content_source(settings), workers=1)
    article = (report.output / "articles/story/index.html").read_text()
    assert '<body class="theme-one">' in article  # the folder's base template
    assert "<h1>A story</h1>" in article  # the built-in article template inside it
    assert (report.output / "site.css").read_text() == "body { color: rebeccapurple; }\n"
    assert "rebeccapurple" not in (TEMPLATE_FOLDER / "site.css").read_text()

    (overrides / "base.html.j2").write_text(base.replace("<body>", '<body class="theme-two">'))
    again = build_site(build_settings(settings), content_source(settings), workers=1)
    assert "articles/story/index.html" in again.written  # a changed template renders the pages again
    assert '<body class="theme-two">' in (report.output / "articles/story/index.html").read_text()


@pytest.mark.parametrize("problem", ["missing", "unknown file"])
def test_a_templates_folder_that_cannot_be_used_is_refused_by_name(tmp_path, problem):
    from syndicate.errors import ConfigError

    content = tmp_path / "content"
    write_article(content, "story", title="A story", categories=["News"], date="2024-05-02T09:00:00Z")
    overrides = tmp_path / "theme"
    if problem == "unknown file":
        overrides.mkdir()
        (overrides / "artcle.html.j2").write_text("{% extends 'base.html.j2' %}")
    settings = make_settings(tmp_path, content, output={"templates": str(overrides)})
    with pytest.raises(ConfigError) as caught:
        build_site(build_settings(settings), content_source(settings), workers=1)
    assert "[output] templates" in str(caught.value)
    assert ("artcle.html.j2" if problem == "unknown file" else "is not a folder") in str(caught.value)
    assert not (tmp_path / "public").exists()  # nothing built, nothing removed
