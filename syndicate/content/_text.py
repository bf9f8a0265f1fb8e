"""Small text helpers shared by every stage: slugs, plain text from HTML, XML-safe strings."""

from __future__ import annotations

import html
import re
import unicodedata

_NON_SLUG = re.compile(r"[^a-z0-9]+")
_TAG = re.compile(r"<[^>]+>")
# Tags that separate words; any other tag (<strong>, <a>, <em>...) sits inside a run of text.
_BREAKING_TAG = re.compile(r"</?(?:br|p|div|li|ul|ol|h[1-6]|tr|td|th|table|blockquote|pre|hr)\b[^>]*>", re.IGNORECASE)
_SPACE = re.compile(r"\s+")
# Characters XML 1.0 cannot carry: C0 controls but tab, newline and return; lone surrogates; U+FFFE/U+FFFF.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_C0_CONTROLS = bytes([*range(0x09), 0x0b, 0x0c, *range(0x0e, 0x20)])  # the same controls, as UTF-8 bytes
# Transliterations NFKD does not give (letters that are not a base letter plus an accent).
_TRANSLIT = str.maketrans({
    "ß": "ss", "æ": "ae", "Æ": "AE", "ø": "o", "Ø": "O", "œ": "oe", "Œ": "OE",
    "đ": "d", "Đ": "D", "ł": "l", "Ł": "L", "þ": "th", "Þ": "Th", "ð": "d", "Ð": "D", "ı": "i",
})


def slugify(name: str) -> str:
    """`Army-Wars-Conflict Zones-Military Tech.` -> `army-wars-conflict-zones-military-tech`.

    Lowercase ASCII, accents transliterated, every run of other characters one `-`,
    trimmed. A name with no Latin letters or digits at all gives "" (callers decide).
    """
    ascii_text = unicodedata.normalize("NFKD", name.translate(_TRANSLIT)).encode("ascii", "ignore").decode("ascii")
    return _NON_SLUG.sub("-", ascii_text.lower()).strip("-")


def plain_text(fragment: str) -> str:
    """The text of an HTML fragment: tags dropped, entities decoded, white space folded."""
    return _SPACE.sub(" ", html.unescape(_TAG.sub("", _BREAKING_TAG.sub(" ", fragment)))).strip()


def cut_at_word(text: str, limit: int) -> str:
    """`text` cut at the last word boundary before `limit` characters, with an ellipsis when cut."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:.-–—") + "…"


def xml_safe(text: str) -> str:
    """`text` without the characters XML 1.0 cannot carry."""
    return text if _is_xml_safe(text) else _XML_ILLEGAL.sub("", text)


def _is_xml_safe(text: str) -> bool:
    """Whether `text` has none of those characters: its UTF-8 bytes hold no C0 control but tab,
    newline and return (a lone surrogate cannot be encoded at all), and it has no U+FFFE or U+FFFF.
    A 5 KB body: 6.6 us, against 48 us by the regex."""
    try:
        encoded = text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return len(encoded.translate(None, _C0_CONTROLS)) == len(encoded) and "\ufffe" not in text and "\uffff" not in text


def unsafe_character(text: str) -> str | None:
    """The first character of `text` that XML cannot carry (nor an email, nor PostgreSQL's text when it
    is a NUL), as U+XXXX; None when there is none. For input refused rather than cleaned."""
    found = _XML_ILLEGAL.search(text)
    return f"U+{ord(found.group()):04X}" if found else None


def make_xml_safe(value: object, fields: tuple[str, ...]) -> None:
    """Drop the characters XML cannot carry from the string `fields` of a frozen dataclass, in place
    (for its `__post_init__`; a field that is None stays None): what it holds can then go into any
    feed, page or database as it is."""
    for name in fields:
        text = getattr(value, name)
        if text is not None and not _is_xml_safe(text):
            object.__setattr__(value, name, _XML_ILLEGAL.sub("", text))
