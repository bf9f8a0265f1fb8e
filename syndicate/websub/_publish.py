"""Pings WebSub hubs (`hub.mode=publish`) for the feeds a build changed, with retries, off the build's thread.

Every feed carries `<link rel="hub">` and `rel="self"` (syndicate.site._feeds); a hub that
is told a topic changed fetches it and pushes it to its subscribers. One POST per hub and
feed; a network error, a 429 or a 5xx is retried (0.5 s, 1 s, 2 s, ...); another 4xx is not.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import httpx

from syndicate import __version__

log = logging.getLogger(__name__)

FEED_ENDINGS = (".rss.xml", ".atom.xml", ".json")
USER_AGENT = f"syndicate/{__version__} (WebSub publisher)"


@dataclass(frozen=True)
class Announcement:
    """One feed announced to one hub: whether the hub accepted it, after how many attempts."""

    hub: str
    topic: str
    ok: bool
    attempts: int
    error: str | None = None


def changed_feed_urls(written: Iterable[str], *, base_url: str, feeds_folder: str) -> list[str]:
    """The public URLs of the feeds among `written` (paths relative to the output folder)."""
    prefix = f"{feeds_folder}/"
    return [f"{base_url}/{path}" for path in sorted(written) if path.startswith(prefix) and path.endswith(FEED_ENDINGS)]


def notify_hubs(hubs: Sequence[str], topics: Sequence[str], *, retries: int = 3, timeout: float = 10.0,
                sleep: Callable[[float], None] = time.sleep, stop: threading.Event | None = None) -> list[Announcement]:
    """Tell every hub about every topic; never raises for what the network or a hub does."""
    results = []
    with httpx.Client(timeout=timeout, headers={"User-Agent": USER_AGENT}, trust_env=False) as client:
        for hub in hubs:
            for topic in topics:
                results.append(_announce(client, hub, topic, retries, sleep, stop))
    return results


def _announce(client: httpx.Client, hub: str, topic: str, retries: int, sleep: Callable[[float], None],
              stop: threading.Event | None) -> Announcement:
    error = None
    for attempt in range(1, retries + 2):
        try:
            response = client.post(hub, data={"hub.mode": "publish", "hub.url": topic})
        except httpx.HTTPError as e:
            error = f"{type(e).__name__}: {e}"
        else:
            if 200 <= response.status_code < 300:
                log.info("websub announced hub=%s topic=%s attempts=%d", hub, topic, attempt)
                return Announcement(hub, topic, True, attempt)
            error = f"HTTP {response.status_code}"
            if response.status_code < 500 and response.status_code != 429:
                break  # the hub refuses this request: asking again changes nothing
        if attempt <= retries and not (stop is not None and stop.is_set()):
            sleep(0.5 * 2 ** (attempt - 1))
        else:
            break
    log.warning("websub announcement failed hub=%s topic=%s attempts=%d error=%s", hub, topic, attempt, error)
    return Announcement(hub, topic, False, attempt, error)


class HubNotifier:
    """Announces changed feeds from a thread of its own, so a build never waits for a hub.
    `announced` (if given) hears each batch's results (for tests and logs)."""

    def __init__(self, hubs: Sequence[str], *, retries: int, timeout: float,
                 announced: Callable[[list[Announcement]], None] | None = None) -> None:
        self.hubs = tuple(hubs)
        self.retries = retries
        self.timeout = timeout
        self.announced = announced
        self._queue: queue.Queue[tuple[str, ...] | None] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def submit(self, topics: Sequence[str]) -> None:
        if not self.hubs or not topics:
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="websub", daemon=True)
            self._thread.start()
        self._queue.put(tuple(topics))

    def _work(self) -> None:
        while True:
            topics = self._queue.get()
            if topics is None:
                return
            results = notify_hubs(self.hubs, topics, retries=self.retries, timeout=self.timeout, stop=self._stop)
            if self.announced is not None:
                self.announced(results)

    def close(self, timeout: float = 5.0) -> None:
        """Finish what was submitted (retries cut short), then stop."""
        if self._thread is not None:
            self._stop.set()
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None
