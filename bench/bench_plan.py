"""Planning alone: DeliveryService.plan_manual(SendRequest(), NOW) over N subscribers in SQLite.

    python bench/bench_plan.py --folder /tmp/plan-bench [--subscribers 20000,100000] [--repeat 3]

Uses bench_delivery's settings, subscribers and clock; 2,000 generated articles (read once to warm
the article cache). Every repeat starts from a copy of the same freshly filled database and prints
the wall and CPU seconds of planning and a checksum of the recorded deliveries (the same checksum
before and after a change means the same rows were planned).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sqlite3
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_delivery import NOW, SECRET, fill_database, settings_for
from generate import generate

from syndicate.cli._collector import collector_paused
from syndicate.delivery import DeliveryService, SendRequest
from syndicate.storage import create_database
from syndicate.wiring import content_source, delivery_config, load_corpus

PORT = 25252  # never connected to: planning sends nothing


def plan_once(folder: Path, count: int) -> tuple[float, float, int, str]:
    database_file = folder / f"subscribers-{count}.db"
    for suffix in ("", "-wal", "-shm"):  # a previous run's WAL must not meet the fresh copy
        Path(f"{database_file}{suffix}").unlink(missing_ok=True)
    shutil.copy(folder / f"filled-{count}.db", database_file)
    settings = settings_for(folder, count, PORT)
    load_corpus(settings)  # the article cache is warm in a real run too
    database = create_database(settings.database.url)
    service = DeliveryService(delivery_config(settings), database, content_source(settings))
    wall, cpu = time.perf_counter(), time.process_time()
    with collector_paused():  # as `syndicate send` runs it
        run = service.plan_manual(SendRequest(), NOW)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    database.close()
    with sqlite3.connect(database_file) as connection:
        rows = connection.execute("SELECT * FROM deliveries ORDER BY id").fetchall()
    return wall, cpu, run.total, hashlib.sha256(repr(rows).encode()).hexdigest()[:16]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--subscribers", default="20000")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.environ["SYNDICATE_SECRET"] = SECRET
    args.folder.mkdir(parents=True, exist_ok=True)
    if not (args.folder / "content").exists():
        generate(args.folder / "content", 2000)
    for count in [int(c) for c in args.subscribers.split(",")]:
        filled = args.folder / f"filled-{count}.db"
        if not filled.exists():
            fill_database(args.folder, count, PORT)
            shutil.move(args.folder / f"subscribers-{count}.db", filled)
        for _ in range(args.repeat):
            wall, cpu, total, checksum = plan_once(args.folder, count)
            print(f"subscribers={count} deliveries={total} plan_s={wall:.2f} cpu_s={cpu:.2f} "
                  f"load={os.getloadavg()[0]:.2f} checksum={checksum}", flush=True)


if __name__ == "__main__":
    main()
