"""Renders digests and confirmations from the Jinja2 email templates, inlines their CSS once,
and personalises the result per subscriber.

The only module that imports jinja2 (for email), premailer and css_inline.

Templates live in `[email] templates` when set, else in the `templates/` folder of the
source tree, next to the `syndicate` package (`templates/email/*.j2`; an editable install
or a checkout, as `make` uses).

What is inlined, and how often, per run:
- the digest *frame* (digest.html.j2 on base.html.j2: head, <style>, masthead, greeting,
  footer) once, with unguessable markers standing in for the per-variant values (title,
  sections) and the per-subscriber ones (greeting, followed categories, address, links);
- each *piece* of a section (the macros of digest_section.html.j2: a category heading,
  an article, an "and N more" line) once, as a fragment with the frame's CSS. This gives
  the same HTML as inlining the whole document because the email CSS uses only class and
  element selectors (a test holds both equal).
Sections and variants (one set of sections) are then assembled by joining strings, and
each subscriber gets theirs with the markers replaced by their values, escaped for HTML
or for text.
"""

from __future__ import annotations

import html
import logging
import re
import secrets
import textwrap
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Generic, Protocol, TypeVar
from zoneinfo import ZoneInfo

import css_inline
import jinja2
import markupsafe
import premailer

from syndicate.config import EmailSettings, SiteSettings
from syndicate.content import Article, Category
from syndicate.digest._select import Digest, DigestSection, section_key
from syndicate.errors import ConfigError
from syndicate.site import SiteUrls, archive_period
from syndicate.subscribers import Subscriber

log = logging.getLogger(__name__)

DEFAULT_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
DIGEST_SLOTS = ("greeting", "following", "email", "unsubscribe_url", "preferences_url", "masthead_line", "view_url")
VARIANT_SLOTS = ("title", "preheader", "sections")
PREHEADER_LENGTH = 140  # what inboxes show of it, about
_IMAGE = re.compile(r"<img\b[^>]*>", re.I)
_ATTRIBUTE = re.compile(r"""\b(src|alt)\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.I)
CONFIRM_SLOTS = ("greeting", "following", "email", "confirm_url")
CAMPAIGN_SLOTS = ("greeting", "email", "unsubscribe_url", "preferences_url")
# premailer: nothing from the network or disk; !important kept (media queries need it to
# beat inline styles); no width/bgcolor/... attributes added (css-inline adds none either);
# cssutils' warnings about Outlook-only properties kept off the console; the parsed CSS
# cached (the same <style> for every piece of a run).
_PREMAILER = MappingProxyType(
    {
        "allow_network": False,
        "allow_loading_external_files": False,
        "strip_important": False,
        "disable_leftover_css": True,
        "disable_basic_attributes": ("width", "height", "align", "bgcolor"),
        "cssutils_logging_level": logging.CRITICAL,
        "cache_css_parsing": True,
    }
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
# A run's caches forget their least recently used entries past these sizes, so memory stays flat
# however many subscribers a run has (a variant evicted and met again is re-assembled from the
# cached sections: no inlining). Pieces are bounded by the articles in the digests' window.
VARIANT_CACHE = 4096
SECTION_CACHE = 4096
FOLLOWING_CACHE = 4096
DATED_CACHE = 1024  # (time zone, frequency, issue number) of a run's subscribers

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """A mapping that keeps its `limit` most recently used entries."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("BoundedCache needs a limit of at least 1")
        self.limit = limit
        self._data: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> V:
        self._data[key] = value
        self._data.move_to_end(key)
        if len(self._data) > self.limit:
            self._data.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._data)


class LinkMaker(Protocol):
    """Makes a subscriber's signed one-click unsubscribe and preferences URLs."""

    def unsubscribe_url(self, subscriber: Subscriber) -> str: ...

    def preferences_url(self, subscriber: Subscriber) -> str: ...


@dataclass(frozen=True)
class SlotText:
    """Rendered text with per-subscriber slots: `pieces` alternate literal text and slot names
    (even indexes literal, odd indexes slot names)."""

    pieces: tuple[str, ...]

    @property
    def is_static(self) -> bool:
        return len(self.pieces) == 1

    def fill(self, values: Mapping[str, str]) -> str:
        pieces = self.pieces
        if len(pieces) == 1:
            return pieces[0]
        return "".join([p if i % 2 == 0 else values[p] for i, p in enumerate(pieces)])

    def partial(self, values: Mapping[str, str]) -> SlotText:
        """This text with the slots named in `values` filled and the others left."""
        out: list[str] = [self.pieces[0]]
        for i in range(1, len(self.pieces), 2):
            name, literal = self.pieces[i], self.pieces[i + 1]
            if name in values:
                out[-1] += values[name] + literal
            else:
                out += [name, literal]
        return SlotText(tuple(out))

    def lines(self) -> list[SlotText]:
        """The text cut at its line ends ("\\n"), each line a SlotText of its own."""
        lines: list[list[str]] = [[]]
        for i, piece in enumerate(self.pieces):
            if i % 2:
                lines[-1].append(piece)
                continue
            first, *rest = piece.split("\n")
            _append_literal(lines[-1], first)
            for part in rest:
                lines.append([part])
        return [SlotText(tuple(line) if line else ("",)) for line in lines]


def _append_literal(line: list[str], text: str) -> None:
    if len(line) % 2 == 1:  # ends with a literal
        line[-1] += text
    else:
        line.append(text)


@dataclass(frozen=True)
class RenderedVariant:
    """A digest's (or confirmation's) subject, HTML (CSS inlined) and text, before personalisation."""

    key: str
    subject: str
    html: SlotText
    text: SlotText


@dataclass(frozen=True)
class RenderedEmail:
    """One recipient's finished subject, HTML and plain text."""

    subject: str
    html: str
    text: str


@dataclass(frozen=True)
class SlotValues:
    """One recipient's slot values, escaped for the HTML part and for the text part."""

    html: Mapping[str, str]
    text: Mapping[str, str]


def clean_line(value: str) -> str:
    """A one-line version of untrusted text: control characters and runs of space become one space."""
    return " ".join(_CONTROL.sub(" ", value).split())


def join_names(names: Sequence[str]) -> str:
    """"A", "A and B", "A, B and C"."""
    if len(names) <= 1:
        return "".join(names)
    return f"{', '.join(names[:-1])} and {names[-1]}"


def templates_folder(email: EmailSettings) -> Path:
    return email.templates or DEFAULT_TEMPLATES


class _Premailer(premailer.Premailer):
    """premailer, taking each stylesheet's rules from `parsed` when it has met that CSS before.

    Every piece of a run is inlined with the frame's same <style>: turning that CSS into rules
    (cssutils serialising every property) and the rules it cannot inline back into text was about
    nine tenths of inlining one piece. Both depend only on the CSS text and its index, so they are
    kept (the leftover text only goes into a <style> that a fragment's inlining throws away)."""

    def __init__(self, html: str, *, parsed: BoundedCache[tuple[str, int], _ParsedRules], **options: object) -> None:
        super().__init__(html, **options)
        self._parsed = parsed
        self._read: dict[int, _ParsedRules] = {}  # by the identity of its leftover list, for _css_rules_to_string

    def _parse_style_rules(self, css_body: str, ruleset_index: int) -> tuple[list[object], list[object]]:
        key = (css_body, ruleset_index)
        found = self._parsed.get(key)
        if found is None:
            rules, leftover = super()._parse_style_rules(css_body, ruleset_index)
            found = self._parsed.put(key, _ParsedRules(tuple(rules), leftover))
        self._read[id(found.leftover)] = found
        return list(found.rules), found.leftover

    def _css_rules_to_string(self, rules: list[object]) -> str:
        found = self._read.get(id(rules))
        return found.text_of(self) if found is not None and found.leftover is rules else super()._css_rules_to_string(rules)


class _ParsedRules:
    """One stylesheet as premailer reads it: the rules it inlines, those it leaves, and the text of the latter."""

    def __init__(self, rules: tuple[object, ...], leftover: list[object]) -> None:
        self.rules = rules
        self.leftover = leftover
        self._text: str | None = None

    def text_of(self, inliner: premailer.Premailer) -> str:
        if self._text is None:
            self._text = premailer.Premailer._css_rules_to_string(inliner, self.leftover)
        return self._text


def _rules_cache() -> BoundedCache[tuple[str, int], _ParsedRules]:
    return BoundedCache(16)  # one per distinct <style> text: the frame's, a confirmation's, a notice's...


def inline_css(document: str, inliner: str, *, parsed: BoundedCache[tuple[str, int], _ParsedRules] | None = None) -> str:
    """`document` with its <style> rules copied onto the elements they match.

    The <style> block stays (media queries need it; its rules keep `!important`), and
    nothing is fetched from the network. `parsed`: stylesheets premailer has already read
    (EmailRenderer keeps one per renderer).
    """
    if inliner == "css-inline":
        return css_inline.CSSInliner(keep_style_tags=True, load_remote_stylesheets=False).inline(document)
    return _Premailer(document, parsed=_rules_cache() if parsed is None else parsed, keep_style_tags=True, **_PREMAILER).transform()


def inline_fragment(fragment: str, css: str, inliner: str, *,
                    parsed: BoundedCache[tuple[str, int], _ParsedRules] | None = None) -> str:
    """`fragment` (a run of elements from a document's <body>) with `css` inlined onto it.

    Whitespace around the fragment is kept as it was, so that fragments joined after
    inlining read exactly like the whole document inlined at once.
    """
    core = fragment.strip()
    if not core:
        return fragment
    start = fragment.index(core)
    return fragment[:start] + _inline_fragment(core, css, inliner, _rules_cache() if parsed is None else parsed).strip() + fragment[start + len(core):]


def _inline_fragment(fragment: str, css: str, inliner: str, parsed: BoundedCache[tuple[str, int], _ParsedRules]) -> str:
    if inliner == "css-inline":
        return css_inline.inline_fragment(fragment, css, load_remote_stylesheets=False)
    document = f"<html><head><style>{css}</style></head><body>{fragment}</body></html>"
    inlined = _Premailer(document, parsed=parsed, keep_style_tags=False, **_PREMAILER).transform()
    body = _BODY.search(inlined)
    if body is None:
        raise ValueError("premailer returned a document without a body")
    return body.group(1)


_BODY = re.compile(r"<body[^>]*>(.*)</body>", re.S)
_STYLE = re.compile(r"<style[^>]*>(.*?)</style>", re.S)


@dataclass(frozen=True)
class DigestFrame:
    """The digest document around its sections, inlined once per run; `css` is its <style> text.

    Besides the per-subscriber slots it has two per-variant slots: "title" (the subject)
    and "sections", which stands alone on its line.
    """

    html: SlotText
    text: SlotText
    css: str


@dataclass(frozen=True)
class RenderedPiece:
    """One macro of digest_section.*.j2 (a heading, an article, an "and N more" line), its HTML
    inlined; both texts end with a line end. Rendered once per run, shared by every digest."""

    key: tuple[object, ...]
    html: str
    text: str


@dataclass(frozen=True)
class RenderedSection:
    """One category's part of a digest: its pieces, in order."""

    key: str
    pieces: tuple[RenderedPiece, ...]

    @property
    def html(self) -> str:
        return "".join(p.html for p in self.pieces)

    @property
    def text(self) -> str:
        return "".join(p.text for p in self.pieces)


@dataclass(frozen=True)
class DigestParts:
    """What a digest variant is made of: its subject and its sections (the frame is the run's)."""

    subject: str
    sections: tuple[RenderedSection, ...]


EMAIL_TEMPLATES = tuple(f"{name}.{kind}.j2" for name in ("digest", "digest_section", "confirm") for kind in ("html", "txt"))


class EmailRenderer:
    """Renders digests and confirmations; holds this run's cache of rendered variants."""

    def __init__(self, site: SiteSettings, email: EmailSettings, subject: str, urls: SiteUrls, *,
                 inliner: str | None = None, cache: bool = True, variant_cache: int = VARIANT_CACHE,
                 images: bool = False) -> None:
        """`site` names the site and its time zone, `email` the templates and the CSS inliner, `subject`
        is the [digest] subject template, `urls` makes the links. `cache=False` renders and inlines every digest afresh (the naive baseline the benchmark measures);
        `variant_cache`: rendered variants kept (least recently used forgotten)."""
        self.site = site
        self.images = images  # [digest] images: each article's first image in the digest
        self.cache = cache
        self.inliner = inliner or email.css_inliner
        self.urls = urls
        self.timezone = ZoneInfo(site.timezone)
        self._nonce = secrets.token_hex(8)
        names = "|".join(sorted(set(DIGEST_SLOTS + VARIANT_SLOTS + CONFIRM_SLOTS + CAMPAIGN_SLOTS)))
        self._marker = re.compile(f"slot{self._nonce}({names})x")
        self._env = _environment(templates_folder(email))
        self._subject = _subject_template(subject)
        self._variants: BoundedCache[str, RenderedVariant] = BoundedCache(variant_cache)
        self._variants_rendered = 0
        self._sections: BoundedCache[str, RenderedSection] = BoundedCache(SECTION_CACHE)
        self._pieces: dict[tuple[object, ...], RenderedPiece] = {}
        self._frame: DigestFrame | None = None
        self._following: BoundedCache[tuple[str, ...], tuple[str, str]] = BoundedCache(FOLLOWING_CACHE)
        self._dated: BoundedCache[tuple[object, ...], tuple[str, str, str, str]] = BoundedCache(DATED_CACHE)
        self._parsed_css = _rules_cache()  # premailer's reading of each <style>, for every inlining of this renderer

    def check_templates(self) -> None:
        """ConfigError naming the template when an email template is missing or does not compile
        (checked before a run is recorded: a broken template is the operator's, not a recipient's, fault)."""
        for name in EMAIL_TEMPLATES:
            try:
                self._env.get_template(name)
            except jinja2.TemplateError as e:
                raise ConfigError([f"email template {name}: {type(e).__name__}: {str(e)[:200]}"],
                                  hint="fix the template, or unset [email] templates to use the built-in ones") from None

    # -- digests ---------------------------------------------------------------------
    def variant(self, digest: Digest) -> RenderedVariant:
        """The rendered, inlined digest for `digest`'s set of articles (cached for this renderer)."""
        if not self.cache:
            return self._render_whole_digest(digest)
        cached = self._variants.get(digest.variant_key)
        if cached is None:
            cached = self._variants.put(digest.variant_key, self._render_digest(digest))
            self._variants_rendered += 1
            log.debug("rendered digest variant %s (%d articles)", digest.variant_key, digest.count)
        return cached

    @property
    def variants_rendered(self) -> int:
        """Variants assembled through `variant()` (the message builder assembles its own)."""
        return self._variants_rendered

    @property
    def pieces_inlined(self) -> int:
        """Section pieces rendered and inlined so far (plus the frame, once)."""
        return len(self._pieces)

    def digest_values(self, subscriber: Subscriber, links: LinkMaker, categories: Iterable[Category], *,
                      now: datetime | None = None, issue: int | None = None) -> SlotValues:
        """A subscriber's slot values; `categories` are the site's categories (for the names they follow);
        `now` the run's time (the masthead's date, the archive page of "view in browser"); `issue` the
        digest's number in the subscriber's series."""
        following = self._following.get(subscriber.categories)
        if following is None:
            followed = set(subscriber.categories)
            names = [c.name for c in categories if c.slug in followed]
            sentence = f"You get this digest because you follow {join_names(names)}." if names else ""
            following = self._following.put(subscriber.categories, (html.escape(sentence), textwrap.fill(sentence, 72)))
        greeting = _greeting(subscriber.name)
        email = clean_line(subscriber.email)
        unsubscribe = links.unsubscribe_url(subscriber)
        preferences = links.preferences_url(subscriber)
        dated_key = (now, subscriber.timezone, subscriber.frequency, issue)
        dated = self._dated.get(dated_key)
        if dated is None:
            dated = self._dated.put(dated_key, self._dated_values(subscriber, now, issue))
        masthead_line, view, masthead_html, view_html = dated
        escape = html.escape
        return SlotValues(
            html={
                "greeting": escape(greeting),
                "following": following[0],
                "email": escape(email),
                "unsubscribe_url": escape(unsubscribe),
                "preferences_url": escape(preferences),
                "masthead_line": masthead_html,
                "view_url": view_html,
            },
            text={
                "greeting": greeting,
                "following": following[1],
                "email": email,
                "unsubscribe_url": unsubscribe,
                "preferences_url": preferences,
                "masthead_line": masthead_line,
                "view_url": view,
            },
        )

    def _dated_values(self, subscriber: Subscriber, now: datetime | None, issue: int | None) -> tuple[str, str, str, str]:
        """The masthead's line (the date where the subscriber lives, the issue) and the "view in
        browser" address, as text and as HTML: the same for every subscriber of one time zone,
        frequency and issue number in a run."""
        masthead_line, view = "", self.urls.archive()
        if now is not None:
            local = now.astimezone(ZoneInfo(subscriber.timezone))
            masthead_line = f"{local:%A} {local.day} {local:%B %Y}" + (f" · Issue {issue}" if issue else "")
            frequency = subscriber.frequency.value
            view = self.urls.archive_issue(frequency, archive_period(frequency, now, self.timezone))
        return masthead_line, view, html.escape(masthead_line), html.escape(view)

    def personalise(self, variant: RenderedVariant, values: SlotValues) -> RenderedEmail:
        return RenderedEmail(variant.subject, variant.html.fill(values.html), variant.text.fill(values.text))

    def render_digest(self, digest: Digest, links: LinkMaker, categories: Iterable[Category], *,
                      now: datetime | None = None) -> RenderedEmail:
        """The finished digest for its subscriber (variant from the cache, then personalised); `now` as in digest_values."""
        values = self.digest_values(digest.subscriber, links, categories, now=now, issue=digest.issue)
        return self.personalise(self.variant(digest), values)

    # -- confirmation ----------------------------------------------------------------
    def render_confirmation(self, email: str, name: str | None, categories: Sequence[Category], confirm_url: str) -> RenderedEmail:
        """The double opt-in email asking `email` to open `confirm_url`."""
        variant = self._variants.get("confirm")
        if variant is None:
            variant = self._variants.put("confirm", self._render_confirmation())
        values = self._values(
            greeting=_greeting(name),
            following=join_names([c.name for c in categories]) or "its articles",
            email=clean_line(email),
            confirm_url=confirm_url,
        )
        return self.personalise(variant, values)

    # -- notices (welcome, already subscribed) ------------------------------------------
    def render_notice(self, template: str, subject: str, values: Mapping[str, str]) -> RenderedEmail:
        """A one-off email from `email/{template}.html.j2` and `.txt.j2` (a handful a day: no caching).
        `values` are plain text; the HTML template escapes them."""
        context = {**self._common(), "title": subject, **values}
        document = _lf(self._env.get_template(f"{template}.html.j2").render(context))
        text = _lf(self._env.get_template(f"{template}.txt.j2").render(context))
        return RenderedEmail(subject, inline_css(document, self.inliner, parsed=self._parsed_css), text)

    def has_template(self, template: str) -> bool:
        """Whether the templates folder has `email/{template}.html.j2` and `.txt.j2` (the welcome email is optional)."""
        names = set(self._env.list_templates())
        return {f"{template}.html.j2", f"{template}.txt.j2"} <= names
    # -- campaigns (one-off messages) -------------------------------------------------
    def render_campaign(self, key: str, subject: str, body_html: str, body_text: str, subscriber: Subscriber,
                        links: LinkMaker, *, variant: str = "letter") -> RenderedEmail:
        """A campaign for `subscriber`: `body_html` (sanitised HTML from its Markdown) and `body_text`
        in the digest's frame, with the same unsubscribe and preferences links. Rendered and inlined
        once per `key` (the campaign), then personalised. `variant`: "letter" opens with a greeting,
        "announcement" with the subject as a heading."""
        rendered = self._variants.get(key)
        if rendered is None:
            slots = self._slot_markers(CAMPAIGN_SLOTS)
            context = {**self._common(), "title": subject, "body_html": markupsafe.Markup(body_html),
                       "body_text": body_text, "variant": variant, **slots}
            rendered = self._variants.put(key, self._finish(key, subject, "campaign", context))
        values = self._values(
            greeting=_greeting(subscriber.name), email=clean_line(subscriber.email),
            unsubscribe_url=links.unsubscribe_url(subscriber), preferences_url=links.preferences_url(subscriber),
        )
        return self.personalise(rendered, values)

    # -- internals -------------------------------------------------------------------
    def _slot_markers(self, names: Sequence[str]) -> dict[str, str]:
        return {name: f"slot{self._nonce}{name}x" for name in names}

    def _values(self, **values: str) -> SlotValues:
        text = dict(values)
        if values.get("following"):
            text["following"] = textwrap.fill(values["following"], 72)
        return SlotValues(html={k: html.escape(v, quote=True) for k, v in values.items()}, text=text)

    def _common(self) -> dict[str, object]:
        site = self.site
        logo = None
        if site.logo:
            logo = {"url": site.logo, "width": site.logo_width, "height": site.logo_height, "alt": site.logo_alt or site.title}
        return {
            "site": site.title,
            "language": site.language,
            "home_url": self.urls.home(),
            "logo": logo,
            "postal_address": clean_line(site.postal_address or ""),
        }

    @staticmethod
    def preheader(digest: Digest) -> str:
        """What the inbox shows after the subject: the top headlines."""
        titles = [clean_line(a.title) for a in digest.articles[:4]]
        text = " · ".join(titles)
        return text if len(text) <= PREHEADER_LENGTH else text[:PREHEADER_LENGTH - 1].rsplit(" ", 1)[0] + "…"

    def digest_parts(self, digest: Digest) -> DigestParts:
        """The subject and the (cached) inlined sections of `digest`; nothing per subscriber."""
        css = self.frame().css
        return DigestParts(self._render_subject(digest), tuple(self._section(s, css) for s in digest.sections))

    def _render_digest(self, digest: Digest) -> RenderedVariant:
        """Assembled from the run's inlined frame and inlined sections: only new sections are rendered."""
        frame = self.frame()
        parts = self.digest_parts(digest)
        preheader = self.preheader(digest)
        html_text = frame.html.partial({"title": html.escape(parts.subject), "preheader": html.escape(preheader),
                                        "sections": "".join(p.html for p in parts.sections)})
        plain = frame.text.partial({"title": parts.subject, "preheader": preheader,
                                    "sections": "".join(p.text for p in parts.sections)})
        return RenderedVariant(digest.variant_key, parts.subject, html_text, plain)

    def _render_whole_digest(self, digest: Digest) -> RenderedVariant:
        """The naive way, for comparison: render the whole document and inline it in one go."""
        slots = self._slot_markers(DIGEST_SLOTS + VARIANT_SLOTS)
        context = {**self._common(), "title": slots["title"], "slots": slots}
        subject = self._render_subject(digest)
        raw = [self._raw_section(s) for s in digest.sections]
        sections_html = "".join(h for h, _ in raw)
        sections_text = "".join(t for _, t in raw)
        document = self._env.get_template("digest.html.j2").render(context)
        preheader = self.preheader(digest)
        document = (document.replace(slots["sections"], sections_html).replace(slots["title"], html.escape(subject))
                    .replace(slots["preheader"], html.escape(preheader)))
        text = self._env.get_template("digest.txt.j2").render(context)
        text = (text.replace(slots["sections"], sections_text).replace(slots["title"], subject)
                .replace(slots["preheader"], preheader))
        inlined = inline_css(_lf(document), self.inliner, parsed=self._parsed_css)
        return RenderedVariant(digest.variant_key, subject, self._slotted(inlined), self._slotted(_lf(text)))

    def frame(self) -> DigestFrame:
        """The digest document with slots for the title, the sections and the subscriber's values."""
        if self._frame is None:
            slots = self._slot_markers(DIGEST_SLOTS + VARIANT_SLOTS)
            context = {**self._common(), "title": slots["title"], "slots": slots}
            document = _lf(self._env.get_template("digest.html.j2").render(context))
            text = _lf(self._env.get_template("digest.txt.j2").render(context))
            css = _STYLE.search(document)
            if css is None:
                raise ConfigError(["[email] templates: digest.html.j2 (through base.html.j2) has no <style> block"])
            inlined = inline_css(document, self.inliner, parsed=self._parsed_css)
            self._frame = DigestFrame(self._slotted(inlined), self._slotted(text), css.group(1))
            _check_alone(self._frame.html, "digest.html.j2")
            _check_alone(self._frame.text, "digest.txt.j2")
        return self._frame

    def _section(self, section: DigestSection, css: str) -> RenderedSection:
        """One section, made of pieces each inlined once per run."""
        key = section_key(section)
        cached = self._sections.get(key)
        if cached is None:
            pieces = tuple(self._piece(macro, piece_key, view, css) for macro, piece_key, view in self._pieces_of(section))
            cached = self._sections.put(key, RenderedSection(key, pieces))
        return cached

    def _pieces_of(self, section: DigestSection) -> list[tuple[str, tuple[object, ...], dict[str, object]]]:
        """(macro, key, view) of each piece of `section`."""
        category = self._category_view(section)
        pieces: list[tuple[str, tuple[object, ...], dict[str, object]]] = [("heading", (section.category,), category)]
        pieces += [("article", (a.id, a.content_hash), self._article_view(a)) for a in section.articles]
        if section.hidden:
            pieces.append(("more", (section.category, section.hidden), category))
        return pieces

    def _piece(self, macro: str, key: tuple[object, ...], view: Mapping[str, object], css: str | None) -> RenderedPiece:
        """A macro of digest_section.{html,txt}.j2 rendered, and inlined (cached) unless `css` is None."""
        cached = self._pieces.get((macro, *key)) if css is not None else None
        if cached is None:
            fragment = _block(_lf(str(getattr(self._env.get_template("digest_section.html.j2").module, macro)(view))))
            text = _block(_lf(str(getattr(self._env.get_template("digest_section.txt.j2").module, macro)(view))))
            if css is None:
                return RenderedPiece((macro, *key), fragment, text)
            cached = RenderedPiece((macro, *key), _block(inline_fragment(fragment, css, self.inliner, parsed=self._parsed_css)), text)
            self._pieces[(macro, *key)] = cached
        return cached

    def _raw_section(self, section: DigestSection) -> tuple[str, str]:
        """The section's HTML before inlining, and its text (the naive path)."""
        pieces = [self._piece(macro, key, view, None) for macro, key, view in self._pieces_of(section)]
        return "".join(p.html for p in pieces), "".join(p.text for p in pieces)

    def _category_view(self, section: DigestSection) -> dict[str, object]:
        return {"name": section.category.name, "url": self.urls.category(section.category.slug), "hidden": section.hidden}

    def _article_view(self, article: Article) -> dict[str, object]:
        return {
            "title": article.title,
            "url": self.urls.article(article),
            "author": article.author,
            "summary": article.summary,
            "date": _day(article.published.astimezone(self.timezone)),
            "source": article.source_name,  # an article from another site's feed: its name
            "image": _first_image(article) if self.images else None,
        }

    def _render_confirmation(self) -> RenderedVariant:
        slots = self._slot_markers(CONFIRM_SLOTS)
        subject = f"Confirm your subscription to {self.site.title}"
        context = {**self._common(), "title": subject, **slots}
        return self._finish("confirm", subject, "confirm", context)

    def _finish(self, key: str, subject: str, name: str, context: Mapping[str, object]) -> RenderedVariant:
        document = _lf(self._env.get_template(f"{name}.html.j2").render(context))
        text = _lf(self._env.get_template(f"{name}.txt.j2").render(context))
        inlined = inline_css(document, self.inliner, parsed=self._parsed_css)
        return RenderedVariant(key, subject, self._slotted(inlined), self._slotted(text))

    def _slotted(self, rendered: str) -> SlotText:
        return SlotText(tuple(self._marker.split(rendered)))

    def _render_subject(self, digest: Digest) -> str:
        names = [s.category.name for s in digest.sections]
        top = next((clean_line(s.articles[0].title) for s in digest.sections if s.articles), "")
        try:
            return self._subject.render(
                top=top,
                site=self.site.title,
                count=digest.count,
                hidden=digest.hidden,
                categories=join_names(names),
                category_list=names,
            )
        except jinja2.TemplateError as e:
            raise ConfigError([f"[digest] subject: {e}"]) from e


def _first_image(article: Article) -> dict[str, str] | None:
    """Front matter `image` (alt text: the title), else the article's first image with an absolute
    http(s) address (a mail client cannot resolve a relative one) and its alt text."""
    if article.image:
        return {"url": article.image, "alt": clean_line(article.title)}
    for tag in _IMAGE.findall(article.body_html):
        found = {m.group(1).lower(): html.unescape(m.group(2) if m.group(2) is not None else m.group(3))
                 for m in _ATTRIBUTE.finditer(tag)}
        if found.get("src", "").startswith(("https://", "http://")):
            return {"url": found["src"], "alt": clean_line(found.get("alt", ""))}
    return None


def _block(text: str) -> str:
    """A section ends with a line end, so sections join line by line."""
    return text if text.endswith("\n") else text + "\n"


def _check_alone(text: SlotText, template: str) -> None:
    for line in text.lines():
        if "sections" in line.pieces[1::2] and line.pieces != ("", "sections", ""):
            raise ConfigError([f"[email] templates: in {template}, {{{{ slots.sections }}}} must stand alone on its line"])


def _lf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _greeting(name: str | None) -> str:
    name = clean_line(name or "")
    return f"Hello {name}," if name else "Hello,"


def _day(moment: datetime) -> str:
    return f"{moment.day} {moment:%B %Y}"


def _environment(folder: Path) -> jinja2.Environment:
    if not (folder / "email").is_dir():
        raise ConfigError([f"[email] templates: no email/ folder of templates in {folder}"])
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder / "email"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _subject_template(source: str) -> jinja2.Template:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
    try:
        template = env.from_string(source)
        template.render(top="Title", site="Site", count=2, hidden=0, categories="A and B", category_list=["A", "B"])
    except jinja2.TemplateSyntaxError as e:
        raise ConfigError([f"[digest] subject: invalid template: {e.message}"]) from e
    except jinja2.TemplateError as e:
        raise ConfigError([f"[digest] subject: {e} (known names: top, site, count, hidden, categories, category_list)"]) from e
    return template
