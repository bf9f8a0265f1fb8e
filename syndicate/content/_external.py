"""Articles that come from elsewhere (other sites' feeds): their published snapshot, and mixing them into a Corpus.

syndicate.sources keeps the items in the database and, after every fetch that changed
something, writes the Articles to publish into one JSON file under the var folder (atomically).
Every reader of the corpus (builds, digests, the web app, a `syndicate build` that never
opens the database) mixes that file's articles with the local ones through `mix_external`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING

from syndicate.content._model import Article, Category, article_ref
from syndicate.content._text import slugify
from syndicate.errors import Problem

if TYPE_CHECKING:
    from syndicate.content._reader import CategoryRule, Corpus

log = logging.getLogger(__name__)

SNAPSHOT_FORMAT = 1
MAX_SNAPSHOT_BYTES = 256 * 1024 * 1024  # far above 1,000 items x every source; never read unbounded


def snapshot_path(var_folder: Path) -> Path:
    return var_folder / "sources" / "articles.json"


def _as_json(article: Article) -> dict[str, object]:
    return {
        "id": article.id, "slug": article.slug, "title": article.title, "author": article.author,
        "published": article.published.isoformat(), "updated": article.updated.isoformat(),
        "categories": [[c.slug, c.name] for c in article.categories],
        "body_html": article.body_html, "summary": article.summary, "source": article.source,
        "content_hash": article.content_hash, "url": article.url,
        "source_name": article.source_name, "source_url": article.source_url,
    }


def _from_json(row: dict) -> Article:
    return Article(
        id=row["id"], slug=row["slug"], title=row["title"], author=row["author"],
        published=datetime.fromisoformat(row["published"]), updated=datetime.fromisoformat(row["updated"]),
        categories=tuple(Category(slug, name) for slug, name in row["categories"]),
        body_html=row["body_html"], summary=row["summary"], source=row["source"],
        content_hash=row["content_hash"], url=row["url"],
        source_name=row["source_name"], source_url=row["source_url"],
    )


def write_snapshot(path: Path, articles: Iterable[Article]) -> None:
    """Replace the snapshot with `articles`, atomically (a reader sees the old file or the new one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps({"format": SNAPSHOT_FORMAT, "articles": [_as_json(a) for a in articles]}, ensure_ascii=False)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        temporary.write_text(data, encoding="utf-8")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


class SnapshotReader:
    """Reads the snapshot when its file changed (same inode, size and mtime: the articles read last)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: tuple[Path, tuple[int, int, int], tuple[Article, ...], tuple[Problem, ...]] | None = None

    def read(self, path: Path) -> tuple[tuple[Article, ...], tuple[Problem, ...]]:
        """The articles of the snapshot (none if there is no file) and any problem reading it."""
        try:
            stat = path.stat()
        except FileNotFoundError:
            return (), ()
        identity = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        with self._lock:
            known = self._known
            if known is not None and known[0] == path and known[1] == identity:
                return known[2], known[3]
            articles, problems = _read(path, stat.st_size)
            self._known = (path, identity, articles, problems)
            return articles, problems


def _read(path: Path, size: int) -> tuple[tuple[Article, ...], tuple[Problem, ...]]:
    if size > MAX_SNAPSHOT_BYTES:
        return (), (Problem(path, 0, f"external articles snapshot is {size} bytes, over {MAX_SNAPSHOT_BYTES}; ignored"),)
    try:
        data = json.loads(path.read_bytes())
        if data.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {SNAPSHOT_FORMAT}")
        rows = data["articles"]
    except (OSError, ValueError, KeyError, AttributeError) as e:
        return (), (Problem(path, 0, f"cannot read external articles snapshot: {e}; run `syndicate sources fetch`"),)
    articles, problems = [], []
    for number, row in enumerate(rows, 1):
        try:
            articles.append(_from_json(row))
        except (KeyError, TypeError, ValueError) as e:  # one bad row never hides the others
            problems.append(Problem(path, number, f"external article {number}: {type(e).__name__}: {e}; skipped"))
    return tuple(articles), tuple(problems)


def read_snapshot(path: Path, reader: SnapshotReader | None = None) -> tuple[tuple[Article, ...], tuple[Problem, ...]]:
    """The snapshot's articles, through `reader` (a long-running process's, which re-reads only a
    changed file) or read now."""
    return (reader or SnapshotReader()).read(path)


def mix_external(corpus: Corpus, external: Sequence[Article], rules: Sequence[CategoryRule] = (),
                 problems: Sequence[Problem] = ()) -> Corpus:
    """`corpus` with `external` articles among its own, newest first. An external article's
    category takes the name the local corpus (or the config's title) gives its slug; an
    external article whose id or slug a local article already has is dropped (local wins)."""
    if not external and not problems:
        return corpus
    by_slug = {c.slug: c for c in corpus.categories}
    titles = {rule.slug: rule.title for rule in rules if rule.title}
    aliases = {slugify(alias): rule.slug for rule in rules for alias in rule.aliases}
    taken_ids = {r.id for r in corpus.refs}
    taken_slugs = {r.slug for r in corpus.refs}
    added: list[Article] = []
    warnings = list(corpus.warnings)
    for article in external:
        if article.id in taken_ids or article.slug in taken_slugs:
            warnings.append(Problem(Path(article.source), 0, f"external article {article.id!r} clashes with a local article; skipped"))
            continue
        taken_ids.add(article.id)
        taken_slugs.add(article.slug)
        shown = []
        for category in article.categories:
            slug = aliases.get(category.slug, category.slug)
            known = by_slug.get(slug)
            if known is None:
                known = by_slug[slug] = Category(slug, titles.get(slug, category.name))
            if known not in shown:
                shown.append(known)
        added.append(replace(article, categories=tuple(shown)))
    refs = sorted((*corpus.refs, *map(article_ref, added)), key=attrgetter("published", "id"), reverse=True)
    return replace(
        corpus,
        refs=tuple(refs),
        found=corpus.found.with_extra(added),
        categories=tuple(sorted(by_slug.values(), key=attrgetter("slug"))),
        problems=tuple(corpus.problems) + tuple(problems),
        warnings=tuple(warnings),
    )
