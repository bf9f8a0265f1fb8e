"""The text helpers every stage shares."""

import re

from hypothesis import given
from hypothesis import strategies as st

from syndicate.content._text import xml_safe

# XML 1.0's Char production, the reference the fast path must agree with.
NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
TRICKY = st.sampled_from(["\x00", "\x01", "\x0b", "\x0c", "\x1f", "\t", "\n", "\r", "\ud800", "\udfff", "\ufffe",
                          "\uffff", "\ufffd", "é", "東", "🎉", "&", "<", "]]>"])


@given(st.lists(st.one_of(st.text(max_size=20), TRICKY), max_size=30).map("".join))
def test_xml_safe_removes_exactly_what_xml_cannot_carry(text):
    assert xml_safe(text) == NOT_XML.sub("", text)


def test_xml_safe_keeps_a_clean_text_as_it_is():
    text = "Plain ASCII and accents é, CJK 東京, emoji 🎉, tabs\tand\nlines\r\n" * 100
    assert xml_safe(text) is text


def test_xml_safe_finds_a_control_character_in_a_long_ascii_text():
    body = "<p>" + "word " * 200 + "</p>\n"
    for control in ["\x00", "\x08", "\x0b", "\x1f"]:
        assert xml_safe(body[:500] + control + body[500:]) == body
    assert xml_safe(body + "\t\r\n") == body + "\t\r\n"
