"""Reads every article under the content folder, incrementally, into a Corpus.

One bad article never stops the others: its problem is collected and it is skipped.
Unchanged files (same size and modification time, or same content hash) are not
parsed again: their Articles come from a cache under `var/`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
from collections.abc import Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from syndicate import __version__
from syndicate.articles import ReaderOptions, parse_article
from syndicate.errors import ContentError, Problem
from syndicate.models import Article, Category
from syndicate.text import slugify

log = logging.getLogger(__name__)

_CACHE_FORMAT = 1
_PARALLEL_FROM = 400  # files to parse before a process pool pays for itself


@dataclass(frozen=True)
class CategoryRule:
    """Config for one category: its slug, display title, description and alias names."""

    slug: str
    title: str | None = None
    description: str | None = None
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Corpus:
    """Every good article (newest first), the categories they use, and what went wrong."""

    articles: tuple[Article, ...]
    categories: tuple[Category, ...]
    problems: tuple[Problem, ...]
    warnings: tuple[Problem, ...]
    files: int
    parsed: int

    def in_category(self, slug: str) -> tuple[Article, ...]:
        return tuple(a for a in self.articles if slug in a.category_slugs)


@dataclass(frozen=True)
class _Entry:
    size: int
    mtime_ns: int
    digest: str
    result: Article | Problem


def _scan(folder: Path) -> list[tuple[PurePosixPath, os.stat_result]]:
    """Every `*.md` below `folder`, recursively, sorted by relative path; hidden folders skipped."""
    found: list[tuple[PurePosixPath, os.stat_result]] = []
    stack = [(folder, PurePosixPath())]
    while stack:
        directory, rel = stack.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    stack.append((Path(entry.path), rel / entry.name))
                elif entry.name.endswith(".md") and entry.is_file():
                    found.append((rel / entry.name, entry.stat()))
    found.sort(key=lambda item: str(item[0]))
    return found


def _parse_one(args: tuple[PurePosixPath, bytes, ReaderOptions]) -> Article | Problem:
    rel, raw, options = args
    try:
        return parse_article(rel, raw, options)
    except ContentError as e:
        return e.problem


def _parse_many(jobs: list[tuple[PurePosixPath, bytes, ReaderOptions]], workers: int | None) -> list[Article | Problem]:
    if workers == 1 or len(jobs) < _PARALLEL_FROM or (os.cpu_count() or 1) < 2:
        return [_parse_one(job) for job in jobs]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_parse_one, jobs, chunksize=64))


def _load_cache(path: Path | None, options: ReaderOptions) -> dict[PurePosixPath, _Entry]:
    if path is None:
        return {}
    try:
        with path.open("rb") as f:
            stamp, entries = pickle.load(f)
    except FileNotFoundError:
        return {}
    except Exception as e:  # a corrupt or foreign cache is only a slower read
        log.warning("article cache %s unreadable (%s); reading every article", path, e)
        return {}
    return entries if stamp == (_CACHE_FORMAT, __version__, options) else {}


def _save_cache(path: Path, options: ReaderOptions, entries: dict[PurePosixPath, _Entry]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with temporary.open("wb") as f:
        pickle.dump(((_CACHE_FORMAT, __version__, options), entries), f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(temporary, path)


def read_corpus(
    folder: Path,
    options: ReaderOptions,
    *,
    rules: Iterable[CategoryRule] = (),
    cache: Path | None = None,
    workers: int | None = None,
) -> Corpus:
    """Read every article under `folder`; see the module docstring."""
    folder = Path(folder)
    if not folder.is_dir():
        problem = Problem(folder, 0, "content folder not found")
        return Corpus((), (), (problem,), (), 0, 0)
    cached = _load_cache(cache, options)
    entries: dict[PurePosixPath, _Entry] = {}
    jobs: list[tuple[PurePosixPath, bytes, ReaderOptions]] = []
    pending: list[tuple[PurePosixPath, os.stat_result, str]] = []
    for rel, stat in _scan(folder):
        old = cached.get(rel)
        if old is not None and old.size == stat.st_size and old.mtime_ns == stat.st_mtime_ns:
            entries[rel] = old
            continue
        try:
            raw = (folder / rel).read_bytes()
        except OSError as e:
            entries[rel] = _Entry(stat.st_size, stat.st_mtime_ns, "", Problem(rel, 0, f"cannot read: {e.strerror}"))
            continue
        digest = hashlib.sha256(raw).hexdigest()
        if old is not None and old.digest == digest:
            entries[rel] = replace(old, size=stat.st_size, mtime_ns=stat.st_mtime_ns)
            continue
        jobs.append((rel, raw, options))
        pending.append((rel, stat, digest))
    for (rel, stat, digest), result in zip(pending, _parse_many(jobs, workers)):
        entries[rel] = _Entry(stat.st_size, stat.st_mtime_ns, digest, result)
    if cache is not None and (jobs or entries.keys() != cached.keys() or any(entries[k] is not cached.get(k) for k in entries)):
        try:
            _save_cache(cache, options, entries)
        except OSError as e:
            log.warning("cannot write article cache %s: %s", cache, e)
    corpus = _assemble(folder, entries, tuple(rules))
    log.info("read %d articles from %d files (%d parsed, %d problems)", len(corpus.articles), corpus.files, len(jobs), len(corpus.problems))
    return replace(corpus, parsed=len(jobs))


def _assemble(folder: Path, entries: Mapping[PurePosixPath, _Entry], rules: tuple[CategoryRule, ...]) -> Corpus:
    """Drop duplicate ids, unify categories by slug, apply the config's titles and aliases."""
    problems: list[Problem] = []
    warnings: list[Problem] = []
    articles: list[Article] = []
    for rel, entry in entries.items():
        if isinstance(entry.result, Problem):
            problems.append(replace(entry.result, path=folder / entry.result.path))
        else:
            articles.append(entry.result)
    first_by: dict[tuple[str, str], Article] = {}
    unique: list[Article] = []
    for article in articles:  # already in path order
        clash = first_by.get(("id", article.id)) or first_by.get(("slug", article.slug))
        if clash is not None:
            what = "id" if clash.id == article.id else "slug"
            value = article.id if what == "id" else article.slug
            problems.append(Problem(folder / article.source, 1, f"duplicate article {what} {value!r} (also in {folder / clash.source}); skipped"))
            problems.append(Problem(folder / clash.source, 1, f"duplicate article {what} {value!r} (also in {folder / article.source})"))
            continue
        first_by[("id", article.id)] = article
        first_by[("slug", article.slug)] = article
        unique.append(article)

    alias_to_slug = {slugify(alias): rule.slug for rule in rules for alias in rule.aliases}
    titles = {rule.slug: rule.title for rule in rules if rule.title}
    names: dict[str, Category] = {}
    resolved: list[Article] = []
    for article in unique:
        categories: list[Category] = []
        for category in article.categories:
            slug = alias_to_slug.get(category.slug, category.slug)
            known = names.get(slug)
            if known is None:
                known = names[slug] = Category(slug, titles.get(slug, category.name))
            elif known.name != category.name and slug not in titles and category.slug == slug:
                warnings.append(Problem(folder / article.source, 1, f"category {category.name!r} has the same slug as {known.name!r}; using {known.name!r}"))
            if known not in categories:
                categories.append(known)
        resolved.append(replace(article, categories=tuple(categories)) if tuple(categories) != article.categories else article)
    resolved.sort(key=lambda a: (a.published, a.id), reverse=True)
    problems.sort(key=lambda p: (str(p.path), p.line))
    return Corpus(
        articles=tuple(resolved),
        categories=tuple(sorted(names.values(), key=lambda c: c.slug)),
        problems=tuple(problems),
        warnings=tuple(warnings),
        files=len(entries),
        parsed=0,
    )
