"""Renders article Markdown to safe HTML: GitHub-flavoured CommonMark (cmarkgfm), sanitised by nh3."""

from __future__ import annotations

import operator
import re

import cmarkgfm
import nh3
from cmarkgfm.cmark import Options

_EXTENSIONS = ("table", "strikethrough", "autolink", "tasklist")
# A link whose target is only "#" points nowhere; keep its text alone.
_EMPTY_LINK = re.compile(r'<a href="#"[^>]*>(.*?)</a>', re.DOTALL)
_LINK_TEXT = operator.methodcaller("group", 1)  # faster than the template r"\1"
_ALLOWED_TAGS = nh3.ALLOWED_TAGS - {"area", "map"} | {"input"}
_ALLOWED_ATTRIBUTES = {
    **{tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items()},
    "input": {"type", "checked", "disabled"},
    "td": {"align"},
    "th": {"align"},
}
# Built once: nh3.clean() with options converts the allowed sets on every call (180 us a 5 KB
# article against 66 us here).
_CLEANER = nh3.Cleaner(tags=_ALLOWED_TAGS, attributes=_ALLOWED_ATTRIBUTES, link_rel="noopener noreferrer")


def render_markdown(text: str) -> str:
    """HTML for `text`: tables, strikethrough, autolinked URLs; no script, style, iframe,
    event attributes or javascript: URLs survive."""
    raw = cmarkgfm.markdown_to_html_with_extensions(
        text, options=Options.CMARK_OPT_UNSAFE, extensions=_EXTENSIONS
    )
    clean = _CLEANER.clean(raw)
    return _EMPTY_LINK.sub(_LINK_TEXT, clean)


_FIRST_PARAGRAPH = re.compile(r"<p>(.*?)</p>", re.DOTALL)


def paragraphs(html_text: str):
    """The inner HTML of each `<p>` of `html_text`, in order."""
    return (m.group(1) for m in _FIRST_PARAGRAPH.finditer(html_text))
