"""Orchestration shared by the entry points: settings in, stage results out."""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from pathlib import Path

from syndicate.config import Settings
from syndicate.content._article import ReaderOptions
from syndicate.content._external import mix_external, read_snapshot, snapshot_path
from syndicate.content._reader import CacheWriter, CategoryRule, Corpus, CorpusMemory, read_corpus


def reader_options(settings: Settings) -> ReaderOptions:
    return ReaderOptions(
        timezone=settings.site.timezone,
        default_author=settings.site.author,
        date_format=settings.content.date_format,
        summary_length=settings.content.summary_length,
    )


def category_rules(settings: Settings) -> tuple[CategoryRule, ...]:
    return tuple(
        CategoryRule(slug=slug, title=rule.title, description=rule.description, aliases=rule.aliases)
        for slug, rule in settings.categories.items()
    )


def load_corpus(settings: Settings, folder: Path | None = None, *, use_cache: bool = True,
                memory: CorpusMemory | None = None, writer: CacheWriter | None = None,
                changed: Collection[str] | None = None) -> Corpus:
    """Every article of the content folder (or `folder`), read incrementally through the cache
    (and through `memory`, a long-running process's CorpusMemory, if given; `writer` writes
    the cache while the caller goes on)."""
    rules = category_rules(settings)
    corpus = read_corpus(
        folder or settings.content.folder,
        reader_options(settings),
        rules=rules,
        cache=cache_for(settings, folder) if use_cache else None,
        memory=memory,
        writer=writer,
        changed=changed,
    )
    return with_external(corpus, settings, rules, memory)


def cache_for(settings: Settings, folder: Path | None) -> Path:
    """The article cache of `folder`: the configured cache for the configured folder, one beside it
    per other folder (named by a hash of its absolute path), so `build --content DIR` is incremental too."""
    configured = settings.content.folder
    if folder is None or Path(folder).resolve() == Path(configured).resolve():
        return settings.content.cache
    cache = settings.content.cache
    key = hashlib.blake2b(str(Path(folder).resolve()).encode("utf-8", "surrogatepass"), digest_size=6).hexdigest()
    return cache.with_name(f"{cache.stem}-{key}{cache.suffix}")


def with_external(corpus: Corpus, settings: Settings, rules: tuple[CategoryRule, ...],
                  memory: CorpusMemory | None = None) -> Corpus:
    """`corpus` with the articles of the configured external sources (syndicate.sources) mixed in."""
    if not settings.sources:
        return corpus
    external, problems = read_snapshot(snapshot_path(settings.var_folder), memory.external if memory else None)
    wanted = {f"sources/{name}" for name, source in settings.sources.items() if source.enabled}
    return mix_external(corpus, [a for a in external if a.source.rsplit("/", 1)[0] in wanted], rules, problems)
