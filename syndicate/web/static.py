"""Serves the built output folder: feed content types, strong ETags, Last-Modified, 304s and gzip.

A raw ASGI app (no framework per request), so feed polling costs little. Each file's ETag,
body and gzip body are cached by (path, size, mtime_ns): a request stats the file and,
when the stat is unchanged, never reads or hashes it again.
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
import os
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Longest suffix first: `.rss.xml` before `.xml`.
CONTENT_TYPES: tuple[tuple[str, str], ...] = (
    (".rss.xml", "application/rss+xml; charset=utf-8"),
    (".atom.xml", "application/atom+xml; charset=utf-8"),
    (".opml", "text/x-opml; charset=utf-8"),
    (".html", "text/html; charset=utf-8"),
    (".css", "text/css; charset=utf-8"),
    (".txt", "text/plain; charset=utf-8"),
    (".xml", "application/xml; charset=utf-8"),
)
JSON_FEED = "application/feed+json; charset=utf-8"
COMPRESSIBLE = ("text/", "application/rss+xml", "application/atom+xml", "application/feed+json",
                "application/json", "application/xml", "image/svg+xml")
CACHE_CONTROL = "public, max-age=300"
MIN_GZIP = 256  # bytes: below this gzip's header costs more than it saves
MAX_CACHED_FILE = 4 * 1024 * 1024
MAX_CACHED_BYTES = 128 * 1024 * 1024


def content_type(relative: str, feeds_folder: str) -> str:
    """The Content-Type for a path relative to the output folder."""
    name = relative.lower()
    for suffix, kind in CONTENT_TYPES:
        if name.endswith(suffix):
            return kind
    if name.endswith(".json"):
        return JSON_FEED if relative.startswith(f"{feeds_folder}/") else "application/json"
    guessed, _ = mimetypes.guess_type(name)
    return guessed or "application/octet-stream"


@dataclass(frozen=True)
class CachedFile:
    """One file's representation: its bytes, gzip bytes (None when not worth it) and validators."""

    body: bytes
    gzipped: bytes | None
    etag: str
    gzip_etag: str
    last_modified: str
    mtime: int
    content_type: str


def _load(path: Path, relative: str, feeds_folder: str, mtime_ns: int) -> CachedFile:
    body = path.read_bytes()
    digest = hashlib.blake2b(body, digest_size=16).hexdigest()
    kind = content_type(relative, feeds_folder)
    gzipped = None
    if len(body) >= MIN_GZIP and kind.startswith(COMPRESSIBLE):
        packed = gzip.compress(body, compresslevel=6, mtime=0)
        gzipped = packed if len(packed) < len(body) else None
    seconds = mtime_ns // 1_000_000_000
    return CachedFile(body, gzipped, f'"{digest}"', f'"{digest}-gz"', formatdate(seconds, usegmt=True), seconds, kind)


class FileCache:
    """CachedFile by (path, size, mtime_ns), least recently used dropped beyond a byte budget."""

    def __init__(self, max_bytes: int = MAX_CACHED_BYTES) -> None:
        self._entries: OrderedDict[tuple[str, int, int], CachedFile] = OrderedDict()
        self._bytes = 0
        self._max = max_bytes
        self._lock = threading.Lock()

    def get(self, path: Path, relative: str, feeds_folder: str, stat: os.stat_result) -> CachedFile:
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                return entry
        entry = _load(path, relative, feeds_folder, stat.st_mtime_ns)
        if stat.st_size <= MAX_CACHED_FILE:
            self._store(key, entry)
        return entry

    def _store(self, key: tuple[str, int, int], entry: CachedFile) -> None:
        size = len(entry.body) + len(entry.gzipped or b"")
        with self._lock:
            stale = [k for k in self._entries if k[0] == key[0]]  # older versions of the same file
            for k in stale:
                self._drop(k)
            self._entries[key] = entry
            self._bytes += size
            while self._bytes > self._max and len(self._entries) > 1:
                self._drop(next(iter(self._entries)))

    def _drop(self, key: tuple[str, int, int]) -> None:
        old = self._entries.pop(key)
        self._bytes -= len(old.body) + len(old.gzipped or b"")


def accepts_gzip(header: str) -> bool:
    """True when Accept-Encoding allows gzip (explicitly or by `*`) with a non-zero q."""
    allowed: dict[str, float] = {}
    for part in header.split(","):
        name, _, params = part.strip().partition(";")
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                q = 0.0
        allowed[name.strip().lower()] = q
    if "gzip" in allowed:
        return allowed["gzip"] > 0
    return allowed.get("*", 0.0) > 0


def _etag_matches(header: str, entry: CachedFile) -> bool:
    if header.strip() == "*":
        return True
    tags = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return entry.etag in tags or entry.gzip_etag in tags


def not_modified(headers: dict[str, str], entry: CachedFile) -> bool:
    """RFC 9110 13.2.2: If-None-Match decides when present; else If-Modified-Since."""
    if "if-none-match" in headers:
        return _etag_matches(headers["if-none-match"], entry)
    since = headers.get("if-modified-since")
    if since:
        try:
            return entry.mtime <= int(parsedate_to_datetime(since).timestamp())
        except (TypeError, ValueError, IndexError, OverflowError):
            return False
    return False


NOT_FOUND_PAGE = "404.html"  # written by the site build
REDIRECTS = "redirects.map"  # written by the site build: `/old/ /new/;` per line


class StaticSite:
    """ASGI app for GET and HEAD of files under `root`; `extra_headers` go on every response."""

    def __init__(self, root: Path, *, feeds_folder: str = "feeds", extra_headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        self.root = Path(root).resolve()
        self.feeds_folder = feeds_folder
        self.extra_headers = list(extra_headers)
        self.cache = FileCache()
        self._redirects: tuple[int, dict[str, str]] = (-1, {})

    def resolve(self, url_path: str) -> tuple[Path, str] | str | None:
        """(file, relative path) to serve; a str is a redirect target (a folder without its slash);
        None when nothing may be served. `..`, backslashes, NUL and escapes from the root are refused."""
        parts = url_path.split("/")
        if any(p in ("..", ".") or "\\" in p or "\0" in p for p in parts):
            return None
        relative = url_path.lstrip("/")
        try:
            candidate = (self.root / relative).resolve() if relative else self.root
            folder = candidate.is_dir()
        except OSError:  # a name longer than the file system holds: nothing of ours
            return None
        if candidate != self.root and not candidate.is_relative_to(self.root):
            return None
        if folder:
            if relative and not url_path.endswith("/"):
                # Rebuilt from the relative path: "//feeds" + "/" would be a link to the host "feeds".
                return "/" + relative + "/"
            candidate = candidate / "index.html"
            relative = f"{relative}index.html"
        if any(p.startswith(".") for p in relative.split("/")):
            return None  # dot files (.manifest, .tmp-*) are build state, not site
        return candidate, relative

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            await self._plain(send, 405, b"Method Not Allowed", [(b"allow", b"GET, HEAD")])
            return
        target = self.resolve(scope["path"])
        if isinstance(target, str):
            location = quote(target).encode("ascii")
            await self._plain(send, 301, b"Moved Permanently", [(b"location", location)])
            return
        try:
            if target is None:
                raise FileNotFoundError
            path, relative = target
            stat = path.stat()
            entry = self.cache.get(path, relative, self.feeds_folder, stat)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError, OSError):
            await self._not_found(send, method == "HEAD", scope["path"])
            return
        await self._send_file(scope, send, entry, method == "HEAD")

    async def _send_file(self, scope: Scope, send: Send, entry: CachedFile, head: bool) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        use_gzip = entry.gzipped is not None and accepts_gzip(headers.get("accept-encoding", ""))
        etag = entry.gzip_etag if use_gzip else entry.etag
        common = [
            (b"etag", etag.encode()),
            (b"last-modified", entry.last_modified.encode()),
            (b"cache-control", CACHE_CONTROL.encode()),
            (b"vary", b"Accept-Encoding"),
            *self.extra_headers,
        ]
        if not_modified(headers, entry):
            await send({"type": "http.response.start", "status": 304, "headers": common})
            await send({"type": "http.response.body", "body": b""})
            return
        body = entry.gzipped if use_gzip else entry.body
        assert body is not None
        response = [(b"content-type", entry.content_type.encode()), (b"content-length", str(len(body)).encode()), *common]
        if use_gzip:
            response.append((b"content-encoding", b"gzip"))
        await send({"type": "http.response.start", "status": 200, "headers": response})
        await send({"type": "http.response.body", "body": b"" if head else body})

    def moved_to(self, url_path: str) -> str | None:
        """Where an old URL moved, from the build's redirects.map (re-read when it changes)."""
        try:
            stat = (self.root / REDIRECTS).stat()
        except OSError:
            return None
        if self._redirects[0] != stat.st_mtime_ns:
            moves = {}
            try:
                for line in (self.root / REDIRECTS).read_text(encoding="utf-8").splitlines():
                    parts = line.rstrip(";").split()
                    if len(parts) == 2 and not line.startswith("#"):
                        moves[parts[0]] = parts[1]
            except (OSError, UnicodeDecodeError):
                return None
            self._redirects = (stat.st_mtime_ns, moves)
        moves = self._redirects[1]
        return moves.get(url_path) or (moves.get(url_path + "/") if not url_path.endswith("/") else None)

    async def _not_found(self, send: Send, head: bool, url_path: str = "") -> None:
        """A 301 when the path moved (redirects.map), else the built site's 404.html, else a plain "Not Found"."""
        moved = self.moved_to(url_path) if url_path else None
        if moved is not None:
            await self._plain(send, 301, b"Moved Permanently", [(b"location", quote(moved).encode("ascii"))])
            return
        try:
            body = (self.root / NOT_FOUND_PAGE).read_bytes()
        except OSError:
            await self._plain(send, 404, b"Not Found")
            return
        headers = [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(body)).encode()),
                   (b"cache-control", b"no-cache"), *self.extra_headers]
        await send({"type": "http.response.start", "status": 404, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if head else body})

    async def _plain(self, send: Send, status: int, text: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> None:
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(text)).encode()),
                   *(extra or []), *self.extra_headers]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": text})


class StaticFirst:
    """ASGI middleware: GET and HEAD outside the app's own path prefixes go straight to the
    static site, skipping the framework's routing (feed polling is most of the traffic)."""

    def __init__(self, app: ASGIApp, *, site: StaticSite, app_prefixes: tuple[str, ...]) -> None:
        self.app = app
        self.site = site
        self.app_prefixes = app_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] == "http" and scope["method"] in ("GET", "HEAD")
                and not scope["path"].startswith(self.app_prefixes)):
            await self.site(scope, receive, send)
            return
        await self.app(scope, receive, send)
