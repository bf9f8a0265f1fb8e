"""Builds the public site: the corpus in, every feed and page out, incrementally and atomically.

Each output file has a fingerprint of everything it shows (the ids and content hashes of
its articles, the settings, the templates and this code's version). A manifest under the
var folder remembers each file's fingerprint, size and modification time; a file whose
fingerprint and stat are unchanged is not rendered at all. A rendered file is written
only when its bytes differ (syndicate.site._files), so a rebuild with nothing changed touches
nothing. Files of removed categories and articles are removed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import marshal
import os
import sys
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

from syndicate import __version__
from syndicate.config import CategorySettings, FeedSettings, OutputSettings, SiteSettings
from syndicate.content import (
    ArticleRef,
    CacheWriter,
    Category,
    ContentSource,
    Corpus,
    CorpusMemory,
    can_fork,
    legacy_slug,
    make_xml_safe,
    run_parallel,
)
from syndicate.errors import Problem
from syndicate.site import _feeds, _pages
from syndicate.site._feeds import EMPTY_FEED_UPDATED, FeedSpec, SiteInfo, render_feed, render_opml
from syndicate.site._files import publish, remove_file, write_atomic
from syndicate.site._pages import STYLESHEET, CategoryEntry, SitePages, check_overrides, compiled_templates
from syndicate.site._urls import FEED_SUFFIXES, SITE_FEED, SiteUrls

log = logging.getLogger(__name__)

BUILD_FORMAT = 3  # bump when the output of the same inputs changes (or the fingerprints' form)
MANIFEST_FORMAT = 2
PARALLEL_FROM = 300  # pages' worth of work before forking a second worker pays for itself
COST = {"feed": 10}  # a feed of 50 full items costs about ten pages (every other kind: one)
RESERVED_SLUGS = frozenset({SITE_FEED})
REDIRECTS = "redirects.map"  # the static site's own name for it too (syndicate.web.static)


@dataclass(frozen=True)
class BuildReport:
    """What a build did: counts, the files it wrote and removed (relative paths), and problems."""

    output: Path
    feeds_folder: Path
    articles: int
    categories: int
    written: tuple[str, ...]
    unchanged: int
    removed: tuple[str, ...]
    problems: tuple[Problem, ...]
    warnings: tuple[Problem, ...]
    corpus: Corpus | None = field(default=None, repr=False, compare=False)  # what was built (for the archive)

    @property
    def ok(self) -> bool:
        return not self.problems


class _Output(NamedTuple):
    """One file to produce: `path` relative to the output folder, how to render it, its fingerprint.

    A named tuple: a build plans 10,000 of them, and a frozen dataclass costs three times as much."""

    path: str
    kind: str  # feed | opml | asset | not_found | index | category | article
    key: str
    fingerprint: str


@dataclass(frozen=True)
class _Feed:
    """One feed as the build plans it: the site feed (`category` None) or a category's, its articles
    newest first, as the corpus tells them (the Articles are made when the feed is rendered)."""

    slug: str
    title: str
    description: str
    refs: tuple[ArticleRef, ...]
    category: Category | None = None

    def __post_init__(self) -> None:
        make_xml_safe(self, ("title", "description"))  # as FeedSpec: the plan's fingerprints are the output's

    @property
    def updated(self) -> datetime:
        """The newest item's `updated` (FeedSpec.updated, from the refs)."""
        return max((r.updated for r in self.refs), default=EMPTY_FEED_UPDATED)


@dataclass(frozen=True)
class _Site:
    """Everything the renderers need, computed once per build (shared with forked workers)."""

    info: SiteInfo
    urls: SiteUrls
    formats: tuple[str, ...]
    specs: dict[str, _Feed]  # SITE_FEED first, then categories by slug
    counts: dict[str, int]
    refs: dict[str, ArticleRef]  # every article by id
    corpus: Corpus  # makes the Articles a render needs
    pages: SitePages
    opml_format: str  # the format of the main OPML's feeds
    _feed_specs: dict[str, FeedSpec] = field(default_factory=dict, repr=False, compare=False)

    def feed(self, slug: str) -> FeedSpec:
        """The feed `slug` with its Articles, made once per process of the build."""
        spec = self._feed_specs.get(slug)
        if spec is None:
            planned = self.specs[slug]
            spec = self._feed_specs[slug] = FeedSpec(planned.slug, planned.title, planned.description,
                                                     self.corpus.articles_of(planned.refs), planned.category)
        return spec


@dataclass(frozen=True)
class BuildSettings:
    """What a site build reads from the configuration: its sections and plain values (the composition
    root, syndicate.wiring.build_settings, makes it from the whole settings)."""

    site: SiteSettings
    feeds: FeedSettings
    output: OutputSettings
    categories: Mapping[str, CategorySettings]
    hubs: tuple[str, ...]  # the WebSub hubs every feed announces
    state: Path  # the build's own folder under var/: manifests and compiled templates


def site_info(site: SiteSettings, hubs: Sequence[str] = ()) -> SiteInfo:
    return SiteInfo(site.title, site.description, site.language, site.author, site.timezone, tuple(hubs))


def _digest(*parts: object) -> str:
    return hashlib.blake2b("\x1f".join(map(str, parts)).encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def _article_keys(articles: Iterable[ArticleRef]) -> dict[str, str]:
    """What of each article shows in any output, by id, as a plain string (no hashing or
    formatting: 10,000 of them are made per build). The content hash covers every field read
    from the file and the path covers what comes from it (id, slug); the categories' slugs and
    names follow from those and the settings, which are in the build's context fingerprint."""
    return {a.id: a.content_hash[:32] + a.source for a in articles}


def _code_fingerprint() -> str:
    """The code that shapes the output: a changed renderer (even unreleased) re-renders everything."""
    modules = (_feeds, _pages, sys.modules[__name__])
    return _digest(__version__, BUILD_FORMAT, *(hashlib.sha256(Path(str(m.__file__)).read_bytes()).hexdigest() for m in modules))


def _settings_fingerprint(settings: BuildSettings, source: ContentSource) -> str:
    """The settings every output depends on; the reader's options too (a changed date format or
    default author changes articles whose files, and so whose keys, did not change)."""
    return _digest(
        _code_fingerprint(),
        settings.site.model_dump_json(), settings.feeds.model_dump_json(), settings.hubs,
        json.dumps({k: v.model_dump(mode="json") for k, v in settings.categories.items()}, sort_keys=True),
        source.options,
    )


def _category_description(settings: BuildSettings, category: Category) -> str:
    rule = settings.categories.get(category.slug)
    if rule is not None and rule.description:
        return rule.description
    return f"{category.name}: the latest articles from {settings.site.title}."


def _reserved_problems(corpus: Corpus, content: Path) -> tuple[list[Problem], set[str]]:
    problems, reserved = [], set()
    for category in corpus.categories:
        if category.slug in RESERVED_SLUGS:
            reserved.add(category.slug)
            first = next(r for r in reversed(corpus.refs) if category in r.categories)
            problems.append(Problem(content / first.source, 1, (
                f"category {category.name!r} has the slug {category.slug!r}, reserved for the site-wide feeds; "
                "its category feeds and page are not built (rename it, or map it to another slug with "
                "[categories.<slug>] aliases)")))
    return problems, reserved


def _assemble(corpus: Corpus, settings: BuildSettings, reserved: set[str]) -> _Site:
    """The feeds' contents and the page renderer for this corpus."""
    items = settings.feeds.items
    info = site_info(settings.site, settings.hubs)
    urls = SiteUrls(settings.site.base_url, settings.feeds.folder)
    specs = {SITE_FEED: _Feed(SITE_FEED, info.title, info.description, corpus.refs[:items])}
    counts: dict[str, int] = {}
    by_category: dict[str, list[ArticleRef]] = {c.slug: [] for c in corpus.categories}
    for ref in corpus.refs:  # newest first, so each list is too
        for category in ref.categories:
            by_category[category.slug].append(ref)
    for category in corpus.categories:
        if category.slug in reserved:
            continue
        shown = by_category[category.slug]
        counts[category.slug] = len(shown)
        specs[category.slug] = _Feed(
            category.slug, f"{info.title}: {category.name}", _category_description(settings, category),
            tuple(shown[:items]), category,
        )
    formats = tuple(dict.fromkeys(settings.feeds.formats))
    nav = tuple((slug, spec.category.name, urls.category(slug)) for slug, spec in specs.items() if spec.category is not None)
    renderer = SitePages(info, urls, formats, bytecode_cache=compiled_templates(settings.state), nav=nav, overrides=settings.output.templates,
                         archive_url=urls.archive() if settings.output.pages else None)
    opml_format = settings.feeds.opml_format if settings.feeds.opml_format in formats else next(
        (f for f in formats if f != "json"), formats[0])
    return _Site(info, urls, formats, specs, counts, {r.id: r for r in corpus.refs}, corpus, renderer, opml_format)


def _context_fingerprint(site: _Site, settings_fp: str, templates_fp: str) -> str:
    """What every output depends on besides its own articles: the code, the settings, the templates
    and the categories' names (an article's key names only its category slugs). When it changes,
    every file is rendered again (and rewritten only if its bytes changed)."""
    categories = [(slug, spec.category.name) for slug, spec in site.specs.items() if spec.category is not None]
    return _digest(settings_fp, templates_fp, categories)


def _plan(site: _Site, with_pages: bool = True) -> list[_Output]:
    """Every output file with its fingerprint (within the build's context), feeds first (they are
    what people poll)."""
    keys = _article_keys(site.refs.values()) if with_pages else None
    outputs: list[_Output] = []
    for slug, spec in site.specs.items():
        # Without pages, only the feeds' articles need a key (a watcher's rebuild plans the feeds first).
        shown = [keys[r.id] for r in spec.refs] if keys is not None else list(_article_keys(spec.refs).values())
        for fmt in site.formats:
            fingerprint = _digest("feed", fmt, slug, spec.title, spec.description, *shown)
            outputs.append(_Output(site.urls.feed_path(slug, fmt), "feed", f"{fmt}:{slug}", fingerprint))
    opml = [(s.slug, s.title, s.updated.isoformat()) for s in site.specs.values()]
    for opml_fmt in (None, *site.formats):  # the main OPML, then one per format beside it
        outputs.append(_Output(site.urls.opml_path(opml_fmt), "opml", opml_fmt or "",
                               _digest("opml", opml_fmt, site.opml_format, opml)))
    if keys is None:
        return outputs
    outputs.append(_Output(STYLESHEET, "asset", STYLESHEET, ""))  # the template fingerprint covers it
    outputs.append(_Output("404.html", "not_found", "", "not_found"))  # shows only the context (categories)
    outputs.append(_Output(REDIRECTS, "redirects", "", _redirects_key(site)))
    entries = [(slug, spec.title, site.counts[slug]) for slug, spec in site.specs.items() if slug != SITE_FEED]
    newest = [keys[r.id] for r in site.specs[SITE_FEED].refs]
    outputs.append(_Output("index.html", "index", "", _digest("index", entries, *newest)))
    for slug, spec in site.specs.items():
        if slug != SITE_FEED:
            fingerprint = _digest("category", slug, spec.title, spec.description, *(keys[r.id] for r in spec.refs))
            outputs.append(_Output(site.urls.category_path(slug) + "index.html", "category", slug, fingerprint))
    article_path = site.urls.article_path
    outputs.extend(
        _Output(article_path(ref.slug) + "index.html", "article", article_id, keys[article_id])
        for article_id, ref in site.refs.items() if ref.url is None
    )
    return outputs


def _redirects_key(site: _Site) -> str:
    """What the redirect map shows depends on: each article's id (its old slug follows from it), slug
    and whether it has a page. Working the old slugs out (10,000 slugifications) waits for a render."""
    return _digest("redirects", *(f"{r.id}\x1e{r.slug}\x1e{r.url is None}" for r in site.refs.values()))


def _moved(site: _Site) -> list[str]:
    """`old new` URL paths of every article whose address changed when slugs stopped naming the folder."""
    taken = {r.slug for r in site.refs.values()}
    moved = []
    for ref in site.refs.values():
        old = legacy_slug(ref)
        if ref.url is None and old != ref.slug and old not in taken:
            moved.append(f"/{site.urls.article_path(old)} /{site.urls.article_path(ref.slug)}")
    return sorted(moved)


def _render_redirects(site: _Site, key: str) -> bytes:
    """An nginx `map` body (`/old/path/ /new/path/;` per line): the service answers 301 from it too."""
    lines = ["# Old article URLs and where they moved: include in an nginx map (docs/deployment.md)."]
    lines += [f"{line};" for line in _moved(site)]
    return ("\n".join(lines) + "\n").encode("utf-8")


def _render_index(site: _Site, key: str) -> bytes:
    entries = [
        CategoryEntry(spec.category, site.counts[slug], site.pages.feed_links(slug, spec.title))
        for slug, spec in site.specs.items() if spec.category is not None
    ]
    return site.pages.index(entries, site.feed(SITE_FEED).articles)


def _render_feed(site: _Site, key: str) -> bytes:
    fmt, slug = key.split(":", 1)
    return render_feed(fmt, site.feed(slug), site.info, site.urls)


def _render_category(site: _Site, key: str) -> bytes:
    spec = site.feed(key)
    assert spec.category is not None  # category keys name category feeds, never the site feed
    return site.pages.category(spec.category, spec.description, spec.articles)


def _render_opml(site: _Site, key: str) -> bytes:
    """One feed per category (never the site feed besides: importing it would double every article)."""
    specs = [spec for spec in site.specs.values() if spec.category is not None]
    fmt = key or site.opml_format
    title = f"{site.info.title}: every category" + (f" ({_feeds.FORMAT_NAMES[fmt]})" if key else "")
    return render_opml(specs, fmt, site.info, site.urls, title=title)


_PAGE_KINDS = frozenset({"not_found", "index", "category", "article"})  # the outputs rendered from templates

RENDERERS: dict[str, Callable[[_Site, str], bytes]] = {
    "feed": _render_feed,
    "opml": _render_opml,
    "asset": lambda site, key: site.pages.stylesheet(),
    "redirects": _render_redirects,
    "not_found": lambda site, key: site.pages.not_found(),
    "index": _render_index,
    "category": _render_category,
    "article": lambda site, key: site.pages.article(site.corpus.article(site.refs[key])),
}

# (path, written, size, mtime_ns, error)
_Result = tuple[str, bool, int, int, str | None]


def _produce(outputs: Sequence[_Output], site: _Site, folder: Path, new: bool) -> list[_Result]:
    """Render and write each output; a failure is recorded and the others carry on."""
    results: list[_Result] = []
    base = str(folder)
    for output in outputs:
        target = f"{base}/{output.path}"
        try:
            written, stat = publish(target, RENDERERS[output.kind](site, output.key), absent=new)
            results.append((output.path, written, stat.st_size, stat.st_mtime_ns, None))
        except Exception as e:  # one failing file never stops the others
            log.exception("cannot build %s", target)
            results.append((output.path, False, 0, 0, f"cannot build: {type(e).__name__}: {e}"))
    return results


def _produce_all(outputs: list[_Output], site: _Site, folder: Path, workers: int, new: bool) -> list[_Result]:
    """`_produce` over worker processes when there is enough work (see run_parallel). `new`: the
    output folder did not exist when the build started (no file there to compare with)."""
    cost = sum(COST.get(o.kind, 1) for o in outputs)
    if workers < 2 or cost < PARALLEL_FROM or not can_fork():
        return _produce(outputs, site, folder, new)
    log.info("rendering %d files in %d processes", len(outputs), workers)
    if any(o.kind in _PAGE_KINDS for o in outputs):
        site.pages.prepare()  # Jinja2 imported once, before the workers fork, not in each of them
    return run_parallel(lambda share: _produce(share, site, folder, new), outputs, workers)


def manifest_path(settings: BuildSettings, output: Path) -> Path:
    return settings.state / f"manifest-{_digest(output)[:12]}.marshal"


# What a manifest knows of one file: (fingerprint, size, mtime_ns).
_Known = tuple[str, int, int]


def _load_manifest(path: Path, context: str) -> dict[str, _Known] | None:
    """The files of the last build (None if there is no usable manifest); marshal, not JSON: it
    loads 10,000 entries in a few milliseconds."""
    try:
        data = marshal.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, EOFError, ValueError, TypeError) as e:  # a lost manifest only costs a slower build
        log.warning("build manifest %s unreadable (%s); rendering every file", path, e)
        return None
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        return None
    if data.get("context") != context:
        # Other code, settings, templates or category names: render everything, but still
        # know the files, so that those a build no longer makes are removed.
        return {path: ("", 0, 0) for path in data.get("files", {})}
    return data.get("files", {})


def _write_manifest(path: Path, output: str, context: str, files: dict[str, _Known]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, marshal.dumps({"format": MANIFEST_FORMAT, "output": output, "context": context, "files": files}, 4))


def _is_current(output: _Output, known: _Known | None, folder: str) -> bool:
    if known is None or known[0] != output.fingerprint:
        return False
    try:
        stat = os.stat(f"{folder}/{output.path}")  # plain strings: 10,000 pathlib joins cost 0.1 s
    except FileNotFoundError:
        return False
    return stat.st_size == known[1] and stat.st_mtime_ns == known[2]


def _generated_files(folder: Path, feeds_folder: str) -> Iterator[str]:
    """Files under `folder` that a build makes (by name), whether or not this build made them."""
    for sub, pattern in (("articles", "index.html"), ("categories", "index.html")):
        try:
            with os.scandir(folder / sub) as entries:
                for entry in entries:
                    if entry.is_dir():
                        yield f"{sub}/{entry.name}/{pattern}"
        except FileNotFoundError:
            pass
    try:
        with os.scandir(folder / feeds_folder) as entries:
            for entry in entries:
                if entry.name.endswith(tuple(FEED_SUFFIXES.values())) and not entry.name.startswith("."):
                    yield f"{feeds_folder}/{entry.name}"
    except FileNotFoundError:
        pass


def _remove_stale(folder: Path, feeds_folder: str, manifest: dict[str, _Known] | None, current: set[str]) -> list[str]:
    """Remove the files the last build made (all in its manifest) that this one did not; without
    a manifest, every file named as a build names them (10,000 folders to list: only then)."""
    removed = []
    known = set(_generated_files(folder, feeds_folder)) if manifest is None else set(manifest)
    for path in sorted(known - current):
        if remove_file(folder / path, stop=folder):
            log.info("removed %s", folder / path)
            removed.append(path)
    return removed


def build_site(
    settings: BuildSettings,
    source: ContentSource,
    *,
    content: Path | None = None,
    output: Path | None = None,
    workers: int | None = None,
    memory: CorpusMemory | None = None,
    changed: Collection[str] | None = None,
) -> BuildReport:
    """Read the corpus (incrementally) and bring every feed and page under the output folder up to date.

    `settings` are the build's own (syndicate.wiring.build_settings); `source` is where the articles
    come from; `content` and `output` override its folder and the configured output; `workers` the configured
    `[feeds] workers` (default: every core); `memory` keeps the articles in a long-running
    process from one build to the next (syndicate.content._reader.CorpusMemory).

    `changed` (with a `memory`): the paths a watcher saw change since the last build of this
    process (syndicate.service._watch). Only those articles are looked at, and an output whose
    fingerprint is the one its manifest records is trusted without a stat (a file changed or
    removed behind the service's back is caught by the next full rebuild, every
    `[schedule] rebuild_interval`).
    """
    with CacheWriter() as writer:  # the article cache is written while the build renders
        return _build(settings, source, content, output, workers, memory, writer, changed if memory is not None else None)


def _relative(paths: Collection[str], folder: Path) -> list[str] | None:
    """The paths under `folder`, relative with / separators (the others are not articles); None
    when the folder itself changed (look at everything)."""
    base = os.path.realpath(folder)
    inside = []
    for path in paths:
        real = os.path.realpath(path)
        if real == base:
            return None
        if real.startswith(base + os.sep):
            inside.append(os.path.relpath(real, base).replace(os.sep, "/"))
    return inside


def _build(settings: BuildSettings, source_of: ContentSource, content: Path | None, output: Path | None, workers: int | None,
           memory: CorpusMemory | None, writer: CacheWriter, changed: Collection[str] | None = None) -> BuildReport:
    check_overrides(settings.output.templates)
    folder = Path(output or settings.output.folder).resolve()
    source = Path(content or source_of.folder)
    if not source.is_dir():  # never mistake a mistyped folder for "every article was removed"
        problem = Problem(source, 0, "content folder not found; nothing built, nothing removed")
        return BuildReport(folder, folder / settings.feeds.folder, 0, 0, (), 0, (), (problem,), ())
    clock = [time.perf_counter()]
    new = not folder.exists()  # a first build: every file is new
    hint = _relative(changed, source) if changed is not None else None
    # With pages, every Article is made for its page: a large parse hands them back as they are.
    corpus = source_of.read(content, memory=memory, writer=writer, changed=hint, every=settings.output.pages)
    clock.append(time.perf_counter())
    problems, reserved = _reserved_problems(corpus, source)
    site = _assemble(corpus, settings, reserved)
    context = _context_fingerprint(site, _settings_fingerprint(settings, source_of), site.pages.fingerprint())
    manifest_file = manifest_path(settings, folder)
    last = _load_manifest(manifest_file, context)
    manifest = last or {}
    where = str(folder)
    early: list[_Result] = []
    if changed is not None:  # a watcher's rebuild: the changed feeds people poll go out before the pages are planned
        first = [o for o in _plan(site, with_pages=False) if o.kind == "feed" and o.path in manifest
                 and manifest[o.path][0] != o.fingerprint]  # feeds the manifest knows: a crash cannot hide them
        early = _produce(first, site, folder, new)
    sent = {result[0] for result in early if result[4] is None}
    outputs = _plan(site, settings.output.pages)
    if changed is not None:  # a watcher's rebuild: the manifest is trusted (see build_site)
        todo = [o for o in outputs if (o.path not in manifest or manifest[o.path][0] != o.fingerprint) and o.path not in sent]
    else:
        todo = [o for o in outputs if not _is_current(o, manifest.get(o.path), where)]
    new_paths = {o.path: ("", 0, 0) for o in todo if o.path not in manifest}
    if new_paths and last is not None:  # known before they exist: a crash now cannot hide them from the clean-up
        _write_manifest(manifest_file, where, context, {**manifest, **new_paths})
    clock.append(time.perf_counter())
    results = [r for r in early if r[0] in sent] + _produce_all(todo, site, folder, workers or settings.feeds.workers or os.cpu_count() or 1, new)
    clock.append(time.perf_counter())
    files, written, failed = _record(results, outputs, manifest, folder, problems)
    removed = _remove_stale(folder, site.urls.feeds_folder, last, {o.path for o in outputs})
    if results or removed or len(files) != len(manifest):
        _write_manifest(manifest_file, where, context, files)
    clock.append(time.perf_counter())
    quiet = not (written or removed or problems or corpus.problems)  # an idle service's rebuilds stay out of INFO
    log.log(logging.DEBUG if quiet else logging.INFO, "built %s: %d files written, %d unchanged, %d removed, %d problems in %.2f s "
             "(read %.2f, plan %.2f, render %.2f, finish %.2f)",
             folder, len(written), len(outputs) - len(written), len(removed), len(problems) + len(corpus.problems),
             clock[-1] - clock[0], *(b - a for a, b in zip(clock, clock[1:])))
    return BuildReport(
        output=folder,
        feeds_folder=folder / site.urls.feeds_folder,
        articles=len(corpus.refs),
        categories=len(corpus.categories),
        written=tuple(sorted(written)),
        unchanged=len(outputs) - len(written) - len(failed),
        removed=tuple(removed),
        problems=tuple(corpus.problems) + tuple(problems),
        warnings=corpus.warnings,
        corpus=corpus,
    )


def _record(results: list[_Result], outputs: list[_Output], manifest: dict[str, _Known], folder: Path,
            problems: list[Problem]) -> tuple[dict[str, _Known], list[str], set[str]]:
    """The new manifest entries, the paths written and the paths that failed (their problems go
    to `problems`)."""
    fingerprints = {o.path: o.fingerprint for o in outputs}
    files = {path: manifest[path] for path in fingerprints if path in manifest}
    written, failed = [], set()
    for path, was_written, size, mtime_ns, error in results:
        if error is not None:
            problems.append(Problem(folder / path, 0, error))
            files.pop(path, None)
            failed.add(path)
            continue
        files[path] = (fingerprints[path], size, mtime_ns)
        if was_written:
            written.append(path)
    return files, written, failed
