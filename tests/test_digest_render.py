"""The rendered digest: inlined CSS on every matched element, both inliners agreeing, escaping, layout."""

from __future__ import annotations

import re
import textwrap
from dataclasses import replace

import lxml.html
import pytest

from syndicate.content._model import Category
from syndicate.digest._render import inline_css
from syndicate.digest._select import select_digest
from syndicate.errors import ConfigError
from syndicate.wiring import email_renderer
from tests.digest_support import SAMPLE_NOW, SignedLookingLinks, sample_corpus, sample_settings, subscriber

SETTINGS = sample_settings()
CORPUS = sample_corpus(SETTINGS)
EVERYTHING = tuple(c.slug for c in CORPUS.categories)


def sample_digest(settings=SETTINGS, **fields):
    reader = subscriber(fields.pop("categories", EVERYTHING), **fields)
    return select_digest(reader, CORPUS.articles, CORPUS.categories, SAMPLE_NOW, settings.digest.max_articles)


def rendered(inliner="premailer", settings=SETTINGS, **fields):
    digest = sample_digest(settings, **fields)
    return email_renderer(settings, inliner=inliner).render_digest(digest, SignedLookingLinks(), CORPUS.categories)


def declarations(style: str) -> dict[str, str]:
    pairs = (d.split(":", 1) for d in style.split(";") if d.strip())
    return {k.strip().lower(): " ".join(v.split()) for k, v in pairs}


def style_rules(document: str) -> list[tuple[str, dict[str, str]]]:
    """(selector, declarations) of every rule in the <style> block outside @media."""
    css = re.search(r"<style>(.*?)</style>", document, re.S).group(1)
    css = re.sub(r"@media[^{]*\{(?:[^{}]*\{[^{}]*\})*\s*\}", "", css)
    return [(sel.strip(), declarations(body)) for sel, body in re.findall(r"([^{}]+)\{([^{}]*)\}", css)]


@pytest.mark.parametrize("inliner", ["premailer", "css-inline"])
def test_every_element_matched_by_a_css_rule_carries_its_declarations_inline(inliner):
    document = rendered(inliner).html
    tree = lxml.html.fromstring(document)
    rules = style_rules(document)
    assert len(rules) > 15
    checked = 0
    for selector, wanted in rules:
        for element in tree.cssselect(selector):
            inline = declarations(element.get("style", ""))
            for prop, value in wanted.items():
                assert inline.get(prop) == value, f"{inliner}: <{element.tag} class={element.get('class')}> lacks {prop}: {value} ({selector})"
                checked += 1
    assert checked > 100


def test_premailer_and_css_inline_give_the_same_inline_styles():
    def styles(document):
        tree = lxml.html.fromstring(document)
        return [(e.tag, e.get("class"), declarations(e.get("style", ""))) for e in tree.iter() if e.get("class")]

    with_premailer, with_css_inline = styles(rendered("premailer").html), styles(rendered("css-inline").html)
    assert len(with_premailer) > 30
    assert with_premailer == with_css_inline


@pytest.mark.parametrize("inliner", ["premailer", "css-inline"])
def test_media_queries_survive_inlining_with_their_important_flags(inliner):
    document = rendered(inliner).html
    style = re.search(r"<style>(.*?)</style>", document, re.S).group(1)
    assert "@media only screen and (max-width: 620px)" in style
    assert ".container { width: 100% !important;" in style


def test_layout_is_a_600px_table_without_scripts_external_css_or_images_without_alt():
    tree = lxml.html.fromstring(rendered().html)
    container = tree.cssselect("table.container")[0]
    assert container.get("width") == "600" and container.get("role") == "presentation"
    assert all(t.get("role") == "presentation" for t in tree.iter("table"))
    assert not tree.xpath("//script") and not tree.xpath("//link[@rel='stylesheet']")
    assert all(img.get("alt") is not None for img in tree.iter("img"))
    assert not re.search(r"\son\w+=", lxml.html.tostring(tree, encoding="unicode"))


def test_the_digest_says_why_and_links_to_unsubscribe_and_preferences():
    email = rendered(categories=("main", "sports"))
    tree = lxml.html.fromstring(email.html)
    # Said once, in the footer: the inbox preview shows the headlines instead (the preheader).
    assert email.html.count("You get this digest because you follow Main and Sports.") == 1
    assert "You get this digest because" in tree.cssselect("td.footer")[0].text_content()
    links = {a.text_content(): a.get("href") for a in tree.iter("a")}
    assert links["Unsubscribe"] == "https://news.example.org/unsubscribe/tok-42.sig?u=42&v=1"
    assert links["Change your preferences"] == "https://news.example.org/preferences/tok-42.sig"
    assert "you follow Main and Sports" in email.text
    assert "Unsubscribe: https://news.example.org/unsubscribe/tok-42.sig?u=42&v=1" in email.text


def test_the_reason_line_of_the_text_part_is_filled_to_72_columns_and_kept_whole_when_it_fits():
    renderer = email_renderer(SETTINGS)
    many = tuple(Category(f"topic-{i}", f"A Rather Long Topic Name {i}") for i in range(6))
    reader = subscriber(tuple(c.slug for c in many))
    text = renderer.digest_values(reader, SignedLookingLinks(), many).text["following"]
    names = ", ".join(c.name for c in many[:-1]) + f" and {many[-1].name}"
    assert text == textwrap.fill(f"You get this digest because you follow {names}.", 72)
    assert len(text.splitlines()) > 1 and all(len(line) <= 72 for line in text.splitlines())
    one = renderer.digest_values(subscriber(("main",)), SignedLookingLinks(), CORPUS.categories).text["following"]
    assert one == "You get this digest because you follow Main."


def test_the_text_part_is_written_as_text_with_titles_summaries_and_links():
    email = rendered(categories=("sports",), high_water=None, frequency="weekly")
    assert "<" not in email.text.replace("<B>", "")
    assert "Late Goal Settles the City Derby" in email.text
    assert "A header in the 89th minute gave the home side a 2–1 win" in email.text
    assert "Read more: http://127.0.0.1:8000/articles/derby-result/" in email.text
    assert all(len(line) <= 78 for line in email.text.splitlines() if "http" not in line)


def test_a_hostile_name_is_escaped_in_html_and_plain_in_text():
    name = '<script>alert("x")</script> & Bob'
    email = rendered(name=name)
    tree = lxml.html.fromstring(email.html)
    assert not tree.xpath("//body//script")
    assert tree.cssselect("p.greeting")[0].text_content() == f"Hello {name},"
    assert f"Hello {name}," in email.text


def test_identical_article_sets_are_rendered_once_and_personalised_per_subscriber():
    renderer = email_renderer(SETTINGS)
    links = SignedLookingLinks()
    one = sample_digest(categories=("main", "sports"))
    two = replace(sample_digest(categories=("sports", "main"), id=7, name="Bea"), subscriber=replace(one.subscriber, id=7, name="Bea"))
    assert one.variant_key == two.variant_key
    first, second = (renderer.render_digest(d, links, CORPUS.categories) for d in (one, two))
    assert renderer.variants_rendered == 1
    assert "Hello Ana Müller," in first.html and "Hello Bea," in second.html
    assert "tok-7.sig" in second.html and "tok-7.sig" not in first.html
    assert first.html.replace("Ana Müller", "Bea").replace("tok-42", "tok-7").replace("u=42", "u=7") == second.html


def test_article_text_that_looks_like_a_slot_is_not_substituted():
    renderer = email_renderer(SETTINGS)
    digest = sample_digest(categories=("sports",))
    forged = f"slot{'0' * 16}unsubscribe_urlx and greeting"
    article = replace(digest.sections[0].articles[0], title=forged)
    section = replace(digest.sections[0], articles=(article,))
    digest = replace(digest, sections=(section,), variant_key="forged")
    email = renderer.render_digest(digest, SignedLookingLinks(), CORPUS.categories)
    assert forged in email.html and forged in email.text


def test_and_n_more_links_to_the_category_page():
    settings = sample_settings(digest={"max_articles": 1})  # Main has two articles this week
    email = rendered(settings=settings, categories=("main",), high_water=None, frequency="weekly")
    tree = lxml.html.fromstring(email.html)
    more = tree.cssselect("p.more a")[0]
    assert more.text_content() == "and 1 more in Main"
    assert more.get("href") == "http://127.0.0.1:8000/categories/main/"
    assert "And 1 more in Main: http://127.0.0.1:8000/categories/main/" in email.text


def test_the_subject_template_is_configurable_and_checked_at_start():
    settings = sample_settings(digest={"subject": "Neu bei {{ site }}: {{ count }} × {{ categories }}"})
    assert rendered(settings=settings, categories=("sports",)).subject == "Neu bei Syndicate Demo: 2 × Sports"
    with pytest.raises(ConfigError, match=r"\[digest\] subject"):
        email_renderer(sample_settings(digest={"subject": "{{ site "}))
    with pytest.raises(ConfigError, match=r"\[digest\] subject.*known names"):
        email_renderer(sample_settings(digest={"subject": "{{ nosuch }}"}))


def test_a_missing_templates_folder_is_a_config_error_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"\[email\] templates"):
        email_renderer(sample_settings(email={"templates": tmp_path}))


def test_inliners_never_fetch_external_stylesheets():
    document = '<html><head><link rel="stylesheet" href="http://192.0.2.1/x.css"><style>p { color: red; }</style></head><body><p>x</p></body></html>'
    for inliner in ("premailer", "css-inline"):
        assert 'style="color' in inline_css(document, inliner).replace(": ", ":")


def test_confirmation_has_the_link_in_both_parts():
    email = email_renderer(SETTINGS).render_confirmation("new@example.org", None, [Category("sports", "Sports")], "http://127.0.0.1:8000/confirm/abc&def")
    tree = lxml.html.fromstring(email.html)
    assert [a.get("href") for a in tree.cssselect("a.button")] == ["http://127.0.0.1:8000/confirm/abc&def"]
    assert "http://127.0.0.1:8000/confirm/abc&def" in email.text and "digests of Sports" in email.text


@pytest.mark.parametrize("inliner", ["premailer", "css-inline"])
def test_sections_inlined_one_by_one_give_the_same_html_as_the_whole_document_inlined_at_once(inliner):
    settings = sample_settings(digest={"max_articles": 4})
    digest = sample_digest(settings)
    links = SignedLookingLinks()
    assembled = email_renderer(settings, inliner=inliner).render_digest(digest, links, CORPUS.categories)
    whole = email_renderer(settings, inliner=inliner, cache=False).render_digest(digest, links, CORPUS.categories)
    assert len(digest.sections) >= 4
    assert assembled == whole


def test_one_renderer_inlining_many_pieces_gives_each_digest_what_a_fresh_renderer_gives():
    # A renderer reads its stylesheet once for all the pieces it inlines; each digest must still come
    # out exactly as a renderer that never inlined anything before makes it.
    settings = sample_settings(digest={"max_articles": 3})
    links = SignedLookingLinks()
    shared = email_renderer(settings, inliner="premailer")
    slugs = [c.slug for c in CORPUS.categories]
    readers = [tuple(slugs[i:i + 2]) for i in range(len(slugs))] + [EVERYTHING]
    for categories in readers:
        digest = sample_digest(settings, categories=categories)
        fresh = email_renderer(settings, inliner="premailer").render_digest(digest, links, CORPUS.categories)
        assert shared.render_digest(digest, links, CORPUS.categories) == fresh, categories
    assert shared.pieces_inlined > 6


@pytest.mark.parametrize("inliner", ["premailer", "css-inline"])
def test_outlook_only_properties_are_inlined_without_warnings_on_the_console(inliner, capfd, caplog):
    document = "<html><head><style>p { mso-line-height-rule: exactly; line-height: 20px; }</style></head><body><p>x</p></body></html>"
    with caplog.at_level("DEBUG"):
        out = inline_css(document, inliner)
    assert "line-height" in out.split("<body>")[1]
    assert capfd.readouterr().err == ""
    assert not [r for r in caplog.records if r.levelno >= 30]


def _with_image(article, body_html):
    return replace(article, body_html=body_html, content_hash=article.content_hash + "-img")


def test_article_titles_are_accent_links_with_read_more_and_the_preheader_lists_the_headlines():
    email = rendered(categories=("main", "sports"))
    tree = lxml.html.fromstring(email.html)
    title_link = tree.cssselect("h3.article-title a")[0]
    assert declarations(title_link.get("style"))["color"] == "#9b1d15"  # the accent, not the text colour
    read_more = tree.cssselect("p.read-more a")
    assert read_more and read_more[0].text_content() == "Read more"
    assert read_more[0].get("href") == title_link.get("href")
    preheader = tree.cssselect("div.preheader")[0]
    assert "display:none" in preheader.get("style").replace(" ", "")
    assert preheader.text_content().startswith(title_link.text_content())
    # The preheader comes first in the body: it is what the inbox shows after the subject.
    assert email.html.index('class="preheader"') < email.html.index('class="greeting"')


@pytest.mark.parametrize("images", [True, False])
def test_the_first_absolute_image_shows_at_a_fixed_width_with_its_alt_text_when_images_are_on(images):
    settings = sample_settings(digest={"images": images})
    digest = sample_digest(settings, categories=("sports",))
    first = digest.sections[0].articles[0]
    body = ('<p><img src="/relative.png" alt="skipped"></p>'
            '<p><img alt="The winning header &amp; the crowd" src="https://img.example.org/derby.jpg"></p>')
    sections = (replace(digest.sections[0], articles=(_with_image(first, body), *digest.sections[0].articles[1:])),)
    digest = replace(digest, sections=sections, variant_key=digest.variant_key + "-img")
    html = email_renderer(settings).render_digest(digest, SignedLookingLinks(), CORPUS.categories).html
    images_shown = lxml.html.fromstring(html).cssselect("img.article-image")
    if not images:
        assert images_shown == []
        return
    assert [(i.get("src"), i.get("alt"), i.get("width")) for i in images_shown] == [
        ("https://img.example.org/derby.jpg", "The winning header & the crowd", "536")]


def test_front_matter_image_comes_before_the_body_images():
    settings = sample_settings(digest={"images": True})
    digest = sample_digest(settings, categories=("sports",))
    first = replace(digest.sections[0].articles[0], image="https://img.example.org/cover.jpg",
                    body_html='<p><img src="https://img.example.org/body.jpg" alt="body"></p>', content_hash="cover")
    sections = (replace(digest.sections[0], articles=(first, *digest.sections[0].articles[1:])),)
    digest = replace(digest, sections=sections, variant_key=digest.variant_key + "-cover")
    html = email_renderer(settings).render_digest(digest, SignedLookingLinks(), CORPUS.categories).html
    image = lxml.html.fromstring(html).cssselect("img.article-image")[0]
    assert (image.get("src"), image.get("alt")) == ("https://img.example.org/cover.jpg", first.title)
