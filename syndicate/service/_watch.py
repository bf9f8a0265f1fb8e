"""Watches the content folder (and the sources' snapshot) and rebuilds as soon as something changes.

watchfiles (imported here only) uses inotify where the OS has it and polls otherwise. Changes
are grouped: the rebuild starts once `step` ms pass with no further change (at most
`debounce` ms after the first), so saving ten files at once costs one rebuild. A change
that arrives during a rebuild is picked up by the next one. Every `syndicate run` process
watches, leader or standby, so each keeps the output folder it serves current.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import watchfiles

log = logging.getLogger(__name__)

STEP_MS = 10  # quiet time that ends a burst of changes (a save is a few events within microseconds)


class _Filter(watchfiles.DefaultFilter):
    """Editors' and our own temporary files are not changes to the content."""

    def __call__(self, change: watchfiles.Change, path: str) -> bool:
        name = path.rsplit("/", 1)[-1]
        if name.startswith(".") and name.endswith(".tmp"):
            return False
        return super().__call__(change, path)


class ContentWatcher:
    """Calls `rebuild(paths)` after changes under `folders` (`paths`: the files that changed), from a
    thread of its own, until stopped."""

    def __init__(self, folders: Sequence[Path], rebuild: Callable[[set[str]], object], *, debounce_ms: int = 50,
                 force_polling: bool | None = None) -> None:
        self.folders = tuple(folders)
        self.rebuild = rebuild
        self.debounce_ms = debounce_ms
        self.force_polling = force_polling
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ready = threading.Event()  # set once the watch is in place (tests wait for it)

    def start(self) -> None:
        for folder in self.folders:
            folder.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name="content-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        log.info("watching for changes folders=%s", ",".join(str(f) for f in self.folders))
        while not self._stop.is_set():
            try:
                self._watch()
            except Exception:  # a vanished folder, an inotify limit: log, wait, watch again
                log.exception("watching the content folder failed; retrying in 5 s")
                self._stop.wait(5)

    def _watch(self) -> None:
        changes = watchfiles.watch(
            *self.folders, watch_filter=_Filter(), debounce=max(self.debounce_ms, STEP_MS), step=min(STEP_MS, self.debounce_ms),
            stop_event=self._stop, rust_timeout=500, yield_on_timeout=True, raise_interrupt=False,
            force_polling=self.force_polling, poll_delay_ms=100,
        )
        for batch in changes:
            self.ready.set()
            if self._stop.is_set():
                return
            if not batch:
                continue
            started = time.perf_counter()
            try:
                self.rebuild({path for _change, path in batch})
            except Exception:  # the next change tries again; the service keeps serving
                log.exception("rebuild after a content change failed")
                continue
            log.info("rebuilt after a change files=%d seconds=%.3f", len(batch), time.perf_counter() - started)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
