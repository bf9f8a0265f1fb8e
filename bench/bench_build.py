"""Benchmarks `syndicate build` against Pelican writing the same feeds from the same corpus.

    python bench/bench_build.py [--count 10000] [--work DIR] [--skip-pelican]

Generates COUNT articles (bench/generate.py: 5 KB each, 40 categories, 1-3 categories
per article), converts them to Pelican's Markdown metadata format, and times, each as
a fresh process (wall clock, as a user or a cron job sees it):

- syndicate: cold build (no article cache, no output), rebuild with no change, rebuild
  after editing one article's title;
- syndicate in one long-running process (as `syndicate run` rebuilds): the median of
  several one-article rebuilds by `build_site`, after the imports and a first build;
- Pelican (the installed version): cold with an empty content cache, rebuild with no
  change (cache on), rebuild after the same edit (cache on).

Pelican writes only the site feeds and one feed per category, Atom and RSS, 50 items,
full content (every other output turned off). Pelican allows one category per
article, so each article's categories are its Pelican *tags* and the per-category
feeds are Pelican's tag feeds: the same 41 feeds x 2 formats, with the same items.
syndicate additionally writes JSON Feed, OPML and every HTML page (it has no switch to
turn them off), so the comparison is against more work on our side.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from generate import generate

PELICAN_CONF = """\
AUTHOR = "Bench"
SITENAME = "Bench"
SITEURL = "https://bench.example"
FEED_DOMAIN = SITEURL
TIMEZONE = "UTC"
DEFAULT_LANG = "en"
DEFAULT_DATE_FORMAT = "%Y-%m-%d"
FEED_ALL_ATOM = "feeds/all.atom.xml"
FEED_ALL_RSS = "feeds/all.rss.xml"
TAG_FEED_ATOM = "feeds/{slug}.atom.xml"
TAG_FEED_RSS = "feeds/{slug}.rss.xml"
CATEGORY_FEED_ATOM = None
CATEGORY_FEED_RSS = None
AUTHOR_FEED_ATOM = None
AUTHOR_FEED_RSS = None
TRANSLATION_FEED_ATOM = None
TRANSLATION_FEED_RSS = None
FEED_MAX_ITEMS = 50
RSS_FEED_SUMMARY_ONLY = False
DIRECT_TEMPLATES = []
ARTICLE_SAVE_AS = ""
ARTICLE_LANG_SAVE_AS = ""
DRAFT_SAVE_AS = ""
DRAFT_LANG_SAVE_AS = ""
PAGE_SAVE_AS = ""
PAGE_LANG_SAVE_AS = ""
DRAFT_PAGE_SAVE_AS = ""
DRAFT_PAGE_LANG_SAVE_AS = ""
CATEGORY_SAVE_AS = ""
TAG_SAVE_AS = ""
AUTHOR_SAVE_AS = ""
ARCHIVES_SAVE_AS = ""
INDEX_SAVE_AS = ""
STATIC_PATHS = []
THEME_STATIC_PATHS = []
CACHE_CONTENT = True
LOAD_CONTENT_CACHE = True
CACHE_PATH = {cache!r}
"""

SYNDICATE_CONF = """\
[site]
title = "Bench"
base_url = "https://bench.example"
timezone = "UTC"
[content]
folder = "content"
cache = "{var}/cache/articles.pickle"
[output]
folder = "{public}"
pages = {pages}
{templates}[feeds]
items = 50
[logging]
level = "WARNING"
"""

VARIANTS = {"full": True, "feeds-only": False}  # syndicate with and without its HTML pages
_TITLE = re.compile(r"^## (.+)$", re.MULTILINE)


def to_pelican(source: Path) -> str:
    """One generated export-format article in Pelican's Markdown metadata format."""
    text = source.read_text("utf-8")
    title = _TITLE.search(text).group(1)
    body, rest = text.split("### Description", 1)[1].split("### Category", 1)
    body, byline = body.strip().rsplit("\n\nby ", 1)
    listed, date = rest.split("### Date Created", 1)
    names = [line.split(". ", 1)[1] for line in listed.strip().splitlines()]
    month, day, year = date.strip().split("/")
    return (f"Title: {title}\nDate: {year}-{month}-{day}\nAuthor: {byline.strip()}\n"
            f"Category: {names[0]}\nTags: {', '.join(names)}\nSlug: {source.stem}\n\n{body}\n")


def prepare(work: Path, count: int, templates: Path | None = None) -> None:
    content, pelican = work / "content", work / "pelican-content"
    if not (content / ".count").is_file() or (content / ".count").read_text() != str(count):
        shutil.rmtree(content, ignore_errors=True)
        shutil.rmtree(pelican, ignore_errors=True)
        generate(content, count)
        for path in sorted(content.rglob("*.md")):
            target = pelican / path.relative_to(content)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(to_pelican(path), encoding="utf-8")
        (content / ".count").write_text(str(count))
    for name, pages in VARIANTS.items():
        (work / f"{name}.toml").write_text(
            SYNDICATE_CONF.format(var=f"var-{name}", public=f"public-{name}", pages=str(pages).lower(),
                                  templates=f"templates = {json.dumps(str(templates))}\n" if templates else ""))
    (work / "pelicanconf.py").write_text(PELICAN_CONF.replace("{cache!r}", repr(str(work / "pelican-cache"))))


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(command: list[str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process and every worker it waited for)."""
    cpu, start = _children_cpu(), time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return elapsed, _children_cpu() - cpu


def edit_title(path: Path, pattern: str, round_: int) -> None:
    text = path.read_text("utf-8")
    path.write_text(re.sub(pattern, lambda m: f"{m.group(0).split(' (edit')[0]} (edit {round_})", text, count=1), "utf-8")


def edited(work: Path) -> Path:
    """The article the one-article rebuild edits (relative path): the newest, so that it is in
    the site feed and in each of its category feeds, the most a one-article edit can touch."""
    def day(path: Path) -> str:
        month, dd, year = path.read_text("utf-8").rsplit("### Date Created", 1)[1].strip().split("/")
        return f"{year}{month}{dd}{path}"
    content = work / "content"
    return max(content.rglob("*.md"), key=day).relative_to(content)


# A rebuild inside a long-running process (as `syndicate run` rebuilds): settings loaded and one
# build done once, then the article edited and `build_site` timed, ROUNDS times.
IN_PROCESS = """
import re, statistics, sys, time
from pathlib import Path
from syndicate.cli._collector import collector_paused
from syndicate.site import build_site
from syndicate.wiring import build_settings, content_source
from syndicate.config import load_settings
from syndicate.content import CorpusMemory
settings, article, rounds = load_settings(Path(sys.argv[1])), Path(sys.argv[2]), int(sys.argv[3])
memory = CorpusMemory()  # as the service keeps one
build_site(build_settings(settings), content_source(settings), memory=memory)
times = []
for n in range(rounds):
    text = article.read_text("utf-8")
    article.write_text(re.sub(r"(?m)^## .+$", f"## Edited in process {time.time_ns()}", text, count=1), "utf-8")
    cpu, start = time.process_time(), time.perf_counter()
    with collector_paused():  # as the service's rebuild job runs it
        report = build_site(build_settings(settings), content_source(settings), memory=memory)
    times.append((time.perf_counter() - start, time.process_time() - cpu))
    assert report.ok and report.written, report
wall = statistics.median(t[0] for t in times)
print(wall, statistics.median(t[1] for t in times), min(t[0] for t in times))
"""
ROUNDS = 7


def in_process(work: Path, variant: str) -> tuple[float, float, float]:
    """(median wall, median CPU, best wall) seconds of a one-article rebuild inside one process."""
    article = work / "content" / edited(work)
    original = article.read_text("utf-8")
    try:
        done = subprocess.run([sys.executable, "-c", IN_PROCESS, str(work / f"{variant}.toml"), str(article), str(ROUNDS)],
                              cwd=REPO, capture_output=True, text=True)
    finally:
        article.write_text(original, "utf-8")
    if done.returncode != 0:
        raise SystemExit(f"in-process rebuild failed:\n{done.stdout}\n{done.stderr}")
    wall, cpu, best = map(float, done.stdout.split())
    return wall, cpu, best


def set_aside(work: Path, *names: str) -> None:
    """Move the last run's folders out of the way, to be deleted after the timings: on an ext4
    without a journal, a file created within five minutes of many deletions costs several
    times more (the inode allocator passes over every recently freed inode), which would
    charge the deletion of the last run's 20,000 files to this run's cold build."""
    trash = work / "trash"
    trash.mkdir(exist_ok=True)
    for name in names:
        if (work / name).exists():
            (work / name).rename(trash / f"{name}-{time.time_ns()}")


def bench_syndicate(work: Path, variant: str) -> dict[str, tuple[float, float]]:
    command = [sys.executable, "-m", "syndicate", "--config", str(work / f"{variant}.toml"), "build"]
    set_aside(work, f"var-{variant}", f"public-{variant}")
    # run from the repository: the package need not be installed
    results = {"cold": timed(command, REPO), "no change": timed(command, REPO)}
    article = work / "content" / edited(work)
    original = article.read_text("utf-8")
    edit_title(article, r"(?m)^## .+$", time.time_ns())
    try:
        results["one article edited"] = timed(command, REPO)
    finally:
        article.write_text(original, "utf-8")  # the next variant starts from the same corpus
    results["one article edited, in process"] = in_process(work, variant)
    return results


def bench_pelican(work: Path) -> dict[str, tuple[float, float]]:
    pelican = Path(sys.executable).with_name("pelican")
    command = [str(pelican), str(work / "pelican-content"), "-s", str(work / "pelicanconf.py"),
               "-o", str(work / "pelican-output"), "-q"]
    set_aside(work, "pelican-cache", "pelican-output")
    results = {"cold": timed(command, work), "no change": timed(command, work)}
    edit_title(work / "pelican-content" / edited(work), r"(?m)^Title: .+$", time.time_ns())
    results["one article edited"] = timed(command, work)
    return results


def pelican_version() -> str:
    done = subprocess.run([str(Path(sys.executable).with_name("pelican")), "--version"], capture_output=True, text=True)
    return done.stdout.strip() or done.stderr.strip()


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, {platform.system()} {platform.release()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "syndicate-bench-build")
    parser.add_argument("--skip-pelican", action="store_true")
    parser.add_argument("--templates", type=Path, default=None,
                        help="[output] templates: page templates to build with instead of the built-in ones")
    args = parser.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    prepare(work, args.count, args.templates)
    ours = {variant: bench_syndicate(work, variant) for variant in VARIANTS}
    theirs = {} if args.skip_pelican else bench_pelican(work)
    print(f"{args.count} articles, {machine()}, Pelican {pelican_version() if theirs else '(skipped)'}\n")
    print("Wall clock seconds (CPU seconds of the process and its workers); ratio = Pelican / syndicate.\n")
    print("| scenario | syndicate feeds + pages | syndicate feeds only | Pelican feeds only | ratio vs feeds + pages | ratio vs feeds only |")
    print("|---|---:|---:|---:|---:|---:|")
    for scenario in ours["full"]:
        full, feeds_only = ours["full"][scenario], ours["feeds-only"][scenario]
        other = theirs.get(scenario.removesuffix(", in process"))
        cell = lambda t: f"{t[0]:.3g} ({t[1]:.3g})"  # noqa: E731
        ratios = (f"{other[0] / full[0]:.1f}x | {other[0] / feeds_only[0]:.1f}x" if other else "- | -")
        print(f"| {scenario} | {cell(full)} | {cell(feeds_only)} | {cell(other) if other else '-'} | {ratios} |")
    for variant in VARIANTS:
        wall, cpu, best = ours[variant]["one article edited, in process"]
        print(f"\nin process ({variant}): median of {ROUNDS} rebuilds {wall:.3f} s wall, {cpu:.3f} s CPU; best {best:.3f} s")
    print(f"\nload average after the run: {tuple(round(x, 2) for x in os.getloadavg())}")
    shutil.rmtree(work / "trash", ignore_errors=True)

if __name__ == "__main__":
    main()
