"""Where the articles come from: the content folder with its reading options, category rules and cache."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from syndicate.content._article import ReaderOptions
from syndicate.content._reader import CacheWriter, CategoryRule, Corpus, CorpusMemory, read_corpus


@dataclass(frozen=True)
class ContentSource:
    """The configured content folder, how its files are read, and the article cache kept for it."""

    folder: Path
    options: ReaderOptions
    rules: tuple[CategoryRule, ...] = ()
    cache: Path | None = None
    follow_external_links: bool = False  # publish symlinks to files outside the folder

    def read(self, folder: Path | None = None, *, use_cache: bool = True, memory: CorpusMemory | None = None,
             writer: CacheWriter | None = None) -> Corpus:
        """Every article of the content folder (or `folder`), read incrementally through the cache
        (and through `memory`, a long-running process's CorpusMemory, if given; `writer` writes
        the cache while the caller goes on)."""
        return read_corpus(
            folder or self.folder,
            self.options,
            rules=self.rules,
            cache=self.cache if use_cache and folder is None else None,
            memory=memory,
            writer=writer,
            follow_external_links=self.follow_external_links,
        )
