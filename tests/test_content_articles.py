"""The article reader: both formats, every rule, and every malformed file named with its line."""

import functools
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syndicate.content._article import ReaderOptions, legacy_slug, parse_article
from syndicate.content._reader import CategoryRule, read_corpus
from syndicate.errors import ContentError

SAMPLE = Path(__file__).resolve().parent / "data" / "export-format-example.md"  # a copy of the shared sample
OPTIONS = ReaderOptions(timezone="Europe/Paris", default_author="Site Desk")

EXPORT = """
## {title}

### Description

Body with **bold** and a [placeholder](#) link.

by Ada Writer

### Category

1. Local-City Hall-Transport & Roads
2. Main

### Date Created

03/05/2026
"""

FRONT = """---
title: Riverside Bike Lane Approved
date: 2026-03-05T09:30:00+01:00
author: Jane Example
categories: [Local-City Hall-Transport & Roads, Main]
summary: Optional summary.
---
Markdown body with a table:

| a | b |
|---|---|
| 1 | 2 |
"""


def parse(text: str | bytes, name: str = "news/a.md"):
    raw = text.encode("utf-8") if isinstance(text, str) else text
    return parse_article(PurePosixPath(name), raw, OPTIONS)


def error(text: str | bytes, name: str = "news/a.md") -> str:
    with pytest.raises(ContentError) as info:
        parse(text, name)
    return str(info.value)


# --- the export format -------------------------------------------------------------------

def test_shared_sample_export_article():
    if not SAMPLE.exists():
        pytest.skip(f"shared sample not present at {SAMPLE}")
    article = parse(SAMPLE.read_bytes(), "export/bike-lane.md")
    assert article.title == "City Council Approves Riverside Bike Lane After Two-Year Debate"
    assert article.author == "Jane Example"
    assert "by Jane Example" not in article.body_html
    assert [c.name for c in article.categories] == ["Local-City Hall-Transport & Roads", "Main"]
    assert [c.slug for c in article.categories] == ["local-city-hall-transport-roads", "main"]
    assert article.published == datetime(2026, 3, 5, tzinfo=ZoneInfo("Europe/Paris"))
    assert "$3.2 million" in article.body_html and "\\$" not in article.body_html
    assert '<a href="#"' not in article.body_html and "bus service" in article.body_html
    assert "<strong>7 to 2</strong>" in article.body_html
    assert article.summary.startswith("The council voted 7 to 2 on Tuesday")


def test_export_id_comes_from_the_path_the_slug_from_the_file_name_and_both_survive_title_edits():
    one = parse(EXPORT.format(title="First title"), "city/Bike Lane.md")
    two = parse(EXPORT.format(title="A completely new title"), "city/Bike Lane.md")
    assert one.id == two.id == "city/Bike Lane"
    assert one.slug == two.slug == "bike-lane"  # the folder organises the content; it is not in the URL
    assert legacy_slug(one) == "city-bike-lane"  # the URL it had before: redirected
    assert one.content_hash != two.content_hash


@pytest.mark.parametrize("transform", [
    lambda t: t.replace("\n", "\r\n"),
    lambda t: "\ufeff" + t,
    lambda t: t.replace("\n", "   \n"),
    lambda t: t.replace("\n\n", "\n\n\n\n"),
    lambda t: t.replace("### Category", "## category").replace("### Date Created", "#### DATE CREATED:"),
    lambda t: t.replace("## Title here", "# Title here"),
], ids=["crlf", "bom", "trailing-spaces", "extra-blank-lines", "heading-levels-and-case", "h1-title"])
def test_export_format_tolerance(transform):
    article = parse(transform(EXPORT.format(title="Title here")))
    assert article.title == "Title here"
    assert article.author == "Ada Writer"
    assert article.category_slugs == ("local-city-hall-transport-roads", "main")
    assert article.published.date().isoformat() == "2026-03-05"


def test_export_date_is_the_start_of_the_day_in_the_site_timezone():
    article = parse_article(PurePosixPath("a.md"), EXPORT.format(title="T").encode(), ReaderOptions(timezone="America/New_York"))
    assert article.published.utcoffset() == timedelta(hours=-5)
    assert (article.published.hour, article.published.minute) == (0, 0)


def test_export_date_format_is_configurable():
    text = EXPORT.format(title="T").replace("03/05/2026", "2026-03-05")
    article = parse_article(PurePosixPath("a.md"), text.encode(), ReaderOptions(date_format="%Y-%m-%d"))
    assert article.published.date().isoformat() == "2026-03-05"


def test_author_defaults_to_the_site_author_without_byline():
    article = parse(EXPORT.format(title="T").replace("by Ada Writer\n", ""))
    assert article.author == "Site Desk"


# --- front matter -------------------------------------------------------------------------

def test_front_matter_article():
    article = parse(FRONT, "posts/bike.md")
    assert article.title == "Riverside Bike Lane Approved"
    assert article.author == "Jane Example"
    assert article.published == datetime(2026, 3, 5, 8, 30, tzinfo=UTC)
    assert article.updated == article.published
    assert article.summary == "Optional summary."
    assert "<table>" in article.body_html
    assert article.id == "posts/bike" and article.url is None


def test_front_matter_id_slug_url_updated_and_date_only():
    text = FRONT.replace("date: 2026-03-05T09:30:00+01:00", "date: 2026-03-05\nupdated: 2026-03-07T10:00:00Z\nid: bike-lane-2026\nurl: https://example.org/bike")
    article = parse(text)
    assert article.id == "bike-lane-2026" and article.slug == "bike-lane-2026"
    assert article.published == datetime(2026, 3, 5, tzinfo=ZoneInfo("Europe/Paris"))
    assert article.updated == datetime(2026, 3, 7, 10, tzinfo=UTC)
    assert article.url == "https://example.org/bike"


def test_summary_from_first_paragraph_cut_at_a_word_near_300_characters():
    body = " ".join(f"word{i}" for i in range(200))
    article = parse(FRONT.replace("summary: Optional summary.\n", "").split("---\n", 2)[0] + "---\n" + FRONT.split("---\n")[1].replace("summary: Optional summary.\n", "") + "---\n" + body + "\n")
    assert 250 <= len(article.summary) <= 301
    assert article.summary.endswith("…")
    assert body.startswith(article.summary[:-1])
    assert article.summary[:-1].split(" ")[-1] in body.split(" ")


def test_markdown_gfm_and_sanitising():
    body = (
        "~~gone~~ and https://example.org/page\n\n"
        "<script>alert(1)</script>\n\n"
        '<p onclick="steal()">click</p> <iframe src="https://evil.example"></iframe>\n\n'
        "<style>body{}</style>\n\n"
        "[bad](javascript:alert(1)) \\$40 and \\*stars\\*\n"
    )
    html = parse(FRONT.split("---\n")[0] + "---\n" + FRONT.split("---\n")[1] + "---\n" + body).body_html
    assert "<del>gone</del>" in html
    assert '<a href="https://example.org/page"' in html
    for banned in ("<script", "alert(1)</script", "onclick", "<iframe", "<style", "javascript:"):
        assert banned not in html
    assert "$40" in html and "*stars*" in html and ">bad</a>" in html


def test_category_slugs():
    text = FRONT.replace("[Local-City Hall-Transport & Roads, Main]", "[Army-Wars-Conflict Zones-Military Tech., Économie & Société, '  Spaces  ']")
    article = parse(text)
    assert article.category_slugs == ("army-wars-conflict-zones-military-tech", "economie-societe", "spaces")
    assert article.categories[1].name == "Économie & Société"


# --- malformed files: each an exact error, at the right line -------------------------------

MALFORMED = {
    "empty.md": (b"", "empty.md:1: empty file"),
    "blank.md": (b"\n \n\t\n", "blank.md:1: empty file"),
    "latin1.md": ("\n## Caf\xe9\n".encode("latin-1"), "latin1.md:2: not UTF-8 text (invalid byte 0xe9 at offset 7)"),
    "no-title.md": (b"Just text\n\n### Category\n\n1. Main\n", "no-title.md:1: missing title (expected a '## Title' heading before the text)"),
    "empty-title.md": (b"##   \n", "empty-title.md:1: missing title (expected a '## Title' heading before the text)"),
    "no-category.md": (EXPORT.format(title="T").replace("### Category\n\n1. Local-City Hall-Transport & Roads\n2. Main\n", "").encode(),
                       "no-category.md:14: missing '### Category' section"),
    "empty-category.md": (EXPORT.format(title="T").replace("1. Local-City Hall-Transport & Roads\n2. Main\n", "").encode(),
                          "empty-category.md:10: no category (expected a numbered list under 'Category')"),
    "category-not-list.md": (EXPORT.format(title="T").replace("2. Main", "Main, Local").encode(),
                             "category-not-list.md:13: expected a numbered list item under 'Category', got 'Main, Local'"),
    "no-date.md": (EXPORT.format(title="T").replace("### Date Created\n\n03/05/2026\n", "").encode(),
                   "no-date.md:15: missing '### Date Created' section"),
    "empty-date.md": (EXPORT.format(title="T").replace("03/05/2026", "").encode(),
                      "empty-date.md:15: missing date under 'Date Created'"),
    "impossible-date.md": (EXPORT.format(title="T").replace("03/05/2026", "02/30/2026").encode(),
                           "impossible-date.md:17: impossible date '02/30/2026' (expected MM/DD/YYYY)"),
    "wrong-date-format.md": (EXPORT.format(title="T").replace("03/05/2026", "5 March 2026").encode(),
                             "wrong-date-format.md:17: impossible date '5 March 2026' (expected MM/DD/YYYY)"),
    "two-category-sections.md": ((EXPORT.format(title="T") + "\n### Category\n\n1. Other\n").encode(),
                                 "two-category-sections.md:19: second '### Category' section"),
    "broken-yaml.md": (b"---\ntitle: [unclosed\ndate: 2026-01-01\n---\nbody\n",
                       "broken-yaml.md:3: invalid YAML front matter: expected ',' or ']', but got ':'"),
    "unclosed-front-matter.md": (b"---\ntitle: T\ndate: 2026-01-01\n", "unclosed-front-matter.md:1: front matter not closed (expected a closing '---' line)"),
    "front-matter-list.md": (b"---\n- a\n- b\n---\nbody\n", "front-matter-list.md:1: front matter must be a mapping of keys to values"),
    "yaml-no-title.md": (b"---\ndate: 2026-01-01\ncategories: [Main]\n---\nbody\n", "yaml-no-title.md:1: missing title in front matter"),
    "yaml-no-date.md": (b"---\ntitle: T\ncategories: [Main]\n---\nbody\n", "yaml-no-date.md:1: missing date in front matter"),
    "yaml-bad-date.md": (b"---\ntitle: T\ndate: yesterday\ncategories: [Main]\n---\nbody\n",
                         "yaml-bad-date.md:3: date: impossible date 'yesterday' (expected ISO 8601 such as 2026-03-05T09:30:00+01:00)"),
    "yaml-no-categories.md": (b"---\ntitle: T\ndate: 2026-01-01\ncategories: []\n---\nbody\n",
                              "yaml-no-categories.md:4: no category (front matter needs categories: [...])"),
    "yaml-categories-mapping.md": (b"---\ntitle: T\ndate: 2026-01-01\ncategories: {a: 1}\n---\nbody\n",
                                   "yaml-categories-mapping.md:4: categories: expected a list of names, got dict"),
    "yaml-title-list.md": (b"---\ntitle: [a, b]\ndate: 2026-01-01\ncategories: [Main]\n---\nbody\n",
                           "yaml-title-list.md:2: title: expected text, got a list"),
    "yaml-bad-url.md": (b"---\ntitle: T\ndate: 2026-01-01\ncategories: [Main]\nurl: ftp://x\n---\nbody\n",
                        "yaml-bad-url.md:1: url: expected an absolute http(s) URL, got 'ftp://x'"),
    "category-no-letters.md": (b"---\ntitle: T\ndate: 2026-01-01\ncategories: ['!!!']\n---\nbody\n",
                               "category-no-letters.md:4: category '!!!' has no letters or digits to make a slug from"),
}


def test_each_malformed_file_gives_its_exact_error_and_the_others_are_still_read(tmp_path):
    good = tmp_path / "good"
    good.mkdir()
    (good / "one.md").write_text(EXPORT.format(title="Good one"))
    (good / "two.md").write_text(FRONT)
    for name, (raw, _) in MALFORMED.items():
        (tmp_path / name).write_bytes(raw)
    corpus = read_corpus(tmp_path, OPTIONS)
    assert sorted(a.title for a in corpus.articles) == ["Good one", "Riverside Bike Lane Approved"]
    reported = sorted(str(p) for p in corpus.problems)
    expected = sorted(f"{tmp_path}/{message}" for _, message in MALFORMED.values())
    assert reported == expected
    assert len(MALFORMED) >= 15


def test_duplicate_ids_name_both_files_and_keep_the_first(tmp_path):
    (tmp_path / "a.md").write_text(FRONT.replace("summary:", "id: same\nsummary:"))
    (tmp_path / "b.md").write_text(FRONT.replace("summary:", "id: same\nsummary:").replace("Riverside", "Other"))
    corpus = read_corpus(tmp_path, OPTIONS)
    assert [a.source for a in corpus.articles] == ["a.md"]
    assert sorted(str(p) for p in corpus.problems) == [
        f"{tmp_path}/a.md:1: duplicate article id 'same' (also in {tmp_path}/b.md)",
        f"{tmp_path}/b.md:1: duplicate article id 'same' (also in {tmp_path}/a.md); skipped",
    ]


def test_same_slug_different_names_are_one_category_first_name_wins(tmp_path):
    (tmp_path / "a.md").write_text(FRONT.replace("[Local-City Hall-Transport & Roads, Main]", "[Science & Tech]"))
    (tmp_path / "b.md").write_text(FRONT.replace("[Local-City Hall-Transport & Roads, Main]", "[science tech]"))
    corpus = read_corpus(tmp_path, OPTIONS)
    assert [c.name for c in corpus.categories] == ["Science & Tech"]
    assert all(a.categories[0].name == "Science & Tech" for a in corpus.articles)
    assert [str(w) for w in corpus.warnings] == [
        f"{tmp_path}/b.md:1: category 'science tech' has the same slug as 'Science & Tech'; using 'Science & Tech'"
    ]


def test_config_titles_and_aliases(tmp_path):
    (tmp_path / "a.md").write_text(FRONT.replace("[Local-City Hall-Transport & Roads, Main]", "[Tech, Technology, Main]"))
    rules = [CategoryRule("technology", title="Technology & Science", aliases=("Tech",))]
    corpus = read_corpus(tmp_path, OPTIONS, rules=rules)
    assert [(c.slug, c.name) for c in corpus.articles[0].categories] == [("technology", "Technology & Science"), ("main", "Main")]


def test_recursive_and_only_markdown(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "deep.md").write_text(FRONT)
    (tmp_path / "a" / "notes.txt").write_text("not an article")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "x.md").write_text("")
    corpus = read_corpus(tmp_path, OPTIONS)
    assert [a.id for a in corpus.articles] == ["a/b/deep"] and not corpus.problems


def test_articles_newest_first(tmp_path):
    for day in (3, 9, 5):
        (tmp_path / f"d{day}.md").write_text(EXPORT.format(title=f"Day {day}").replace("03/05/2026", f"03/0{day}/2026"))
    assert [a.title for a in read_corpus(tmp_path, OPTIONS).articles] == ["Day 9", "Day 5", "Day 3"]


# --- the reader never raises anything but its own error ------------------------------------

fragments = st.sampled_from([
    "---\n", "## ", "### Description\n", "### Category\n", "### Date Created\n", "1. ", "by ", "\n",
    "title: ", "date: ", "categories: [", "]", "02/30/2026", "03/05/2026", "2026-03-05", "{", "}", ":", "\r\n",
    "\ufeff", "#", "- ", "\x00", "é", "&", "<script>", "|a|b|\n|-|-|\n",
])
documents = st.one_of(
    st.binary(max_size=300),
    st.lists(st.one_of(fragments, st.text(max_size=12)), max_size=40).map("".join).map(lambda s: s.encode("utf-8", "surrogatepass")),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_parse_never_raises_anything_but_content_error(raw):
    try:
        article = parse_article(PurePosixPath("fuzz.md"), raw, OPTIONS)
    except ContentError as e:
        assert e.path == PurePosixPath("fuzz.md") and e.line >= 1
    else:
        assert article.title and article.categories and article.published.tzinfo is not None


def test_summary_keeps_punctuation_against_formatted_words():
    text = FRONT.replace("summary: Optional summary.\n", "").replace(
        "Markdown body with a table:", "Stocks rose **1.8%**, their best *week*; see [the data](https://example.org).<br>Next line")
    assert parse(text).summary == "Stocks rose 1.8%, their best week; see the data. Next line"


# Markdown made of what matters to a sanitiser: emphasis, links and images with titles and
# quotes, code, tables, task lists, entities, quotes and no-break spaces, but no `<`.
_MARKDOWN_BITS = st.sampled_from([
    "word", " ", "\n", "\n\n", "*", "_", "**", "`", "```\n", "```python\n", "~~", "# ", "> ", "- ", "1. ", "- [ ] ",
    "- [x] ", "| a | b |\n|:-|-:|\n| 1 | 2 |\n", "[link](https://example.org/a?b=1&c=2)", "[t](https://example.org \"ti\\\"tle\")",
    "![img](https://example.org/i.png \"alt\")", "https://example.org/bare", "www.example.com", "me@example.org",
    '"quoted"', "it's", "&amp;", "&quot;", "&nbsp;", "\u00a0", "&copy;", "é", "東京", "[x](#)", "[y](/relative)",
    "\\*", "---\n", "  \n", "=", ")", "(", "]", "[",
])


@settings(max_examples=300, deadline=None)
@given(st.lists(_MARKDOWN_BITS, max_size=40).map("".join))
def test_markdown_without_html_reads_the_same_from_cmark_safe_mode_as_through_nh3(text):
    import cmarkgfm

    from syndicate.content._markdown import _CLEANER, _EMPTY_LINK, _EXTENSIONS, _LINK_TEXT, Options, render_markdown

    through_nh3 = _EMPTY_LINK.sub(_LINK_TEXT, _CLEANER.clean(
        cmarkgfm.markdown_to_html_with_extensions(text, options=Options.CMARK_OPT_UNSAFE, extensions=_EXTENSIONS)))
    fast = render_markdown(text)
    for href in re.findall(r'(?:href|src)="([^"]*)"', fast):
        assert re.match(r"(https?://|mailto:|/|#)", href), href  # nothing but web, mail and relative links
    # nh3 also drops a URL its parser rejects (e.g. `http://www.example.com%3E`, from cmark's autolinking
    # of `www.example.com>`): harmless, so the comparison leaves the link targets out.
    without_targets = functools.partial(re.sub, r' (?:href|src)="[^"]*"', "")
    assert without_targets(fast) == without_targets(through_nh3)


def test_front_matter_image_must_be_an_absolute_url():
    with_image = FRONT.replace("date: 2026-03-05T09:30:00+01:00",
                               "date: 2026-03-05T09:30:00+01:00\nimage: https://img.example.org/lane.jpg")
    assert parse(with_image).image == "https://img.example.org/lane.jpg"
    relative = FRONT.replace("date: 2026-03-05T09:30:00+01:00", "date: 2026-03-05T09:30:00+01:00\nimage: /lane.jpg")
    with pytest.raises(ContentError, match=r"image: expected an absolute http\(s\) URL"):
        parse(relative)


def test_a_lone_surrogate_escaped_in_front_matter_never_reaches_a_link():
    """YAML's "\\ud800" escape gives a lone surrogate, which no UTF-8 page or message can carry (a digest
    naming the article would fail for every reader): the Article drops it from its links as from its text."""
    odd = FRONT.replace("date: 2026-03-05T09:30:00+01:00",
                        'date: 2026-03-05T09:30:00+01:00\nimage: "https://img.example.org/la\\ud800ne.jpg"')
    article = parse(odd)
    assert article.image == "https://img.example.org/lane.jpg"
    assert all(value.encode("utf-8") for value in (article.image, article.title, article.body_html))
