"""Reads every article under the content folder, incrementally, into a Corpus.

One bad article never stops the others: its problem is collected and it is skipped.
Unchanged files (same size and modification time, or same content hash) are not
parsed again: their Articles come from a cache under `var/`, each unpickled when first used (a
rebuild with nothing or little to render never makes the other 10,000: see Corpus).
"""

from __future__ import annotations

import bisect
import dataclasses
import errno
import functools
import hashlib
import logging
import os
import pickle
import struct
import threading
import weakref
import zlib
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from operator import attrgetter, itemgetter
from pathlib import Path, PurePosixPath
from stat import S_ISDIR, S_ISREG
from typing import NamedTuple

from syndicate import __version__
from syndicate.content._article import ReaderOptions, parse_article
from syndicate.content._checks import MAX_ARTICLE_BYTES
from syndicate.content._external import SnapshotReader
from syndicate.content._model import Article, ArticleRef, Category, article_ref
from syndicate.content._parallel import Forked, WorkerDied, can_fork, run_parallel
from syndicate.content._text import slugify
from syndicate.errors import ContentError, Problem

log = logging.getLogger(__name__)

_CACHE_FORMAT = 11
# A cache file: this line, then the index's CRC-32 and length and the articles region's length, the
# index (a pickle: the stamp, each file's entry, the assembled corpus), then the articles region
# (each stored article pickled on its own: see _Blob).
_CACHE_MAGIC = b"syndicate article cache\n"
_CACHE_HEADER = struct.Struct("<IQQ")
_CACHE_HEAD = len(_CACHE_MAGIC) + _CACHE_HEADER.size
_PARALLEL_FROM = 400  # files to parse before a process pool pays for itself


@dataclass(frozen=True)
class CategoryRule:
    """Config for one category: its slug, display title, description and alias names."""

    slug: str
    title: str | None = None
    description: str | None = None
    aliases: tuple[str, ...] = ()


class _Blob(NamedTuple):
    """Where an article stored in a snapshot lies in its articles region, and the CRC-32 of its bytes."""

    offset: int
    length: int
    crc: int


class _Pickled(NamedTuple):
    """An article as a parse worker hands it back when a snapshot is to be written and the caller does
    not make every Article (a read with `every` gets the Articles themselves): its fields pickled
    as the snapshot stores them (`length` bytes at `offset` of `batch`, the worker's batch of pickled
    articles), their CRC-32, and its ArticleRef. The reader keeps the batches as a region of its
    _Blobs and assembles the corpus from the refs: the Articles are made when asked for (a cold
    build without pages makes only its feeds' few), and the snapshot's writer writes the batches as they
    are instead of pickling every article again."""

    batch: bytes
    offset: int
    length: int
    crc: int
    ref: ArticleRef


class _Entry(NamedTuple):
    """What the cache knows of one file: its size, mtime and hash, and the result of parsing it
    (a _Blob: the Article, stored in the snapshot or pickled by a parse worker, not unpickled yet)."""

    size: int
    mtime_ns: int
    digest: str
    result: Article | Problem | _Blob


class _Blobs:
    """A snapshot's articles region, in its file kept open, and the batches of articles the parse
    workers pickled since (see _Pickled), each a region of its own after it. Each article is read
    (pread, from the snapshot) and unpickled when first asked for, once, after its bytes are checked
    against the CRC-32 recorded with them; damaged bytes make it read from its file again.

    Read, not mapped: the pages of a mapping stay in the process's memory (and in that of every
    process forked from it) for as long as it lives, 13 MB for 2,000 articles once each was made;
    a read leaves them in the page cache only."""

    def __init__(self, fd: int | None, base: int, size: int, folder: Path, options: ReaderOptions) -> None:
        self._fd, self._base, self._folder, self._options = fd, base, folder, options
        self._closer = weakref.finalize(self, os.close, fd) if fd is not None else None
        self._size = size  # the snapshot region's; the batches' offsets follow it
        self._starts: list[int] = []  # where each batch starts
        self._batches: list[bytes] = []
        self._made: dict[int, Article] = {}
        self._categories: dict[Category, Category] = {}  # one object per category, as _share_categories gives

    def shared(self, categories: tuple[Category, ...]) -> tuple[Category, ...]:
        """`categories` as the objects the articles made here have (an equal one for an equal one)."""
        return tuple([self._categories.setdefault(c, c) for c in categories])

    def add(self, batch: bytes) -> int:
        """Make `batch` a region after the others; returns where it starts."""
        start = self._starts[-1] + len(self._batches[-1]) if self._batches else self._size
        self._starts.append(start)
        self._batches.append(batch)
        return start

    def raw(self, blob: _Blob) -> bytes | memoryview:
        if blob.offset < self._size:
            assert self._fd is not None
            return os.pread(self._fd, blob.length, self._base + blob.offset)
        index = bisect.bisect_right(self._starts, blob.offset) - 1
        start = blob.offset - self._starts[index]
        return memoryview(self._batches[index])[start:start + blob.length]

    def article(self, rel: str, blob: _Blob) -> Article:
        made = self._made.get(blob.offset)
        if made is None:
            made = self._made[blob.offset] = self._load(rel, blob)
        return made

    def _load(self, rel: str, blob: _Blob) -> Article:
        data = self.raw(blob)
        if len(data) == blob.length and zlib.crc32(data) == blob.crc:
            values = pickle.loads(data)
            if type(values) is tuple and len(values) == len(_ARTICLE_FIELDS):
                # The value that was stored, as it was made and validated (see _Cache): not through
                # the constructor, which would check it again.
                article = object.__new__(Article)
                fields = article.__dict__
                fields.update(zip(_ARTICLE_FIELDS, values))
                fields["categories"] = self.shared(fields["categories"])
                return article
        log.warning("article cache: %s is damaged in it; reading the file again", rel)
        _, result = _parse_one((rel, f"{self._folder}/{rel}", "", self._options))
        if type(result) is not Article:
            raise ContentError(Path(rel), 0, "the article cache is damaged and the file no longer reads as an article; build again")
        return result


def _made(rel: str, result: Article | _Blob, blobs: _Blobs | None) -> Article:
    """The Article of an entry's result (unpickled from the snapshot if it is stored there)."""
    if type(result) is Article:
        return result
    assert blobs is not None and type(result) is _Blob, (rel, type(result))
    return blobs.article(rel, result)


class _Found:
    """Where a corpus's Articles come from: each file's entry (a parsed Article, or where the
    snapshot stores it) and the articles mixed in from elsewhere; each is made once, with its
    categories as the corpus shows them."""

    def __init__(self, entries: Mapping[str, _Entry] | None = None, blobs: _Blobs | None = None,
                 extra: Mapping[str, Article] | None = None) -> None:
        self._entries, self._blobs, self._extra = entries or {}, blobs, extra or {}
        self._shown: dict[str, Article] = {}
        self._every: tuple[tuple[ArticleRef, ...], tuple[Article, ...]] | None = None

    def every(self, refs: tuple[ArticleRef, ...]) -> tuple[Article, ...]:
        """The Articles of `refs` (every article of a corpus), the same tuple each time it is asked
        for the same refs (so by every Corpus that differs only in its counts)."""
        every = self._every
        if every is None or every[0] is not refs:
            every = self._every = (refs, tuple([self.article(ref) for ref in refs]))
        return every[1]

    def article(self, ref: ArticleRef) -> Article:
        shown = self._shown.get(ref.source)
        if shown is None:
            shown = self._extra.get(ref.source)
            if shown is None:
                shown = _made(ref.source, self._entries[ref.source].result, self._blobs)  # type: ignore[arg-type]
            if shown.categories != ref.categories:  # as assembly resolved them (aliases, one name per slug)
                shown = replace(shown, categories=ref.categories)
            self._shown[ref.source] = shown
        return shown

    def with_extra(self, articles: Iterable[Article]) -> _Found:
        """These, and `articles` from elsewhere (the external sources)."""
        found = _Found(self._entries, self._blobs, {**self._extra, **{a.source: a for a in articles}})
        found._shown.update(self._shown)
        return found


@dataclass(frozen=True)
class Corpus:
    """Every good article (newest first), the categories they use, and what went wrong.

    `refs` tell every article, newest first, without its text; the Articles are made when first
    asked for (`articles`, `articles_of`, `in_category`): read from the article cache, a rebuild
    that renders nothing, or a few feeds and pages, never unpickles the text of the 10,000 others.
    Each Article is validated when it is made from its file (`Article.__post_init__`); one
    restored from the cache is that value again (see _Cache)."""

    refs: tuple[ArticleRef, ...]
    categories: tuple[Category, ...]
    problems: tuple[Problem, ...]
    warnings: tuple[Problem, ...]
    files: int
    parsed: int
    found: _Found = field(default_factory=_Found, repr=False, compare=False)

    @property
    def articles(self) -> tuple[Article, ...]:
        """Every good article, newest first."""
        return self.found.every(self.refs)

    def article(self, ref: ArticleRef) -> Article:
        return self.found.article(ref)

    def articles_of(self, refs: Iterable[ArticleRef]) -> tuple[Article, ...]:
        article = self.found.article
        return tuple([article(ref) for ref in refs])

    def in_category(self, slug: str) -> tuple[Article, ...]:
        return self.articles_of(r for r in self.refs if slug in r.category_slugs)


def _scan(folder: Path, follow_external_links: bool = False) -> tuple[list[tuple[str, os.stat_result]], list[Problem]]:
    """Every `*.md` below `folder`, recursively, as (relative posix path, stat), sorted by path, and
    the problems met on the way (see _entry_problem). Hidden files and folders are skipped."""
    found: list[tuple[str, os.stat_result]] = []
    problems: list[Problem] = []
    root = os.path.realpath(folder)
    seen_folders = {_identity(os.stat(folder))}
    stack = [(str(folder), "")]
    while stack:
        directory, prefix = stack.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith("."):
                    continue
                rel = prefix + name
                if entry.is_symlink() or not (entry.is_dir(follow_symlinks=False) or entry.is_file(follow_symlinks=False)):
                    problem, stat = _entry_problem(entry, rel, root, follow_external_links)
                    if problem is not None:
                        problems.append(problem)
                        continue
                    if stat is None:
                        continue
                    if S_ISDIR(stat.st_mode):
                        if _identity(stat) in seen_folders:
                            problems.append(Problem(Path(rel), 0, "symlink to a folder already read (a loop, or a second "
                                                                  "way to the same folder); skipped"))
                        else:
                            seen_folders.add(_identity(stat))
                            stack.append((entry.path, f"{rel}/"))
                    elif name.endswith(".md"):
                        found.append((rel, stat))
                elif entry.is_dir(follow_symlinks=False):
                    seen_folders.add(_identity(entry.stat(follow_symlinks=False)))
                    stack.append((entry.path, f"{rel}/"))
                elif name.endswith(".md"):
                    found.append((rel, entry.stat()))
    found.sort()
    return found, problems


def _identity(stat: os.stat_result) -> tuple[int, int]:
    return stat.st_dev, stat.st_ino


def _entry_problem(entry: os.DirEntry[str], rel: str, root: str, follow_external_links: bool
                   ) -> tuple[Problem | None, os.stat_result | None]:
    """(problem, None) for a symlink that loops, dangles or leaves the content folder (unless
    `follow_external_links`), or a special file (FIFO, socket, device: reading one could block
    forever); (None, stat of the target) for a good symlink; (None, None) for a file to ignore."""
    try:
        stat = entry.stat(follow_symlinks=True)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return Problem(Path(rel), 0, "symlink loop; skipped"), None
        if e.errno == errno.ENOENT:
            target = os.readlink(entry.path) if entry.is_symlink() else "?"
            return Problem(Path(rel), 0, f"dangling symlink (points to {target[:200]!r}, which does not exist); skipped"), None
        return Problem(Path(rel), 0, f"cannot read: {e.strerror}"), None
    if not (S_ISDIR(stat.st_mode) or S_ISREG(stat.st_mode)):
        return Problem(Path(rel), 0, "not a regular file (a FIFO, socket or device); skipped"), None
    if entry.is_symlink() and not follow_external_links:
        target = os.path.realpath(entry.path)
        if target != root and not target.startswith(root.rstrip(os.sep) + os.sep):
            return Problem(Path(rel), 0, "symlink to outside the content folder; skipped "
                                         "(set [content] follow_external_links = true to publish it)"), None
    if S_ISREG(stat.st_mode) and not rel.endswith(".md"):
        return None, None
    return None, stat


def _scan_changed(folder: Path, cached: Mapping[str, _Entry], changed: Collection[str]) -> list[tuple[str, os.stat_result | None]] | None:
    """What `_scan` would find when only `changed` files can differ from `cached`: the cached
    paths with no stat (unchanged), the changed ones stat-ed (gone ones left out), by path;
    None when a changed path is not a plain article file (a folder: scan everything)."""
    found: dict[str, os.stat_result | None] = dict.fromkeys(cached)
    added = False
    base = str(folder)
    for rel in changed:
        if not rel.endswith(".md") or any(part.startswith(".") for part in rel.split("/")):
            return None
        try:
            stat = os.stat(f"{base}/{rel}")
        except FileNotFoundError:
            found.pop(rel, None)
            continue
        except OSError:
            return None
        if not S_ISREG(stat.st_mode):
            return None
        added = added or rel not in found
        found[rel] = stat
    return sorted(found.items(), key=itemgetter(0)) if added else list(found.items())


# One file to read: (relative path, absolute path, the content hash the cache knows or "", options).
_Job = tuple[str, str, str, "ReaderOptions"]
# What reading it gave: (content hash, the Article or Problem; None when the hash is the known one).
_Parsed = tuple[str, "Article | Problem | _Pickled | None"]


def _parse_one(job: _Job) -> _Parsed:
    """Read, hash and parse one file (in a worker process for a large read)."""
    rel, path, known, options = job
    try:
        raw = _read_file(path)
    except OSError as e:
        return "", Problem(Path(rel), 0, f"cannot read: {e.strerror}")
    digest = hashlib.sha256(raw).hexdigest()
    if digest == known:  # touched, not changed
        return digest, None
    try:
        return digest, parse_article(PurePosixPath(rel), raw, options)
    except ContentError as e:
        return digest, e.problem


def _read_file(path: str) -> bytes:
    """The bytes of `path`, by plain system calls (a file object costs as much as the read)."""
    # Non-blocking: a file swapped for a FIFO after the scan must not hang the read.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        _check_regular(fd)
        chunks, size = [], 0
        while size <= MAX_ARTICLE_BYTES and (chunk := os.read(fd, 1 << 20)):  # bounded: parse_article refuses more
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def _check_regular(fd: int) -> None:
    if not S_ISREG(os.fstat(fd).st_mode):
        raise OSError(errno.EINVAL, "not a regular file")


def _parse_many(jobs: list[_Job], workers: int | None, pickled: bool = False) -> list[_Parsed]:
    """Every job's result, in worker processes for a large read. `pickled`: those processes hand each
    Article back as a _Pickled (see there)."""
    if len(jobs) < _PARALLEL_FROM:
        return _parse_all(jobs)
    return run_parallel(_parse_pickled if pickled else _parse_all, jobs, workers or os.cpu_count() or 1)


def _parse_all(jobs: Sequence[_Job]) -> list[_Parsed]:
    return [_parse_one(job) for job in jobs]


def _parse_pickled(jobs: Sequence[_Job]) -> list[_Parsed]:
    """_parse_all, each Article pickled as the snapshot stores it, into one batch for these jobs."""
    parsed = _parse_all(jobs)
    pieces = [pickle.dumps(_article_values(result), protocol=pickle.HIGHEST_PROTOCOL) if type(result) is Article else b""
              for _, result in parsed]
    batch = b"".join(pieces)
    offset = 0
    for index, data in enumerate(pieces):
        if data:
            digest, article = parsed[index]
            parsed[index] = (digest, _Pickled(batch, offset, len(data), zlib.crc32(data), article_ref(article)))  # type: ignore[arg-type]
            offset += len(data)
    return parsed


def _parser_fingerprint() -> str:
    """The code that turns a file into an Article: a changed parser (even unreleased) re-reads everything."""
    from syndicate.content import _article, _checks, _markdown, _model, _text

    digest = hashlib.sha256()
    for module in (_article, _checks, _markdown, _model, _text):
        digest.update(Path(str(module.__file__)).read_bytes())
    return digest.hexdigest()


class _Cache:
    """Parsed articles by relative path, in a snapshot file plus a small journal of later changes.

    A warm read with a few edits writes only the journal; the snapshot is rewritten when
    the journal grows past a tenth of it.

    The articles are stored as they were made, validated: only Articles that passed their
    constructor's checks (`Article.__post_init__`) are ever written, by this very version of the
    parser and of the model (the stamp holds their code's fingerprint), and an Article is
    restored as pickle restores any object, as the bytes it was (not through its constructor,
    which would check the same values again). So the cache trusts its files only when they are
    what it wrote: the index carries its CRC-32 and the snapshot's articles each their own, and
    one whose bytes changed since (a damaged disk, a partial copy) is refused: every article is
    read again (a damaged article alone, from its file). (A check against accidents: whoever may
    write under var/ may run code anyway, as loading any pickle does.)

    The snapshot stores each article apart, in a region read an article at a time: a read takes the
    index (every file's entry, and the corpus as assembled, without the articles' text) and reads
    and unpickles an article only when the corpus is asked for it (see Corpus, _Blobs).
    """

    def __init__(self, path: Path, options: ReaderOptions) -> None:
        self.path = path
        self.journal_path = path.with_name(path.name + ".journal")
        self.options = options
        self.stamp = (_CACHE_FORMAT, __version__, _parser_fingerprint(), options)

    def _read(self, path: Path, folder: Path) -> tuple[dict, _Assembled | None, _Blobs | None]:
        """(rows, the assembled corpus, the articles region) of a cache file; ({}, None, None) for one
        of another format or version; ValueError for one damaged."""
        with path.open("rb", buffering=0) as f:
            head = f.read(_CACHE_HEAD)
            if not head.startswith(_CACHE_MAGIC) or len(head) < _CACHE_HEAD:  # a cache of format 9 or before
                return {}, None, None
            crc, length, region = _CACHE_HEADER.unpack_from(head, len(_CACHE_MAGIC))
            if os.fstat(f.fileno()).st_size != _CACHE_HEAD + length + region:
                raise ValueError("it is not as long as written (truncated?)")
            index = f.read(length)
            if len(index) != length or zlib.crc32(index) != crc:
                raise ValueError("its bytes are not those written (checksum mismatch)")
            data = pickle.loads(index)
            del index
            if not (isinstance(data, tuple) and len(data) == 3 and data[0] == self.stamp):  # another format or version
                return {}, None, None
            _, rows, assembled = data
            if not region:
                return rows, assembled, None
            return rows, assembled, _Blobs(os.dup(f.fileno()), _CACHE_HEAD + length, region, folder, self.options)

    def load(self, folder: Path) -> tuple[dict[str, _Entry], dict[str, _Entry | None], _Assembled | None, _Blobs | None]:
        """(entries, journal rows, the snapshot's assembled corpus, its articles region) from disk;
        an unreadable cache is only a slower read."""
        try:
            rows, assembled, blobs = self._read(self.path, folder)
        except FileNotFoundError:
            return {}, {}, None, None
        except Exception as e:
            log.warning("article cache %s unreadable (%s); reading every article", self.path, e)
            return {}, {}, None, None
        journal: dict = {}
        if rows:
            try:
                journal, _, _ = self._read(self.journal_path, folder)
            except FileNotFoundError:
                pass
            except Exception as e:
                log.warning("article cache journal %s unreadable (%s); reading every article", self.journal_path, e)
                return {}, {}, None, None
            if assembled is not None:
                assembled = assembled._replace(entries=dict(rows))
            rows.update(journal)
        return {rel: entry for rel, entry in rows.items() if entry is not None}, journal, assembled, blobs

    def save(self, entries: dict[str, _Entry], changed: dict[str, _Entry | None],
             journal: dict[str, _Entry | None], assembled: _Assembled, blobs: _Blobs | None) -> dict[str, _Entry | None]:
        """Write the changes; returns the journal as it now is on disk. A new snapshot also keeps
        the assembled corpus, so that the next read in another process need not assemble it."""
        if len(journal.keys() | changed.keys()) * 10 <= len(entries):
            journal = {**journal, **_self_contained(changed, blobs)}
            self._write(self.journal_path, journal, None, ())
            return journal
        rows, region = _stored(entries, blobs)
        self._write(self.path, rows, assembled._replace(corpus=replace(assembled.corpus, found=_Found()), entries=None), region)
        self.journal_path.unlink(missing_ok=True)
        return {}

    def identity(self) -> tuple:
        """What tells the cache files apart from any other version of them (a rename changes the inode)."""
        def one(path: Path) -> tuple[int, int, int] | None:
            try:
                stat = os.stat(path)
            except FileNotFoundError:
                return None
            return stat.st_ino, stat.st_size, stat.st_mtime_ns
        return one(self.path), one(self.journal_path)

    def _write(self, path: Path, rows: dict, assembled: _Assembled | None, region: Sequence[bytes | memoryview]) -> None:
        """The index (`rows` and the snapshot's `assembled` corpus) and the articles `region`, to `path` atomically."""
        path.parent.mkdir(parents=True, exist_ok=True)
        unique = f"{os.getpid()}.{threading.get_ident()}"  # threads of one service too
        temporary = path.with_name(f".{path.name}.{unique}.tmp")
        index = pickle.dumps((self.stamp, rows, assembled), protocol=pickle.HIGHEST_PROTOCOL)
        with temporary.open("wb", buffering=1 << 20) as f:
            f.write(_CACHE_MAGIC + _CACHE_HEADER.pack(zlib.crc32(index), len(index), sum(map(len, region))))
            f.write(index)
            f.writelines(region)
        os.replace(temporary, path)


def _self_contained(changed: Mapping[str, _Entry | None], blobs: _Blobs | None) -> dict[str, _Entry | None]:
    """`changed` with every stored article made (a journal stands beside any later snapshot)."""
    return {rel: entry if entry is None or type(entry.result) is not _Blob
            else entry._replace(result=_made(rel, entry.result, blobs))
            for rel, entry in changed.items()}


_ARTICLE_FIELDS = tuple(f.name for f in dataclasses.fields(Article))
_article_values = attrgetter(*_ARTICLE_FIELDS)


def _stored(entries: Mapping[str, _Entry], blobs: _Blobs | None) -> tuple[dict[str, _Entry], list[bytes | memoryview]]:
    """The snapshot's rows and articles region (as pieces): each article's fields pickled on their
    own (one stored in the last snapshot, or pickled by a parse worker, copied as it is), its entry
    pointing at them."""
    region: list[bytes | memoryview] = []
    offset = 0
    rows: dict[str, _Entry] = {}
    for rel, entry in entries.items():
        result = entry.result
        if type(result) is _Blob:  # its recorded CRC goes with it: damage found later is still found
            assert blobs is not None
            data, crc = blobs.raw(result), result.crc
        elif type(result) is Article:
            data = pickle.dumps(_article_values(result), protocol=pickle.HIGHEST_PROTOCOL)
            crc = zlib.crc32(data)
        else:
            rows[rel] = entry
            continue
        rows[rel] = entry._replace(result=_Blob(offset, len(data), crc))
        region.append(data)
        offset += len(data)
    return rows, region


def _share_categories(entries: Iterable[_Entry | None]) -> None:
    """Give the articles of `entries` one Category object per distinct category, in place (an
    equal object for an equal one: nothing anyone holds changes meaning): assembly compares them
    by identity. (The snapshot stores each article apart, with its own.)"""
    pool: dict[Category, Category] = {}
    for entry in entries:
        article = entry.result if entry is not None else None
        if type(article) is Article:
            shared = tuple([pool.setdefault(c, c) for c in article.categories])
            if any(a is not b for a, b in zip(shared, article.categories)):
                object.__setattr__(article, "categories", shared)


class CorpusMemory:
    """The last read's entries, kept by a long-running process (the service) between reads.

    A read with a memory skips loading the cache files while they are still the ones this
    memory wrote or loaded (same inode, size and mtime): only the stat scan and the changed
    files remain. When nothing changed at all, the previous Corpus itself is returned.
    Another process writing the cache (a `syndicate build` beside the service) changes the
    files' identity, and the next read loads them again. Reads through one memory take turns.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._kept: _Kept | None = None
        self.external = SnapshotReader()  # the other sites' articles (syndicate.content._external)

    def recall(self, store: _Cache, folder: Path, rules: tuple[CategoryRule, ...]) -> _Kept | None:
        kept = self._kept
        if kept is None or (kept.cache, kept.stamp, kept.folder, kept.rules) != (store.path, store.stamp, folder, rules):
            return None
        return kept if kept.identity == store.identity() else None

    def keep(self, kept: _Kept | None) -> None:
        self._kept = kept


class CacheWriter:
    """Writes the article cache in a forked process while the caller goes on (a cold build renders
    its pages meanwhile, instead of waiting a third of a second for 10,000 articles to be
    pickled); `wait()`, or the end of its with-block, waits for that process. Where forking is
    unsafe (other threads are running) or impossible, it writes at once."""

    def __init__(self) -> None:
        self._writing: Forked | None = None

    def write(self, save: Callable[[], object], path: Path) -> None:
        self.wait()
        if not can_fork():
            _save_logged(save, path)
            return
        self._writing = Forked(_save_logged, save, path, name="syndicate-cache-writer")

    def wait(self) -> None:
        if self._writing is not None:
            writing, self._writing = self._writing, None
            try:
                writing.result()  # False: the writer logged the problem itself
            except WorkerDied as e:
                log.warning("article cache writer: %s", e)

    def __enter__(self) -> CacheWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.wait()


def _save_logged(save: Callable[[], object], path: Path) -> bool:
    try:
        save()
    except OSError as e:
        log.warning("cannot write article cache %s: %s", path, e)
        return False
    return True


class _Assembled(NamedTuple):
    """A corpus as assembled from `entries` of `folder` under `rules` (entries None when pickled:
    they are the snapshot's rows)."""

    folder: Path
    rules: tuple[CategoryRule, ...]
    corpus: Corpus
    entries: Mapping[str, _Entry] | None


class _Kept(NamedTuple):
    cache: Path
    stamp: tuple
    folder: Path
    rules: tuple[CategoryRule, ...]
    identity: tuple
    entries: dict[str, _Entry]
    journal: dict[str, _Entry | None]
    corpus: Corpus
    blobs: _Blobs | None  # the articles region the entries' _Blobs point into


def read_corpus(
    folder: Path,
    options: ReaderOptions,
    *,
    rules: Iterable[CategoryRule] = (),
    cache: Path | None = None,
    workers: int | None = None,
    memory: CorpusMemory | None = None,
    writer: CacheWriter | None = None,
    follow_external_links: bool = False,
    changed: Collection[str] | None = None,
    every: bool = False,
) -> Corpus:
    """Read every article under `folder`; see the module docstring. A `memory` (with a `cache`)
    keeps what this read found for the next one in the same process; a `writer` (without a
    memory) writes the cache while the caller goes on. `changed` (with a memory): the only
    files that can have changed since the memory's read (relative paths, from a watcher of
    the folder), so the other 10,000 are not stat-ed; None: look at every file. `every`: the
    caller will make every Article (a build with pages), so the parse workers of a large read
    hand back the Articles themselves rather than pickles made into Articles when asked for."""
    folder, rules = Path(folder), tuple(rules)
    if memory is None or cache is None:
        return _read_corpus(folder, options, rules, cache, workers, None, writer, follow_external_links, every=every)
    with memory.lock:
        return _read_corpus(folder, options, rules, cache, workers, memory, None, follow_external_links, changed, every)


def _read_corpus(folder: Path, options: ReaderOptions, rules: tuple[CategoryRule, ...], cache: Path | None,
                 workers: int | None, memory: CorpusMemory | None, writer: CacheWriter | None,
                 follow_external_links: bool = False, hint: Collection[str] | None = None, every: bool = False) -> Corpus:
    if not folder.is_dir():
        problem = Problem(folder, 0, "content folder not found")
        return Corpus((), (), (problem,), (), 0, 0)
    store = _Cache(cache, options) if cache is not None else None
    kept = memory.recall(store, folder, rules) if memory is not None and store is not None else None
    assembled: _Assembled | None = None
    blobs: _Blobs | None = None
    if kept is not None:
        cached, journal, blobs = kept.entries, kept.journal, kept.blobs
    elif store is not None:
        cached, journal, assembled, blobs = store.load(folder)
    else:
        cached, journal = {}, {}
    entries: dict[str, _Entry] = {}
    changed: dict[str, _Entry | None] = {}
    jobs: list[_Job] = []
    pending: list[tuple[str, os.stat_result, _Entry | None]] = []
    base = str(folder)
    scanned = _scan_changed(folder, cached, hint) if kept is not None and hint is not None else None
    if scanned is None:
        found, scan_problems = _scan(folder, follow_external_links)
        for problem in scan_problems:  # kept like a file's problem, so the cache notices when it goes away
            rel = str(problem.path)
            entries[rel] = _Entry(0, 0, "", problem)
            if cached.get(rel) != entries[rel]:
                changed[rel] = entries[rel]
    for rel, stat in scanned if scanned is not None else found:
        old = cached.get(rel)
        if stat is None:  # not among the changed files: as it was
            entries[rel] = old  # type: ignore[assignment]
            continue
        if old is not None and old.size == stat.st_size and old.mtime_ns == stat.st_mtime_ns:
            entries[rel] = old
            continue
        entries[rel] = None  # type: ignore[assignment]  # keeps the path order; filled below
        jobs.append((rel, f"{base}/{rel}", old.digest if old is not None else "", options))
        pending.append((rel, stat, old))
    parsed = 0
    fresh: dict[str, ArticleRef] = {}  # the refs of the articles parse workers pickled (see _Pickled)
    places: dict[int, int] = {}  # id of a worker's batch -> where it starts among the blobs
    for (rel, stat, old), (digest, result) in zip(pending, _parse_many(jobs, workers, pickled=store is not None and not every)):
        if result is None:  # same bytes as cached
            entries[rel] = changed[rel] = old._replace(size=stat.st_size, mtime_ns=stat.st_mtime_ns)  # type: ignore[union-attr]
            continue
        parsed += digest != ""  # "": the file could not be read
        if type(result) is _Pickled:
            if blobs is None:
                blobs = _Blobs(None, 0, 0, folder, options)
            start = places.get(id(result.batch))
            if start is None:
                start = places[id(result.batch)] = blobs.add(result.batch)
            ref = result.ref
            fresh[rel] = ref._replace(categories=blobs.shared(ref.categories))  # the Articles made later share them
            result = _Blob(start + result.offset, result.length, result.crc)  # type: ignore[assignment]
        entries[rel] = changed[rel] = _Entry(stat.st_size, stat.st_mtime_ns, digest, result)  # type: ignore[arg-type]
    changed.update({rel: None for rel in cached.keys() - entries.keys()})
    _share_categories(changed.values())
    corpus = (_reassembled(kept, assembled, folder, rules, journal, changed, entries, blobs)
              or _assemble(folder, entries, rules, blobs, fresh))
    saved = True
    if store is not None and changed:
        save = functools.partial(store.save, entries, changed, journal, _Assembled(folder, rules, corpus, None), blobs)
        if writer is not None:
            writer.write(save, store.path)
        else:
            try:
                journal = save()
            except OSError as e:
                saved = False
                log.warning("cannot write article cache %s: %s", cache, e)
    if memory is not None and store is not None:
        memory.keep(_Kept(store.path, store.stamp, folder, rules, store.identity(), entries, journal, corpus, blobs)
                    if saved else None)
    log.log(logging.INFO if parsed or changed else logging.DEBUG,  # an idle service stays quiet
            "read %d articles from %d files (%d parsed, %d problems)", len(corpus.refs), corpus.files, parsed, len(corpus.problems))
    return replace(corpus, parsed=parsed)


def _reassembled(kept: _Kept | None, assembled: _Assembled | None, folder: Path, rules: tuple[CategoryRule, ...],
                 journal: Mapping[str, _Entry | None], changed: Mapping[str, _Entry | None],
                 entries: Mapping[str, _Entry], blobs: _Blobs | None) -> Corpus | None:
    """The corpus without assembling it again, when a memory or the snapshot has it: as it was if
    nothing changed, patched if the changes allow (see _patched); else None. Its articles come
    from `entries` (and the snapshot's `blobs`)."""
    if kept is not None:
        return kept.corpus if not changed else _patched(kept.entries, kept.corpus, changed, entries, blobs)
    if assembled is None or assembled.entries is None or (assembled.folder, assembled.rules) != (folder, rules):
        return None
    since_snapshot = {**journal, **changed}
    if not since_snapshot:
        return replace(assembled.corpus, found=_Found(entries, blobs))
    return _patched(assembled.entries, assembled.corpus, since_snapshot, entries, blobs)


def _patched(before: Mapping[str, _Entry], assembled: Corpus, changed: Mapping[str, _Entry | None],
             entries: Mapping[str, _Entry], blobs: _Blobs | None) -> Corpus | None:
    """`assembled` (the corpus of `before`) with each edited article in the place of its old
    version, when no edit touches what assembly decides on (id, slug, date, categories as written) and every file
    involved was and is a good article; else None (assemble from scratch). A typical edit, a
    fix to a title or a body, then skips re-assembling 10,000 articles (and making them: only the
    edited one's old version is made, to compare)."""
    refs = list(assembled.refs)
    for rel, entry in changed.items():
        old = before.get(rel)
        if entry is None or old is None or type(old.result) is Problem:
            return None
        if type(entry.result) is _Blob and entry.result == old.result:  # touched, the same bytes: the same article
            continue
        if type(entry.result) is not Article:
            return None
        was, after = _made(rel, old.result, blobs), entry.result  # type: ignore[arg-type]
        if (was.id, was.slug, was.published, was.categories) != (after.id, after.slug, after.published, after.categories):
            return None
        at = _position(refs, was)
        if at is None or refs[at].source != was.source:  # it was a duplicate, skipped
            return None
        refs[at] = article_ref(after)._replace(categories=refs[at].categories)  # shown as before: the same names as written
    return replace(assembled, refs=tuple(refs), found=_Found(entries, blobs))


def _position(articles: list[ArticleRef], article: Article) -> int | None:
    """Where an article with `article`'s date and id is in `articles` (newest first, as assembly
    sorts them), found by bisection; None if there is none."""
    key = (article.published, article.id)
    low, high = 0, len(articles)
    while low < high:
        middle = (low + high) // 2
        if (articles[middle].published, articles[middle].id) > key:
            low = middle + 1
        else:
            high = middle
    return low if low < len(articles) and articles[low].id == article.id else None


def _assemble(folder: Path, entries: Mapping[str, _Entry], rules: tuple[CategoryRule, ...], blobs: _Blobs | None,
              fresh: Mapping[str, ArticleRef] | None = None) -> Corpus:
    """Drop duplicate ids, unify categories by slug, apply the config's titles and aliases. It works on
    the articles' refs: those of `fresh` (by path) as they are, every other article is made for its ref."""
    problems: list[Problem] = []
    warnings: list[Problem] = []
    by_id: dict[str, ArticleRef] = {}
    by_slug_seen: dict[str, ArticleRef] = {}
    unique: list[ArticleRef] = []
    fresh = fresh or {}
    for rel, entry in entries.items():  # in path order: the first file keeps a contested id
        result = entry.result
        if isinstance(result, Problem):
            problems.append(replace(result, path=folder / result.path))
            continue
        article = fresh.get(rel) or article_ref(_made(rel, result, blobs))
        clash = by_id.get(article.id) or by_slug_seen.get(article.slug)
        if clash is not None:
            what = "id" if clash.id == article.id else "slug"
            value = article.id if what == "id" else article.slug
            problems.append(Problem(folder / article.source, 1, f"duplicate article {what} {value!r} (also in {folder / clash.source}); skipped"
                                    + (" (give one of them its own `slug:` in the front matter)" if what == "slug" else "")))
            problems.append(Problem(folder / clash.source, 1, f"duplicate article {what} {value!r} (also in {folder / article.source})"))
            continue
        by_id[article.id] = article
        by_slug_seen[article.slug] = article
        unique.append(article)

    alias_to_slug = {slugify(alias): rule.slug for rule in rules for alias in rule.aliases}
    titles = {rule.slug: rule.title for rule in rules if rule.title}
    by_slug: dict[str, Category] = {}
    canonical: dict[Category, Category] = {}  # as written -> as shown; ~40 distinct in a corpus
    # Keyed by the identities of the written categories (shared objects after a cache load):
    # hashing 10,000 tuples of dataclasses costs more than the rest of the assembly.
    shown_for: dict[tuple[int, ...], tuple[Category, ...] | None] = {}  # None: already as shown
    resolved: list[ArticleRef] = []
    for article in unique:
        written = article.categories
        key = tuple(map(id, written))
        if key not in shown_for:
            for category in written:
                if category in canonical:
                    continue
                slug = alias_to_slug.get(category.slug, category.slug)
                known = by_slug.get(slug)
                if known is None:
                    known = by_slug[slug] = Category(slug, titles.get(slug, category.name))
                elif known.name != category.name and slug == category.slug and slug not in titles:
                    warnings.append(Problem(folder / article.source, 1, f"category {category.name!r} has the same slug as {known.name!r}; using {known.name!r}"))
                canonical[category] = known
            shown = tuple({id(k): k for k in (canonical[c] for c in written)}.values())  # first of each, in order
            shown_for[key] = None if shown == written else shown
        as_shown = shown_for[key]
        resolved.append(article if as_shown is None else article._replace(categories=as_shown))
    resolved.sort(key=attrgetter("published", "id"), reverse=True)
    problems.sort(key=lambda p: (str(p.path), p.line))
    found = _Found(entries, blobs)  # makes each Article when asked, with its categories as shown
    return Corpus(
        refs=tuple(resolved),
        categories=tuple(sorted(by_slug.values(), key=lambda c: c.slug)),
        problems=tuple(problems),
        warnings=tuple(warnings),
        files=len(entries),
        parsed=0,
        found=found,
    )
