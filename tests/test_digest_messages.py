"""The exact message bytes: parsed back with the stdlib parser, golden files, header injection refused."""

from __future__ import annotations

import email
import email.policy
import os
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.header import decode_header, make_header
from email.utils import parsedate_to_datetime

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from syndicate.content._model import Category
from syndicate.digest._message import HeaderError, build_confirmation
from syndicate.digest._select import select_digest
from syndicate.errors import ConfigError
from syndicate.wiring import email_renderer, message_builder
from tests.digest_support import GOLDEN, SAMPLE_NOW, SignedLookingLinks, sample_corpus, sample_settings, subscriber

SETTINGS = sample_settings()
CORPUS = sample_corpus(SETTINGS)
REGENERATE = os.environ.get("SYNDICATE_REGENERATE_GOLDEN") == "1"


def digest_for(settings=SETTINGS, **fields):
    reader = subscriber(fields.pop("categories", ("main", "sports", "technology")), **fields)
    return select_digest(reader, CORPUS.articles, CORPUS.categories, SAMPLE_NOW, settings.digest.max_articles)


def build(digest=None, settings=SETTINGS, links=None, inliner="premailer"):
    renderer = email_renderer(settings, inliner=inliner)
    builder = message_builder(settings, renderer, links or SignedLookingLinks(), CORPUS.categories, SAMPLE_NOW)
    return builder.digest_message(digest or digest_for(settings))


def parse(data: bytes):
    return email.message_from_bytes(data, policy=email.policy.default)


def display_name(data: bytes) -> str:
    """The To display name as an RFC 2047 reader sees it.

    (CPython's address parser keeps the folding space between two encoded words of one
    display name, which RFC 2047 section 6.2 says to drop; it does the same to the
    names its own generator writes. decode_header follows the RFC.)
    """
    raw = re.search(rb"\r\nTo: (.*?)\r\n(?! )", data, re.S).group(1).decode().replace("\r\n", "")
    phrase = raw.rsplit("<", 1)[0].strip() if "<" in raw else ""
    if phrase.startswith('"'):
        return re.sub(r'\\(.)', r"\1", phrase[1:-1])
    return str(make_header(decode_header(phrase)))


def test_every_header_parses_back():
    message = build()
    parsed = parse(message.data)
    assert parsed["From"].addresses[0].display_name == "Syndicate Demo"
    assert parsed["From"].addresses[0].addr_spec == "digest@localhost"
    to = parsed["To"].addresses
    assert [(a.display_name, a.addr_spec) for a in to] == [("Ana Müller", "ana@example.org")]
    assert parsed["Subject"] == "Syndicate Demo: 4 new articles in Main, Sports and Technology"
    assert parsedate_to_datetime(parsed["Date"]) == SAMPLE_NOW
    assert re.fullmatch(r"<digest\.42\.[0-9a-f]{24}@localhost>", parsed["Message-ID"])
    assert parsed["Message-ID"] == message.message_id
    assert parsed["List-Id"] == "Syndicate Demo <digest.localhost>"
    assert parsed["List-Unsubscribe"] == "<https://news.example.org/unsubscribe/tok-42.sig?u=42&v=1>"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["Reply-To"] is None
    assert parsed["MIME-Version"] == "1.0"
    assert not parsed.defects and all(not part.defects for part in parsed.walk())


def test_the_parts_are_text_then_html_and_decode_to_exactly_what_was_rendered():
    digest = digest_for()
    parsed = parse(build(digest).data)
    assert parsed.get_content_type() == "multipart/alternative"
    parts = list(parsed.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" and p["Content-Transfer-Encoding"] == "quoted-printable" for p in parts)
    expected = email_renderer(SETTINGS).render_digest(digest, SignedLookingLinks(), CORPUS.categories)
    # MIME text has CRLF line ends; the parser hands them back as they are
    assert parts[0].get_content().replace("\r\n", "\n") == expected.text
    assert parts[1].get_content().replace("\r\n", "\n") == expected.html


def test_crlf_line_ends_and_short_lines():
    data = build().data
    assert data.isascii()
    assert b"\n" not in data.replace(b"\r\n", b"") and b"\r" not in data.replace(b"\r\n", b"")
    lines = data.split(b"\r\n")
    assert max(len(line) for line in lines) <= 78


def test_reply_to_and_mailto_unsubscribe_when_configured():
    settings = sample_settings(mail={"reply_to": "Desk <desk@example.org>"}, email={"unsubscribe_mailto": "leave@example.org", "list_id": "Daily digest <daily.example.org>"})
    parsed = parse(build(digest_for(settings), settings).data)
    assert parsed["Reply-To"].addresses[0].addr_spec == "desk@example.org"
    assert parsed["List-Id"] == "Daily digest <daily.example.org>"
    assert parsed["List-Unsubscribe"] == "<https://news.example.org/unsubscribe/tok-42.sig?u=42&v=1>, <mailto:leave@example.org?subject=unsubscribe>"


def test_message_id_is_the_same_for_a_resend_and_differs_for_another_range_or_reader():
    first, again = build(), build()
    assert first.message_id == again.message_id
    assert first.data == again.data
    other_range = build(digest_for(high_water=datetime(2026, 11, 20, tzinfo=UTC)))
    other_reader = build(replace(digest_for(), subscriber=replace(digest_for().subscriber, id=43)))
    assert len({first.message_id, other_range.message_id, other_reader.message_id}) == 3


def test_a_long_non_ascii_name_and_subject_are_encoded_and_decode_back():
    settings = sample_settings(digest={"subject": "Ваш дайджест {{ site }} — {{ count }} статей: {{ categories }} ✓"})
    name = "Zoë Ångström-Łukasiewicz 日本語の名前 " * 3
    digest = digest_for(settings, name=name.strip())
    data = build(digest, settings).data
    assert data.isascii() and max(len(line) for line in data.split(b"\r\n")) <= 78
    parsed = parse(data)
    assert display_name(data) == name.strip()
    assert parsed["Subject"] == "Ваш дайджест Syndicate Demo — 4 статей: Main, Sports and Technology ✓"


BUILDER = message_builder(SETTINGS, email_renderer(SETTINGS), SignedLookingLinks(), CORPUS.categories, SAMPLE_NOW)


@hsettings(max_examples=120, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"), max_size=120))
def test_any_name_without_line_breaks_reaches_the_to_header_intact(name):
    digest = digest_for()
    digest = replace(digest, subscriber=replace(digest.subscriber, name=name))
    try:
        data = BUILDER.digest_message(digest).data
    except HeaderError as e:  # other control characters are refused, never passed on
        assert re.search(r"[\x00-\x1f\x7f]", name) and e.field == "To"
        return
    assert display_name(data) == " ".join(name.split())
    assert parse(data)["To"].addresses[0].addr_spec == "ana@example.org"
    assert max(len(line) for line in data.split(b"\r\n")) <= 78


@pytest.mark.parametrize(
    "field, change",
    [
        ("To", {"name": "Eve\r\nBcc: victim@example.org"}),
        ("To", {"name": "Eve\nBcc: victim@example.org"}),
        ("To", {"email": "eve@example.org\r\nBcc: victim@example.org"}),
        ("To", {"email": "eve@example.org>, victim@example.org"}),
    ],
)
def test_line_breaks_in_subscriber_values_are_refused_naming_the_field(field, change):
    digest = digest_for()
    digest = replace(digest, subscriber=replace(digest.subscriber, **change))
    with pytest.raises(HeaderError) as caught:
        build(digest)
    assert caught.value.field == field and field in str(caught.value)


def test_a_line_break_from_the_subject_template_or_a_category_name_is_refused():
    digest = digest_for(categories=("sports",))
    evil = Category("sports", "Sports\r\nBcc: victim@example.org")
    digest = replace(digest, sections=(replace(digest.sections[0], category=evil),), variant_key="evil")
    with pytest.raises(HeaderError, match="Subject header: contains a CR or LF"):
        build(digest)
    settings = sample_settings(digest={"subject": "Hi{{ '\\n' }}Bcc: x@example.org"})
    with pytest.raises(HeaderError, match="Subject"):
        build(digest_for(settings), settings)


def test_a_line_break_in_a_link_or_the_config_is_refused():
    class BadLinks(SignedLookingLinks):
        def unsubscribe_url(self, subscriber):
            return "https://x.example/u\r\nBcc: victim@example.org"

    with pytest.raises(HeaderError, match="List-Unsubscribe"):
        build(links=BadLinks())
    with pytest.raises(ConfigError, match=r"\[mail\] from"):
        build(settings=sample_settings(mail={"from_": "Desk\n <desk@example.org>"}))
    with pytest.raises(HeaderError, match="List-Id"):
        build(settings=sample_settings(email={"list_id": "x\r\nBcc: v@example.org"}))
    with pytest.raises(ConfigError, match=r"\[email\] unsubscribe_mailto"):
        build(settings=sample_settings(email={"unsubscribe_mailto": "a@b.org\r\nX: y"}))


def test_the_confirmation_email_parses_back_with_its_link():
    data = build_confirmation(
        SETTINGS.mail,
        SETTINGS.email,
        SETTINGS.site,
        email_renderer(SETTINGS),
        email="new@example.org",
        name="Nouvel Abonné",
        categories=[Category("sports", "Sports")],
        confirm_url="http://127.0.0.1:8000/confirm/tok.sig",
        now=SAMPLE_NOW,
    )
    parsed = parse(data)
    assert parsed["To"].addresses[0].display_name == "Nouvel Abonné"
    assert parsed["Subject"] == "Confirm your subscription to Syndicate Demo"
    assert parsed["List-Unsubscribe"] is None
    text, html = (p.get_content() for p in parsed.iter_parts())
    assert "http://127.0.0.1:8000/confirm/tok.sig" in text and 'href="http://127.0.0.1:8000/confirm/tok.sig"' in html
    assert max(len(line) for line in data.split(b"\r\n")) <= 78


# -- golden files --------------------------------------------------------------------------
def _scrub(data: bytes) -> bytes:
    """Date is the run time; everything else in the sample message is deterministic."""
    return re.sub(rb"^Date: [^\r]*", b"Date: (scrubbed)", data, flags=re.M)


def test_golden_digest_html_text_and_eml():
    settings = sample_settings(digest={"max_articles": 4})  # so "and N more" shows too
    digest = digest_for(settings, categories=tuple(c.slug for c in CORPUS.categories))
    rendered = email_renderer(settings).render_digest(digest, SignedLookingLinks(), CORPUS.categories)
    outputs = {
        "digest.html": rendered.html.encode(),
        "digest.txt": rendered.text.encode(),
        "digest.eml": _scrub(build(digest, settings).data),
    }
    differ = []
    for name, actual in outputs.items():
        path = GOLDEN / name
        if REGENERATE or not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(actual)
            differ += [] if REGENERATE else [f"{name} did not exist and was written"]
        elif actual != path.read_bytes():
            differ.append(f"{name} differs from {path}")
    assert not differ, "; ".join(differ) + " (SYNDICATE_REGENERATE_GOLDEN=1 rewrites the golden files)"


def test_the_date_header_is_the_run_time_in_rfc_5322_form():
    later = SAMPLE_NOW + timedelta(days=1)
    builder = message_builder(SETTINGS, email_renderer(SETTINGS), SignedLookingLinks(), CORPUS.categories, later)
    assert b"\r\nDate: Fri, 27 Nov 2026 08:00:00 +0000\r\n" in b"\r\n" + builder.digest_message(digest_for()).data


def test_many_variants_built_from_shared_pieces_decode_to_what_the_renderer_assembles():
    import random

    from syndicate.digest._select import Timeline

    rng = random.Random(8)
    slugs = [c.slug for c in CORPUS.categories]
    settings = sample_settings(digest={"max_articles": 3})
    renderer = email_renderer(settings)
    builder = message_builder(settings, renderer, SignedLookingLinks(), CORPUS.categories, SAMPLE_NOW)
    timeline = Timeline.of(CORPUS.articles)
    seen = set()
    for i in range(60):
        reader = subscriber(
            tuple(rng.sample(slugs, rng.randint(1, 4))),
            id=i,
            name=rng.choice([None, "Ann", "Zoë <z>", 'Bob "B" & Co']),
            high_water=SAMPLE_NOW - timedelta(days=rng.randint(1, 30)),
        )
        digest = select_digest(reader, timeline, CORPUS.categories, SAMPLE_NOW, settings.digest.max_articles)
        if digest is None:
            continue
        seen.add(digest.variant_key)
        message = builder.digest_message(digest)
        parsed = parse(message.data)
        assert not parsed.defects and all(not p.defects for p in parsed.walk())
        expected = renderer.render_digest(digest, SignedLookingLinks(), CORPUS.categories)
        text, html = (p.get_content().replace("\r\n", "\n") for p in parsed.iter_parts())
        assert (parsed["Subject"], text, html) == (expected.subject, expected.text, expected.html)
        assert parsed["List-Unsubscribe"] == f"<https://news.example.org/unsubscribe/tok-{i}.sig?u={i}&v=1>"
    assert len(seen) >= 15


def test_a_variant_forgotten_by_the_bounded_caches_is_built_again_byte_for_byte():
    """The run's caches keep only the most recently used variants (memory stays flat over a big run);
    a digest whose variant was forgotten still gets exactly the same message."""
    import random

    from syndicate.digest._select import Timeline

    rng = random.Random(3)
    slugs = [c.slug for c in CORPUS.categories]
    settings = sample_settings(digest={"max_articles": 3})
    timeline = Timeline.of(CORPUS.articles)
    digests = {}
    for i in range(40):
        reader = subscriber(tuple(rng.sample(slugs, rng.randint(1, 4))), id=i,
                            high_water=SAMPLE_NOW - timedelta(days=rng.randint(1, 30)))
        digest = select_digest(reader, timeline, CORPUS.categories, SAMPLE_NOW, settings.digest.max_articles)
        if digest is not None:
            digests.setdefault(digest.variant_key, digest)
    assert len(digests) >= 5
    tiny = message_builder(settings, email_renderer(settings, variant_cache=2), SignedLookingLinks(), CORPUS.categories,
                          SAMPLE_NOW, variant_cache=2)
    roomy = message_builder(settings, email_renderer(settings), SignedLookingLinks(), CORPUS.categories, SAMPLE_NOW)
    order = [*digests.values(), *digests.values()]  # every variant is evicted before it comes round again
    for digest in order:
        assert tiny.digest_message(digest).data == roomy.digest_message(digest).data
    assert len(tiny._variants) == 2 and len(roomy._variants) == len(digests)
