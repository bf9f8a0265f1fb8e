"""Where the articles come from: the content folder with its reading options, category rules and cache,
and the other sites' articles mixed in (syndicate.content._external)."""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from syndicate.content._article import ReaderOptions
from syndicate.content._external import mix_external, read_snapshot
from syndicate.content._reader import CacheWriter, CategoryRule, Corpus, CorpusMemory, read_corpus


@dataclass(frozen=True)
class ContentSource:
    """The configured content folder, how its files are read, and the article cache kept for it.

    `external`: the snapshot of other sites' articles to mix in (None: none), of which only those
    of the `sources` named are published (the enabled ones)."""

    folder: Path
    options: ReaderOptions
    rules: tuple[CategoryRule, ...] = ()
    cache: Path | None = None
    follow_external_links: bool = False  # publish symlinks to files outside the folder
    external: Path | None = None
    sources: frozenset[str] = frozenset()

    def read(self, folder: Path | None = None, *, use_cache: bool = True, memory: CorpusMemory | None = None,
             writer: CacheWriter | None = None, changed: Collection[str] | None = None,
             every: bool = False) -> Corpus:
        """Every article of the content folder (or `folder`), read incrementally through the cache
        (and through `memory`, a long-running process's CorpusMemory, if given; `writer` writes
        the cache while the caller goes on; `changed` and `every`: see read_corpus), with the
        external sources' articles among them."""
        corpus = read_corpus(
            folder or self.folder,
            self.options,
            rules=self.rules,
            cache=self.cache_for(folder) if use_cache else None,
            memory=memory,
            writer=writer,
            follow_external_links=self.follow_external_links,
            changed=changed,
            every=every,
        )
        return self.with_external(corpus, memory)

    def cache_for(self, folder: Path | None) -> Path | None:
        """The article cache of `folder`: the configured one for the configured folder, one beside
        it per other folder (named by a hash of its absolute path), so `build --content DIR` is
        incremental too."""
        if self.cache is None or folder is None or Path(folder).resolve() == Path(self.folder).resolve():
            return self.cache
        key = hashlib.blake2b(str(Path(folder).resolve()).encode("utf-8", "surrogatepass"), digest_size=6).hexdigest()
        return self.cache.with_name(f"{self.cache.stem}-{key}{self.cache.suffix}")

    def with_external(self, corpus: Corpus, memory: CorpusMemory | None = None) -> Corpus:
        """`corpus` with the published articles of the enabled external sources (syndicate.sources) mixed in."""
        if self.external is None:
            return corpus
        articles, problems = read_snapshot(self.external, memory.external if memory else None)
        wanted = [a for a in articles if a.source.rsplit("/", 1)[0].removeprefix("sources/") in self.sources]
        return mix_external(corpus, wanted, self.rules, problems)
