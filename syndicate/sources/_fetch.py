"""Fetches one remote feed over HTTP (httpx, imported here only): conditional, bounded, polite.

Bounded: connect/read timeouts and an overall deadline, at most `max_redirects` redirects,
at most `max_bytes` read (the body is streamed and cut off). Polite: a descriptive
User-Agent, ETag/Last-Modified sent back (a 304 costs nothing), `Retry-After` read, and one
request at a time per host (HostGate).
"""

from __future__ import annotations

import email.utils
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import httpx

from syndicate import __version__

log = logging.getLogger(__name__)

USER_AGENT = f"syndicate/{__version__} (feed-to-newsletter; +https://github.com/syndicate)"
ACCEPT = "application/atom+xml, application/rss+xml, application/feed+json, application/json;q=0.9, application/xml;q=0.8, text/xml;q=0.8, */*;q=0.5"


@dataclass(frozen=True)
class FetchPolicy:
    """The limits of one fetch (tests shrink them)."""

    connect_timeout: float = 10.0
    read_timeout: float = 20.0
    deadline: float = 60.0  # the whole fetch, body included (a server dripping one byte a second)
    max_bytes: int = 10 * 1024 * 1024
    max_redirects: int = 5
    user_agent: str = USER_AGENT


DEFAULT_POLICY = FetchPolicy()


@dataclass(frozen=True)
class Fetched:
    """What one fetch got: a body (status 200), nothing new (304), or an error (`error` set)."""

    url: str  # where it ended after redirects
    status: int | None  # the HTTP status, None when no answer came
    body: bytes = b""
    content_type: str = ""
    etag: str | None = None
    last_modified: str | None = None
    retry_after: datetime | None = None
    error: str | None = None

    @property
    def not_modified(self) -> bool:
        return self.status == 304 and self.error is None


class HostGate:
    """At most one request at a time per host, across every thread that shares this gate."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hosts: dict[str, threading.Lock] = {}

    @contextmanager
    def hold(self, url: str) -> Iterator[None]:
        host = (urlsplit(url).hostname or "").lower()
        with self._lock:
            lock = self._hosts.setdefault(host, threading.Lock())
        with lock:
            yield


def parse_retry_after(value: str | None, now: datetime) -> datetime | None:
    """`Retry-After` as an instant: delta-seconds or an HTTP date; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return now + timedelta(seconds=min(int(value), 7 * 24 * 3600))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(when, now)


def fetch_feed(url: str, *, etag: str | None, last_modified: str | None, now: datetime,
               policy: FetchPolicy = DEFAULT_POLICY, gate: HostGate | None = None) -> Fetched:
    """GET `url` within `policy`; never raises for what the network or the server does."""
    headers = {"User-Agent": policy.user_agent, "Accept": ACCEPT, "Accept-Encoding": "gzip, deflate"}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    timeout = httpx.Timeout(policy.read_timeout, connect=policy.connect_timeout)
    gate = gate or HostGate()
    with gate.hold(url), httpx.Client(timeout=timeout, follow_redirects=True, max_redirects=policy.max_redirects,
                                      headers=headers, trust_env=False) as client:
        try:
            return _get(client, url, now, policy)
        except httpx.TooManyRedirects:
            return Fetched(url, None, error=f"more than {policy.max_redirects} redirects (a redirect loop?)")
        except httpx.TimeoutException as e:
            return Fetched(url, None, error=f"timed out ({type(e).__name__})")
        except httpx.UnsupportedProtocol as e:
            return Fetched(url, None, error=f"unsupported URL: {e}")
        except httpx.HTTPError as e:
            return Fetched(url, None, error=f"{type(e).__name__}: {e}")


def _get(client: httpx.Client, url: str, now: datetime, policy: FetchPolicy) -> Fetched:
    started = time.monotonic()
    with client.stream("GET", url) as response:
        final = str(response.url)
        retry_after = parse_retry_after(response.headers.get("Retry-After"), now)
        if response.status_code == 304:
            return Fetched(final, 304, etag=response.headers.get("ETag"),
                           last_modified=response.headers.get("Last-Modified"), retry_after=retry_after)
        if response.status_code != 200:
            return Fetched(final, response.status_code, retry_after=retry_after,
                           error=f"HTTP {response.status_code} {response.reason_phrase}".rstrip())
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > policy.max_bytes:
            return Fetched(final, 200, error=f"response of {declared} bytes refused (over {policy.max_bytes})")
        chunks, size = [], 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > policy.max_bytes:
                return Fetched(final, 200, error=f"response cut off after {policy.max_bytes} bytes (too large)")
            if time.monotonic() - started > policy.deadline:
                return Fetched(final, 200, error=f"response not complete after {policy.deadline:g} s; cut off")
            chunks.append(chunk)
        return Fetched(final, 200, b"".join(chunks), response.headers.get("Content-Type", ""),
                       response.headers.get("ETag"), response.headers.get("Last-Modified"), retry_after)
