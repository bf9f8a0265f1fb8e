"""Paired runs of the digest and delivery benchmarks: this checkout and a baseline one, one right after the other.

    python bench/paired.py --baseline DIR [--pairs 5] [--only digest,delivery] [--port PORT]

On a machine whose speed moves by 10-25% from minute to minute, the best round of each side
(bench/run.py) does not settle whether two codes are within 10% of each other. Here each pair runs
the same measurement on both sides back to back (the first side alternating), and the table gives
every pair's ratio (new time over old time) and their median.

- digest: `bench_digest.measure(folder, "fast", "css-inline", 100000)`, each side on its own copy of
  the same generated corpus (6,000 articles), read once through that side's article cache;
- delivery: `bench_delivery`'s "end to end, 100,000" child (DeliveryService.send_manual into Postfix's
  smtp-sink), each run on a fresh copy of that side's SQLite file of 100,000 subscribers.

DIR is a checkout of the code before a change with its own virtual environment in DIR/.venv.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

_PREPARE_DIGEST = """
import sys
from pathlib import Path
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/bench"]
import bench_digest
from generate import generate
folder = Path(sys.argv[2])
generate(folder / "content", 6000)
bench_digest.load_corpus(bench_digest.settings_for(folder))
"""

_DIGEST = """
import json, sys
from pathlib import Path
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/bench"]
import bench_digest
print(json.dumps(bench_digest.measure(Path(sys.argv[2]), "fast", "css-inline", 100000)))
"""

_PREPARE_DELIVERY = """
import shutil, sys
from pathlib import Path
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/bench"]
import bench_delivery
from generate import generate
folder, port = Path(sys.argv[2]), int(sys.argv[3])
generate(folder / "content", 2000)
bench_delivery.load_corpus(bench_delivery.settings_for(folder, 0, port))
bench_delivery.fill_database(folder, 100000, port)
shutil.copy(folder / "subscribers-100000.db", folder / "pristine.db")
"""

_DELIVERY = """
import json, shutil, sys
from pathlib import Path
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/bench"]
folder, port = Path(sys.argv[2]), sys.argv[3]
for suffix in ("", "-wal", "-shm"):
    (folder / f"subscribers-100000.db{suffix}").unlink(missing_ok=True)
shutil.copy(folder / "pristine.db", folder / "subscribers-100000.db")
import bench_delivery
print(json.dumps(bench_delivery.child("e2e", str(folder), "100000", port)))
"""


def _run(checkout: Path, code: str, *args: str) -> dict | None:
    done = subprocess.run([str(checkout / ".venv" / "bin" / "python"), "-c", code, str(checkout), *args],
                          cwd=checkout, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(checkout)})
    if done.returncode != 0:
        raise SystemExit(f"{checkout.name}: failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True, help="checkout of the code before (with DIR/.venv)")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--only", default="digest,delivery")
    args = parser.parse_args()
    sides = {"new": ROOT, "old": args.baseline.resolve()}
    wanted = args.only.split(",")
    sink_path = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    if "delivery" in wanted and not Path(sink_path).exists():
        raise SystemExit("delivery needs Postfix's smtp-sink (Debian package postfix)")
    port = _free_port()
    sink = subprocess.Popen([sink_path, "-u", "nobody", f"127.0.0.1:{port}", "100"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) if "delivery" in wanted else None
    rows: list[str] = []
    try:
        time.sleep(0.5)
        with tempfile.TemporaryDirectory(prefix="syndicate-paired-") as tmp:
            for name in wanted:
                folders = {side: Path(tmp) / f"{name}-{side}" for side in sides}
                for side, checkout in sides.items():
                    if name == "digest":
                        _run(checkout, _PREPARE_DIGEST, str(folders[side]))
                    else:
                        _run(checkout, _PREPARE_DELIVERY, str(folders[side]), str(port))
                ratios, pss = [], []
                for pair in range(args.pairs):
                    order = ["new", "old"] if pair % 2 == 0 else ["old", "new"]
                    got: dict[str, dict] = {}
                    for side in order:
                        code = _DIGEST if name == "digest" else _DELIVERY
                        extra = [] if name == "digest" else [str(port)]
                        got[side] = _run(sides[side], code, str(folders[side]), *extra) or {}
                    ratio = got["old"]["msgs_per_s"] / got["new"]["msgs_per_s"]
                    ratios.append(ratio)
                    line = (f"{name} pair {pair + 1}: new {got['new']['msgs_per_s']:,.0f} msgs/s, old "
                            f"{got['old']['msgs_per_s']:,.0f} msgs/s, ratio {ratio:.3f}, load {os.getloadavg()[0]:.2f}")
                    if name == "delivery":
                        pss.append(got["new"]["pss_peak_mb"] / got["old"]["pss_peak_mb"])
                        line += f", peak PSS {got['new']['pss_peak_mb']:.1f} / {got['old']['pss_peak_mb']:.1f} MB"
                    print(line, file=sys.stderr, flush=True)
                figure = "fast path, css-inline, 100,000 subscribers" if name == "digest" else "end to end, 100,000"
                rows.append(f"| {name}: {figure} | {', '.join(f'{r:.3f}' for r in ratios)} | {statistics.median(ratios):.2f} |")
                if pss:
                    rows.append(f"| {name}: {figure}, peak PSS (sum) | {', '.join(f'{r:.3f}' for r in pss)} | "
                                f"{statistics.median(pss):.2f} |")
    finally:
        if sink is not None:
            sink.terminate()
            sink.wait()
    print(f"Command: `python bench/paired.py --baseline OLD --pairs {args.pairs} --only {args.only}`")
    print("\n| figure | pairs (new time / old time; PSS new / old) | median |\n|---|---|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
