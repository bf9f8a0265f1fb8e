"""Refusals of hostile article input: YAML that expands or repeats keys, dates the feeds cannot carry,
category names no file name or mail header can hold, oversized files; errors that never echo a whole value."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from syndicate.errors import ContentError

SHOWN_LENGTH = 100  # characters of a value echoed into an error message, at most
MAX_CATEGORY_NAME = 200
MAX_YAML_DEPTH = 20
MAX_ARTICLE_BYTES = 4 * 1024 * 1024
# Dates every feed format, page and email header can carry in any timezone (RFC 822 readers
# guess at years before 1900; year 9999 overflows in a timezone west of UTC).
FIRST_DATE = datetime(1900, 1, 1, tzinfo=UTC)
LAST_DATE = datetime(9998, 12, 31, 23, 59, 59, tzinfo=UTC)
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def shown(value: object) -> str:
    """`repr(value)` cut to about SHOWN_LENGTH characters, for error messages."""
    if isinstance(value, str) and len(value) > SHOWN_LENGTH:
        return f"{value[:SHOWN_LENGTH]!r}... ({len(value):,} characters)"
    text = repr(value)
    return text if len(text) <= SHOWN_LENGTH else text[:SHOWN_LENGTH] + "..."


def check_size(rel: PurePosixPath, size: int) -> None:
    if size > MAX_ARTICLE_BYTES:
        raise ContentError(Path(rel), 1, f"file too large (more than {MAX_ARTICLE_BYTES:,} bytes)")


def check_date(rel: PurePosixPath, line: int, key: str, value: datetime) -> datetime:
    """`value` if every feed and page can carry it; else a ContentError naming the line."""
    try:
        inside = FIRST_DATE <= value <= LAST_DATE
    except (OverflowError, ValueError):
        inside = False
    if not inside:
        raise ContentError(Path(rel), line, f"{key}: date {value.isoformat()} is out of range "
                                      f"(dates from {FIRST_DATE.year} to {LAST_DATE.year} are accepted)")
    return value


def check_category_name(rel: PurePosixPath, line: int, name: str) -> None:
    """Refuse names that cannot become a file name or a mail header: too long, or with control characters."""
    if len(name) > MAX_CATEGORY_NAME:
        raise ContentError(Path(rel), line, f"category name too long ({len(name):,} characters; at most "
                                      f"{MAX_CATEGORY_NAME}): {shown(name)}")
    if name.isprintable():  # none of Cc, Zl, Zp or the bidi controls (Cf) is printable: the usual name, in C
        return
    for ch in name:
        if unicodedata.category(ch) in ("Cc", "Zl", "Zp") or ch in _BIDI_CONTROLS:
            raise ContentError(Path(rel), line, f"category name contains a control character (U+{ord(ch):04X}): {shown(name)}")


def load_front_matter(rel: PurePosixPath, text: str, first_line: int) -> Any:
    """The YAML front matter `text` (whose first line is file line `first_line`), loaded safely: no
    aliases (a few hundred bytes of them expand to gigabytes), no duplicate keys, no nesting past
    MAX_YAML_DEPTH, no dates Python cannot hold. ContentError names the file line."""
    import yaml  # here: a rebuild that parses no front-matter file never pays for importing it

    loader = _strict_loader(yaml)(text)
    try:
        return loader.get_single_data()
    except _Refused as e:
        raise ContentError(Path(rel), first_line + e.line, e.message) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e)
        raise ContentError(Path(rel), first_line + (mark.line if mark else 0), f"invalid YAML front matter: {problem[:200]}") from None
    finally:
        loader.dispose()


class _Refused(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line, self.message = line, message


_LOADERS: dict[int, type] = {}


def _strict_loader(yaml: Any) -> type:
    """A SafeLoader refusing what load_front_matter refuses (built once, on first use)."""
    if id(yaml) in _LOADERS:
        return _LOADERS[id(yaml)]

    class StrictLoader(yaml.SafeLoader):
        depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise _Refused(event.start_mark.line, f"YAML alias *{shown(event.anchor)[1:-1]} is not allowed "
                                                      "in front matter (write the value out)")
            self.depth += 1
            if self.depth > MAX_YAML_DEPTH:
                raise _Refused(self.peek_event().start_mark.line, f"front matter nested deeper than {MAX_YAML_DEPTH} levels")
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: dict[str, int] = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise _Refused(key_node.start_mark.line, "front matter keys must be plain names")
                key = str(key_node.value).lower()
                if key in seen:
                    raise _Refused(key_node.start_mark.line, f"duplicate key {shown(key_node.value)} in front matter "
                                                             f"(first on line {seen[key]})")
                seen[key] = key_node.start_mark.line
            return super().construct_mapping(node, deep)

    def guarded(construct: Callable[[Any, Any], Any], what: str) -> Callable[[Any, Any], Any]:
        def construct_checked(loader: Any, node: Any) -> Any:
            try:
                return construct(loader, node)
            except (ValueError, OverflowError) as e:
                raise _Refused(node.start_mark.line, f"impossible {what} {shown(node.value)}: {str(e)[:100]}") from None
        return construct_checked

    StrictLoader.add_constructor("tag:yaml.org,2002:timestamp",
                                 guarded(yaml.SafeLoader.construct_yaml_timestamp, "date"))
    StrictLoader.add_constructor("tag:yaml.org,2002:int", guarded(yaml.SafeLoader.construct_yaml_int, "number"))
    StrictLoader.add_constructor("tag:yaml.org,2002:float", guarded(yaml.SafeLoader.construct_yaml_float, "number"))
    _LOADERS[id(yaml)] = StrictLoader
    return StrictLoader
