"""Benchmark: reading 10,000 export-format articles cold, then warm with one file changed.

    python bench/bench_read.py [--count 10000] [--workers N]

Cold: no cache, every file parsed (Markdown by cmarkgfm, sanitised by nh3).
Warm: the cache from the cold run, one article edited; only it is parsed.
Each read runs with the cyclic garbage collector paused, as `syndicate build` reads.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from generate import generate

from syndicate.cli._collector import collector_paused
from syndicate.content import ReaderOptions, read_corpus


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="syndicate-bench-read-"))
    try:
        content, cache = work / "content", work / "var" / "articles.pickle"
        paths = generate(content, args.count)
        options = ReaderOptions(timezone="Europe/Paris")
        started = time.perf_counter()
        with collector_paused():
            cold = read_corpus(content, options, cache=cache, workers=args.workers)
        cold_s = time.perf_counter() - started
        serial_started = time.perf_counter()
        with collector_paused():
            serial = read_corpus(content, options, cache=None, workers=1)
        serial_s = time.perf_counter() - serial_started
        edited = paths[len(paths) // 2]
        edited.write_text(edited.read_text().replace("### Description\n\n", "### Description\n\nEdited. "))
        started = time.perf_counter()
        with collector_paused():
            warm = read_corpus(content, options, cache=cache, workers=args.workers)
        warm_s = time.perf_counter() - started
        assert len(cold.articles) == len(warm.articles) == len(serial.articles) == args.count, "articles lost"
        assert warm.parsed == 1 and not warm.problems
        print(f"machine: {os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}, {platform.system()} {platform.release()}")
        print(f"articles: {args.count}, cache: {cache.stat().st_size / 1e6:.1f} MB")
        print(f"cold read (both cores): {cold_s:.2f} s ({args.count / cold_s:,.0f} articles/s)")
        print(f"cold read (one core):   {serial_s:.2f} s")
        print(f"warm read (1 changed):  {warm_s:.3f} s")
        print(f"ratio cold/warm: {cold_s / warm_s:.1f}x (target >= 20x); one core: {serial_s / warm_s:.1f}x")
        print(f"load average after the run: {os.getloadavg()}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
