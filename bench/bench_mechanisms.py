"""What each kept speed mechanism of the reader and the build earns: the same measurement with it
and without it, each in a fresh process.

    python bench/bench_mechanisms.py [--count 10000] [--repeat 3]

Mechanisms (each turned off by replacing it with the plain way, here only, in the measuring process):
- "collector paused": `syndicate build` and `send` pause the cyclic garbage collector
  (syndicate/cli/_collector.py); without it: the collector on, as Python leaves it.
- "Markdown safe mode": Markdown without a `<` is rendered by cmark's safe mode alone; without
  it: every article through nh3, as Markdown with HTML goes.
- "XML check on the bytes": every Article made from its file checks its text for characters XML
  cannot carry by encoding it and deleting the C0 controls from the bytes; without it: the regex
  of those characters searched in the text. (A faster check in C, memchr / isprintable, was measured
  here in session 10 and removed: 0-2% of a cold read, under 5%.)
- "parallel work": the cold read parses on every core (run_parallel); without it: one process.

Figures: the cold read (no cache), the warm read (the cache from a cold read, one article edited),
a cold `build_site` and a one-article rebuild, each in a fresh process; best of `--repeat`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

MECHANISMS = ["all kept", "collector paused", "Markdown safe mode", "XML check on the bytes", "parallel work"]

CONFIG = """\
[site]
title = "Bench"
base_url = "https://bench.example"
timezone = "UTC"
[content]
folder = "{content}"
cache = "{var}/articles.pickle"
[output]
folder = "{public}"
[logging]
level = "WARNING"
"""


def turn_off(mechanism: str) -> None:
    """Replace `mechanism` with the plain way, in this process."""
    import contextlib

    import syndicate.content._markdown as markdown
    import syndicate.content._text as text
    from syndicate.cli import _collector

    if mechanism == "collector paused":
        _collector.collector_paused = contextlib.nullcontext
    elif mechanism == "Markdown safe mode":
        def through_nh3(source: str) -> str:
            raw = markdown.cmarkgfm.markdown_to_html_with_extensions(
                source, options=markdown.Options.CMARK_OPT_UNSAFE, extensions=markdown._EXTENSIONS)
            return markdown._EMPTY_LINK.sub(markdown._LINK_TEXT, markdown._CLEANER.clean(raw))
        markdown.render_markdown = through_nh3
        import syndicate.content._article as article
        article.render_markdown = through_nh3
    elif mechanism == "XML check on the bytes":
        text._is_xml_safe = lambda value: text._XML_ILLEGAL.search(value) is None


def _cpu() -> float:
    """CPU seconds of this process and of every process it waited for."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure(mechanism: str, kind: str, folder: Path, edit: Path) -> tuple[float, float]:
    """One figure, wall and CPU seconds, in this (fresh) process."""
    turn_off(mechanism)
    from syndicate.cli import _collector
    from syndicate.config import load_settings
    from syndicate.content import ReaderOptions, read_corpus
    from syndicate.site import build_site
    from syndicate.wiring import build_settings, content_source

    options = ReaderOptions(timezone="Europe/Paris")
    workers = 1 if mechanism == "parallel work" else None
    if kind == "cold read":
        with _collector.collector_paused():
            started, cpu = time.perf_counter(), _cpu()
            read_corpus(folder / "content", options, cache=None, workers=workers)
            return time.perf_counter() - started, _cpu() - cpu
    if kind == "warm read":
        edit.write_text(edit.read_text("utf-8").replace("### Description\n\n", f"### Description\n\n{time.time_ns()} "))
        cache = folder / "var-read" / "articles.pickle"
        primed = cache.exists()
        with _collector.collector_paused():
            started, cpu = time.perf_counter(), _cpu()
            corpus = read_corpus(folder / "content", options, cache=cache, workers=workers)
            elapsed = time.perf_counter() - started, _cpu() - cpu
        assert corpus.parsed == 1 or not primed, corpus.parsed
        return elapsed
    settings = load_settings(folder / f"{kind.split()[0]}.toml")
    if kind.startswith("edit"):
        edit.write_text(edit.read_text("utf-8").replace("### Description\n\n", f"### Description\n\n{time.time_ns()} "))
    with _collector.collector_paused():
        started, cpu = time.perf_counter(), _cpu()
        report = build_site(build_settings(settings), content_source(settings), workers=workers)
        elapsed = time.perf_counter() - started, _cpu() - cpu
    assert report.ok, report
    return elapsed


def child(mechanism: str, kind: str, folder: Path, edit: Path) -> tuple[float, float]:
    done = subprocess.run([sys.executable, __file__, "--child", mechanism, kind, str(folder), str(edit)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{mechanism} / {kind} failed:\n{done.stdout}\n{done.stderr[-3000:]}")
    wall, cpu = done.stdout.strip().splitlines()[-1].split()
    return float(wall), float(cpu)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(*measure(sys.argv[2], sys.argv[3], Path(sys.argv[4]), Path(sys.argv[5])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from generate import generate

    with tempfile.TemporaryDirectory(prefix="syndicate-bench-mechanisms-") as tmp:
        folder = Path(tmp)
        paths = generate(folder / "content", args.count)
        edit = paths[len(paths) // 2]
        child("all kept", "warm read", folder, edit)  # writes the read cache (the first warm read is cold)
        results: dict[str, dict[str, dict[str, float]]] = {"wall": {m: {} for m in MECHANISMS},
                                                           "CPU": {m: {} for m in MECHANISMS}}
        kinds = ["cold read", "warm read", "cold build", "edit build"]
        for round_ in range(args.repeat):
            for kind in kinds:
                for mechanism in MECHANISMS:
                    if kind.endswith("build"):
                        name = "cold" if kind == "cold build" else "edit"
                        var, public = folder / f"var-{name}-{mechanism}", folder / f"public-{name}-{mechanism}"
                        if kind == "cold build":  # from nothing: no cache, no output
                            subprocess.run(["rm", "-rf", str(var), str(public)], check=True)
                        (folder / f"{name}.toml").write_text(CONFIG.format(content=folder / "content", var=var, public=public))
                        if kind == "edit build" and not public.exists():
                            child(mechanism, kind, folder, edit)  # untimed: writes the cache and the output
                    wall, cpu = child(mechanism, kind, folder, edit)
                    for measure_name, value in (("wall", wall), ("CPU", cpu)):
                        best = results[measure_name][mechanism].get(kind)
                        results[measure_name][mechanism][kind] = value if best is None else min(best, value)
                    print(json.dumps({"round": round_ + 1, "mechanism": mechanism, "kind": kind, "wall": wall, "cpu": cpu}),
                          file=sys.stderr, flush=True)
    print(f"{args.count} articles; best of {args.repeat}; load average at the end {os.getloadavg()}")
    for measure_name, table in results.items():
        print(f"\n{measure_name} seconds (CPU: this process and every process it waited for); in brackets, the loss without it\n")
        print("| mechanism turned off | " + " | ".join(kinds) + " |")
        print("|---|" + "---:|" * len(kinds))
        kept = table["all kept"]
        for mechanism in MECHANISMS:
            cells = []
            for kind in kinds:
                value = table[mechanism][kind]
                cells.append(f"{value:.3f}" if mechanism == "all kept" else f"{value:.3f} ({value / kept[kind] - 1:+.0%})")
            print(f"| {'none' if mechanism == 'all kept' else mechanism} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
