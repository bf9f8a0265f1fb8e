"""What the pages and the API share: settings, the store, the signer, the clock, the categories,
and the background worker for manual sends and confirmation emails."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from syndicate.abuse import SignupLimits
from syndicate.config import Settings
from syndicate.content import Category, ContentSource, CorpusMemory
from syndicate.site import BuildSettings, SiteUrls
from syndicate.subscribers import AddressRules, Confirmations, LinkSigner, Notices, SubscriberStore

log = logging.getLogger(__name__)

CATEGORY_REFRESH = 60.0  # seconds between re-reads of the content's categories


@dataclass
class CategoryList:
    """The categories a subscriber may choose (the content's plus the config's), re-read at most once a minute."""

    source: ContentSource
    titles: Mapping[str, str | None]  # the configured categories' titles by slug
    memory: CorpusMemory | None = None
    _value: tuple[Category, ...] = ()
    _read_at: float = -1e9
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self) -> tuple[Category, ...]:
        with self._lock:
            if time.monotonic() - self._read_at > CATEGORY_REFRESH:
                corpus = self.source.read(memory=self.memory)
                found = {c.slug: c for c in corpus.categories}
                for slug, title in self.titles.items():
                    found.setdefault(slug, Category(slug, title or slug))
                self._value = tuple(sorted(found.values(), key=lambda c: c.name.lower()))
                self._read_at = time.monotonic()
            return self._value

    def slugs(self) -> set[str]:
        return {c.slug for c in self.get()}

    def named(self, slugs: tuple[str, ...]) -> tuple[Category, ...]:
        """The categories for `slugs`, with their display names (an unknown slug named by itself)."""
        by_slug = {c.slug: c for c in self.get()}
        return tuple(by_slug.get(slug, Category(slug, slug)) for slug in slugs)


class Runner:
    """Manual send runs worked in background threads, stopped together at shutdown."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self, name: str, work: Callable[[], Any]) -> None:
        def run() -> None:
            try:
                work()
            except Exception:  # a background run must log its failure; nobody else will see it
                log.exception("background %s failed", name)

        thread = threading.Thread(target=run, name=name, daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait for the work started so far to finish."""
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)

    def shutdown(self, timeout: float = 30.0) -> None:
        self.stop.set()
        self.wait_idle(timeout)


@dataclass(frozen=True)
class WebContext:
    settings: Settings
    store: SubscriberStore
    signer: LinkSigner
    urls: SiteUrls
    confirmations: Confirmations
    notices: Notices
    content: ContentSource
    build: BuildSettings  # what POST /api/build builds with
    categories: CategoryList
    clock: Callable[[], datetime]
    environ: Mapping[str, str]
    signup_limits: SignupLimits
    runner: Runner = field(default_factory=Runner)
    corpus_memory: CorpusMemory | None = None
    addresses: AddressRules = field(default_factory=AddressRules)  # what the mail backend can carry
