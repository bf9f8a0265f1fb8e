"""Runs every benchmark and writes the generated part of bench/RESULTS.md (what `make bench` runs).

    python bench/run.py [--baseline DIR] [--quick] [--repeat N] [--only read,build,...] [--no-write]

Each benchmark runs as its own process with this interpreter, from this checkout. With
`--baseline DIR` (a checkout of the code before a change, with its own virtual environment in
DIR/.venv), each benchmark that DIR also has runs there too, in the same run, the two sides
taking turns (`--repeat` rounds, the first side alternating); the table gives each side's best
round and their ratio. `--quick` uses reduced sizes, the same for both sides.

The curated text of bench/RESULTS.md is kept; only what lies between the two markers below is
replaced. Benchmarks whose tools are missing (smtp-sink for delivery, DKIM and the workers, wrk and
nginx for HTTP, PostgreSQL for the workers) are reported as skipped, with the reason; without
PostgreSQL the subscriber store's benchmark measures SQLite alone. The benchmarks of the later issues
(workers, dkim, watch, mechanisms) compare within their own run and are recorded as they print.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
BEGIN = "<!-- bench/run.py: generated from here to the end marker; edit the text above it -->"
END = "<!-- bench/run.py: end of the generated part -->"

# A figure: (name, value, "time" (lower is better) or "rate" (higher is better), unit).
Figure = tuple[str, float, str, str]
CPU_FIGURE = "CPU seconds of the whole benchmark (every process)"


@dataclass
class Bench:
    name: str
    script: str
    full: list[str]
    quick: list[str]
    parse: Callable[[str, str], list[Figure]]
    recorded: bool  # one of the benchmarks the results compare before and after a change
    needs: Callable[[], str | None] = lambda: None  # why it cannot run here, or None
    baseline_args: list[str] = field(default_factory=list)  # added on the baseline side only
    # added on this side only, given the baseline's checkout; a benchmark with them runs only against a baseline
    new_args: Callable[[Path], list[str]] | None = None


def _seconds(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    if match is None:
        raise ValueError(f"figure not found: {pattern!r}")
    return float(match.group(1))


def parse_read(out: str, err: str) -> list[Figure]:
    return [
        ("cold read, both cores", _seconds(r"cold read \(both cores\):\s+([\d.]+) s", out), "time", "s"),
        ("cold read, one core", _seconds(r"cold read \(one core\):\s+([\d.]+) s", out), "time", "s"),
        ("warm read, 1 changed", _seconds(r"warm read \(1 changed\):\s+([\d.]+) s", out), "time", "s"),
    ]


def parse_build(out: str, err: str) -> list[Figure]:
    figures: list[Figure] = []
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or not re.match(r"[\d.]+ \(", cells[1]):
            continue
        scenario = cells[0]
        figures.append((f"{scenario}, feeds + pages", float(cells[1].split()[0]), "time", "s"))
        figures.append((f"{scenario}, feeds only", float(cells[2].split()[0]), "time", "s"))
        if cells[3] != "-":
            figures.append((f"{scenario}, Pelican", float(cells[3].split()[0]), "time", "s"))
    if not figures:
        raise ValueError("no table in bench_build's output")
    return figures


def _json_lines(err: str) -> list[dict]:
    found = []
    for line in err.splitlines():
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except ValueError:
                pass
    return found


def parse_digest(out: str, err: str) -> list[Figure]:
    return [(f"{r['mode']} path, {r['inliner']}, {r['subscribers']:,} subscribers", r["msgs_per_s"], "rate", "msgs/s")
            for r in _json_lines(err)]


def parse_delivery(out: str, err: str) -> list[Figure]:
    figures: list[Figure] = []
    for r in _json_lines(err):
        figures.append((f"{r['path']}, {r['subscribers']:,}", r["msgs_per_s"], "rate", "msgs/s"))
        if r["path"] == "end to end":
            figures.append((f"{r['path']}, {r['subscribers']:,}: peak PSS (sum)", r["pss_peak_mb"], "time", "MB"))
    return figures


def parse_plan(out: str, err: str) -> list[Figure]:
    runs = re.findall(r"subscribers=(\d+) deliveries=\d+ plan_s=([\d.]+)", out)
    best: dict[str, float] = {}
    for count, seconds in runs:
        best[count] = min(best.get(count, float("inf")), float(seconds))
    return [(f"planning {int(count):,} subscribers (best of the repeats)", s, "time", "s") for count, s in best.items()]


def parse_table(out: str, err: str) -> list[Figure]:
    return []  # recorded as printed (see Run.printed)


def _tool(*names: str) -> Callable[[], str | None]:
    def missing() -> str | None:
        absent = [n for n in names if shutil.which(n) is None and not Path("/usr/sbin", n).exists()]
        return f"needs {', '.join(absent)} (not installed)" if absent else None
    return missing


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _postgres() -> str | None:
    if os.environ.get("SYNDICATE_TEST_DATABASE_URL"):
        return None
    return "needs PostgreSQL: its URL in SYNDICATE_TEST_DATABASE_URL (`make bench` sets the local one)"


def _every(*checks: Callable[[], str | None]) -> Callable[[], str | None]:
    def missing() -> str | None:
        return next((why for why in (check() for check in checks) if why is not None), None)
    return missing


BENCHES = [
    # build first: a cold build creating 20,000 files within minutes of a mass deletion (another
    # benchmark's clean-up) is charged several seconds of system time by ext4's inode allocator
    Bench("build", "bench_build.py", ["--count", "10000"], ["--count", "10000"], parse_build, True,
          baseline_args=["--skip-pelican"]),  # Pelican's figure does not depend on our code: measured once
    # the same, this code building the baseline's page templates: the pages of the two sides then
    # hold the same bytes, and the ratio is the code's alone (the pages gained content since)
    Bench("build-same-pages", "bench_build.py", ["--count", "10000", "--skip-pelican"], ["--count", "10000", "--skip-pelican"],
          parse_build, True, new_args=lambda baseline: ["--templates", str(baseline / "templates" / "site")]),
    Bench("read", "bench_read.py", ["--count", "10000"], ["--count", "10000"], parse_read, True),
    Bench("digest", "bench_digest.py", ["--subscribers", "100000", "--naive-sample", "2000", "--articles", "6000"],
          ["--subscribers", "20000", "--naive-sample", "500", "--articles", "2000"], parse_digest, True),
    Bench("delivery", "bench_delivery.py", ["--subscribers", "10000,100000", "--raw", "20000", "--naive", "300"],
          ["--subscribers", "10000,30000", "--raw", "10000", "--naive", "200"], parse_delivery, True,
          needs=_tool("smtp-sink")),
    Bench("plan", "bench_plan.py", ["--subscribers", "20000,100000", "--repeat", "3"],
          ["--subscribers", "20000", "--repeat", "3"], parse_plan, False),
    Bench("subscribers", "bench_subscribers.py", ["--sizes", "10000", "100000"], ["--sizes", "10000"], parse_table, False),
    Bench("http", "bench_http.py", ["--duration", "10"], ["--duration", "5"], parse_table, False, needs=_tool("wrk", "nginx")),
    # the benchmarks of later issues, recorded as printed: each compares within its own run (no baseline)
    Bench("workers", "bench_workers.py", [],
          ["--digests", "4000", "--workers", "1,2", "--cpu-digests", "3000", "--cpu-runs", "1", "--kill-digests", "3000"],
          parse_table, False, needs=_every(_tool("smtp-sink"), _postgres)),
    Bench("dkim", "bench_dkim.py", [], ["--subscribers", "2000", "--rounds", "1"], parse_table, False, needs=_tool("smtp-sink")),
    Bench("watch", "bench_watch.py", [], ["--count", "2000", "--edits", "5"], parse_table, False),
    Bench("mechanisms", "bench_mechanisms.py", [], ["--count", "2000", "--repeat", "1"], parse_table, False),
]


@dataclass
class Run:
    side: str
    figures: list[Figure]
    seconds: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    printed: str
    command: str


def run_one(bench: Bench, checkout: Path, python: Path, args: list[str], side: str, work: Path, round_: int = 0) -> Run:
    """One benchmark, once, on one side; raises SystemExit with its output if it fails."""
    args = list(args)
    sink = None
    if bench.name in ("delivery", "dkim"):
        port = _free_port()
        sink = subprocess.Popen([shutil.which("smtp-sink") or "/usr/sbin/smtp-sink", "-u", "nobody", f"127.0.0.1:{port}", "100"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        args += ["--port", str(port)]
    if bench.name.startswith("build"):
        # A folder of its own for each run, deleted only at the end: a cold build that creates
        # 20,000 files within minutes of the deletion of as many (the last run's) is several
        # times slower on ext4, which would charge one side's clean-up to the other's figure.
        args += ["--work", str(work / f"{bench.name}-{side}-{round_}")]
    if bench.name == "watch":
        args += ["--work", str(work / f"watch-{side}")]
    if bench.name == "workers":
        args += ["--database-url", os.environ["SYNDICATE_TEST_DATABASE_URL"]]
    if bench.name == "plan":
        args += ["--folder", str(work / f"plan-{side}")]
    if bench.name == "subscribers" and os.environ.get("SYNDICATE_TEST_DATABASE_URL"):
        args += ["--postgres", os.environ["SYNDICATE_TEST_DATABASE_URL"]]
    command = [str(python), str(checkout / "bench" / bench.script), *args]
    load_before = os.getloadavg()
    started, cpu_before = time.perf_counter(), _children_cpu()
    try:
        done = subprocess.run(command, cwd=checkout, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(checkout)})
    finally:
        if sink is not None:
            sink.terminate()
            sink.wait()
    seconds, cpu = time.perf_counter() - started, _children_cpu() - cpu_before
    if done.returncode != 0:
        raise SystemExit(f"{bench.name} ({side}) failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    shown = " ".join(["python", f"bench/{bench.script}", *(a if not a.startswith(str(work)) else "DIR" for a in args)])
    shown = re.sub(r"--port \d+", "--port PORT", shown)
    shown = re.sub(r"--database-url \S+", "--database-url URL", shown)  # a URL may hold a password
    figures = [*bench.parse(done.stdout, done.stderr), (CPU_FIGURE, cpu, "time", "s")]
    return Run(side, figures, seconds, load_before, os.getloadavg(), done.stdout, shown)


def _children_cpu() -> float:
    """CPU seconds of every finished process this one waited for (and theirs, recursively)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def best(runs: list[Run]) -> dict[str, Figure]:
    """Each figure's best value over the rounds (lowest time, highest rate)."""
    chosen: dict[str, Figure] = {}
    for run in runs:
        for figure in run.figures:
            name, value, kind, _ = figure
            known = chosen.get(name)
            if known is None or (value < known[1] if kind == "time" else value > known[1]):
                chosen[name] = figure
    return chosen


def round_ratios(new_runs: list[Run], old_runs: list[Run], name: str) -> list[float]:
    """The figure's ratio (new time over old time) in each round: the two sides ran one right after the other."""
    ratios = []
    for new_run, old_run in zip(new_runs, old_runs):
        new = next((f for f in new_run.figures if f[0] == name), None)
        old = next((f for f in old_run.figures if f[0] == name), None)
        if new is not None and old is not None and new[1] and old[1]:
            ratios.append(new[1] / old[1] if new[2] == "time" else old[1] / new[1])
    return ratios


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "?")
    return f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, {platform.system()} {platform.release()}"


def _load(load: tuple[float, ...]) -> str:
    return ", ".join(f"{x:.2f}" for x in load)


def _fmt(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value:.3g} s"
    return f"{value:,.0f} {unit}"


def report(results: dict[str, dict[str, list[Run]]], skipped: dict[str, str], args: argparse.Namespace,
           started: datetime, load_at_start: tuple[float, ...]) -> str:
    lines = [
        BEGIN, "",
        f"## Generated by `make bench` ({started:%Y-%m-%d %H:%M} UTC)", "",
        f"Command: `python bench/run.py {' '.join(args.argv)}`".replace("  ", " "),
        f"Machine: {machine()}. Load average at the start {_load(load_at_start)}, at the end {_load(os.getloadavg())}; "
        "the machine is shared with other work, so each row also gives the load around its runs.",
    ]
    if args.quick:
        lines.append("Sizes: reduced (`--quick`), the same for both sides; each benchmark's command is shown.")
    if args.baseline:
        lines += [
            f"Baseline: the code before the change (`{args.baseline_name}`), run from its own checkout and virtual "
            f"environment in the same run, the two sides taking turns over {args.repeat} round(s) (the first side "
            "alternating); each figure is the side's best round. Ratio: the new code's time over the old code's "
            "(for a rate, the old rate over the new), so above 1 is slower; the target is within 10% (<= 1.10). "
            "The two sides of a round run one right after the other, so each round's ratio is also given, and "
            "their median decides \"within 10%\": on a machine whose speed moves by 10-25% from minute to "
            "minute, the best rounds of the two sides may come from different minutes. "
            "The last row of each table is the CPU time of the whole benchmark run (setup included, every process "
            "it started), which the other work on a shared machine disturbs far less than the wall-clock figures.",
        ]
    for name, sides in results.items():
        new_runs = sides.get("new", [])
        if not new_runs:
            continue
        lines += ["", f"### {name}", "", f"    {new_runs[0].command}", ""]
        loads = [f"{_load(r.load_before)} -> {_load(r.load_after)}" for side in sides.values() for r in side]
        lines.append(f"Load average around its runs: {'; '.join(loads)}.")
        lines.append("")
        new = best(new_runs)
        old = best(sides.get("old", []))
        if old:
            lines += ["| figure | before | after | ratio of the best (time after/before) | each round's ratio | median | within 10%? |",
                      "|---|---:|---:|---:|---|---:|---|"]
            for figure_name, (_, value, kind, unit) in new.items():
                before = old.get(figure_name)
                if before is None:
                    lines.append(f"| {figure_name} | - | {_fmt(value, unit)} | - | - | - | - |")
                    continue
                ratio = value / before[1] if kind == "time" else before[1] / value
                rounds = round_ratios(new_runs, sides.get("old", []), figure_name) or [ratio]
                middle = statistics.median(rounds)
                lines.append(f"| {figure_name} | {_fmt(before[1], unit)} | {_fmt(value, unit)} | {ratio:.2f} | "
                             f"{', '.join(f'{r:.2f}' for r in rounds)} | {middle:.2f} | {'yes' if middle <= 1.10 else 'no'} |")
        else:
            lines += ["| figure | value |", "|---|---:|"]
            lines += [f"| {n} | {_fmt(v, u)} |" for n, (_, v, _, u) in new.items()]
            if len(new) == 1:  # only the CPU row: the benchmark's own figures are in its output
                lines += ["", "Its output:", "", *("    " + line for line in new_runs[-1].printed.strip().splitlines())]
    for name, why in skipped.items():
        lines += ["", f"### {name}", "", f"Skipped: {why}."]
    lines += ["", END, ""]
    return "\n".join(lines)


def write(text: str) -> None:
    current = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
    if BEGIN in current and END in current:
        head, rest = current.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        current = head.rstrip("\n") + "\n\n" + text + tail
    else:
        current = current.rstrip("\n") + "\n\n" + text
    RESULTS.write_text(current, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="a checkout of the code before the change, with DIR/.venv")
    parser.add_argument("--quick", action="store_true", help="reduced sizes, the same for both sides")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of each benchmark on each side")
    parser.add_argument("--only", default="", help="comma-separated benchmark names (default: all)")
    parser.add_argument("--no-write", action="store_true", help="print the generated part; leave RESULTS.md alone")
    args = parser.parse_args()
    args.argv = sys.argv[1:]
    if args.baseline is not None:
        args.baseline = args.baseline.resolve()
        described = subprocess.run(["git", "-C", str(args.baseline), "log", "-1", "--format=%h %s"],
                                   capture_output=True, text=True).stdout.strip()
        args.baseline_name = described[:80] or args.baseline.name
        args.argv = [a if Path(a).resolve() != args.baseline else "OLD_CHECKOUT" for a in args.argv]
    wanted = {n for n in args.only.split(",") if n}
    started, load_at_start = datetime.now(UTC), os.getloadavg()
    results: dict[str, dict[str, list[Run]]] = {}
    skipped: dict[str, str] = {}
    repo = HERE.parent
    with tempfile.TemporaryDirectory(prefix="syndicate-bench-") as tmp:
        work = Path(tmp)
        for bench in BENCHES:
            if wanted and bench.name not in wanted:
                continue
            why = bench.needs()
            if why is not None:
                skipped[bench.name] = why
                print(f"{bench.name}: skipped, {why}", file=sys.stderr)
                continue
            if bench.new_args is not None and (args.baseline is None or not (args.baseline / "templates" / "site").is_dir()):
                continue  # a comparison with a baseline that keeps its page templates in templates/site only
            sides = [("new", repo, Path(sys.executable), bench.new_args(args.baseline) if bench.new_args else [])]
            if args.baseline is not None and bench.recorded and (args.baseline / "bench" / bench.script).exists():
                sides.append(("old", args.baseline, args.baseline / ".venv" / "bin" / "python", bench.baseline_args))
            runs: dict[str, list[Run]] = {side: [] for side, *_ in sides}
            for round_ in range(args.repeat if len(sides) > 1 else 1):
                order = sides if round_ % 2 else list(reversed(sides))  # the old code first in the first round
                for side, checkout, python, extra in order:
                    sizes = bench.quick if args.quick else bench.full
                    if (round_ > 0 or args.quick) and side == "new" and bench.name == "build":
                        extra = [*extra, "--skip-pelican"]  # Pelican once is enough (and not at all when quick)
                    run = run_one(bench, checkout, python, [*sizes, *extra], side, work, round_)
                    if args.baseline is not None:  # the baseline's own checkout, by name (no path of this machine)
                        run.command = run.command.replace(str(args.baseline), "OLD_CHECKOUT")
                    if bench.name == "build" and "--skip-pelican" not in [*sizes, *extra]:  # its CPU time includes Pelican's
                        run.figures = [f for f in run.figures if f[0] != CPU_FIGURE]
                    runs[side].append(run)
                    print(f"{bench.name} ({side}, round {round_ + 1}): {run.seconds:.0f} s, load {_load(run.load_after)}: "
                          + "; ".join(f"{n} {_fmt(v, u)}" for n, v, _, u in run.figures), file=sys.stderr, flush=True)
            results[bench.name] = runs
    text = report(results, skipped, args, started, load_at_start)
    print(text)
    if not args.no_write:
        write(text)


if __name__ == "__main__":
    main()
