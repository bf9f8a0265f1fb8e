"""Benchmark: import N subscribers from CSV, then stream the due daily ones in batches.

Each phase runs in a fresh process so its peak RSS (ru_maxrss) is its own:
  import      import_csv of an N-row file (confirmed, so every row gets a send time)
  stream      store.iter_due(now, frequency=daily, batch=1000): the design under test
  all-at-once the same query in one batch of everything: the baseline a naive loop would be

    python bench/bench_subscribers.py --sizes 10000 100000 [--postgres URL] [--write bench/results/storage.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from syndicate.storage import create_database, upgrade
from syndicate.subscribers import Frequency, SubscriberDefaults, SubscriberStore, import_csv

T0 = datetime(2026, 6, 1, 0, 0, tzinfo=UTC)
CATEGORIES = [f"category-{i:02d}" for i in range(40)]
ZONES = ["Europe/Paris", "America/New_York", "Asia/Tokyo", "UTC", "Australia/Sydney", "America/Sao_Paulo"]


def write_csv(path: Path, count: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as out:
        out.write("email,name,categories,frequency,timezone,send_hour\n")
        for i in range(count):
            cats = ";".join(rng.sample(CATEGORIES, rng.randint(1, 4)))
            freq = "weekly" if rng.random() < 0.2 else "daily"
            out.write(f"reader{i}@example.org,Reader Nº{i},{cats},{freq},{rng.choice(ZONES)},{rng.randint(0, 23)}\n")


def rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def phase(name: str, url: str, csv_path: Path) -> dict:
    database = create_database(url)
    store = SubscriberStore(database, SubscriberDefaults())
    before = rss_kb()
    started = time.perf_counter()
    if name == "import":
        upgrade(database)
        report = import_csv(store, csv_path, valid_categories=set(CATEGORIES), now=T0, confirmed=True)
        count = report.added
        assert not report.problems, report.problems[:3]
    else:
        batch = 1000 if name == "stream" else 10**9
        count = 0
        for _ in store.iter_due(T0 + timedelta(days=1), frequency=Frequency.DAILY, batch=batch):
            count += 1
    seconds = time.perf_counter() - started
    database.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"phase": name, "count": count, "seconds": round(seconds, 2), "rss_before_mb": round(before / 1024, 1),
            "peak_mb": round(peak / 1024, 1), "growth_mb": round((peak - before) / 1024, 1)}


def child(args: argparse.Namespace) -> None:
    print(json.dumps(phase(args.phase, args.url, Path(args.csv))))


def run_phase(name: str, url: str, csv_path: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", name, "--url", url, "--csv", str(csv_path)],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def pg_schema_url(base: str) -> tuple[str, object]:
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base)
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')

    def drop() -> None:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()

    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False), drop


def bench(sizes: list[int], postgres: str | None) -> list[dict]:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            csv_path = Path(tmp) / f"subscribers-{size}.csv"
            write_csv(csv_path, size)
            backends = [("sqlite", None)] + ([("postgresql", postgres)] if postgres else [])
            for backend, base in backends:
                drop = None
                if backend == "sqlite":
                    url = f"sqlite:///{tmp}/bench-{size}.db"
                else:
                    url, drop = pg_schema_url(base)
                try:
                    for name in ("import", "stream", "all-at-once"):
                        result = {"backend": backend, "size": size, **run_phase(name, url, csv_path)}
                        print(json.dumps(result), file=sys.stderr)
                        results.append(result)
                finally:
                    if drop:
                        drop()
    return results


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, {platform.system()} {platform.release()}"


def table(results: list[dict]) -> str:
    lines = ["| backend | subscribers | phase | rows | seconds | RSS before (MB) | peak RSS (MB) | growth (MB) |",
             "|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['backend']} | {r['size']:,} | {r['phase']} | {r['count']:,} | {r['seconds']} | "
                     f"{r['rss_before_mb']} | {r['peak_mb']} | {r['growth_mb']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--postgres", default=os.environ.get("SYNDICATE_TEST_DATABASE_URL"))
    parser.add_argument("--write", type=Path)
    parser.add_argument("--child")
    parser.add_argument("--url")
    parser.add_argument("--csv")
    args = parser.parse_args()
    if args.child:
        args.phase = args.child
        child(args)
        return
    results = bench(args.sizes, args.postgres)
    report = f"Machine: {machine()}\n\n{table(results)}\n"
    print(report)
    if args.write:
        args.write.write_text(report, encoding="utf-8")


if __name__ == "__main__":
    main()
