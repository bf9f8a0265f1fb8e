"""What DKIM signing costs end to end: bench_delivery.py's end-to-end path (DeliveryService.send_manual,
workers, SMTP, outbox) unsigned, RSA 2048 and Ed25519, interleaved rounds on the same database copy.

    smtp-sink -u nobody 127.0.0.1:25252 100 &
    python bench/bench_dkim.py --port 25252 [--subscribers 10000] [--rounds 3] [--write]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_delivery import busy_seconds, child, fill_database, machine, settings_for

from syndicate.mail.dkim import DkimSigner, generate_key
from syndicate.wiring import load_corpus

VARIANTS = ("none", "rsa-sha256", "ed25519-sha256")


def signing_cost(samples: int = 2000) -> dict[str, float]:
    """Microseconds to sign one 20 kB message, per algorithm, in this process (no SMTP)."""
    body = (b"From: a@news.example.org\r\nTo: b@example.org\r\nSubject: x\r\nDate: Mon, 4 Mar 2024 08:00:00 +0000\r\n"
            b"Message-ID: <x@y>\r\n\r\n" + b"A line of a digest, quoted-printable encoded, with links =\r\n" * 350)
    out = {}
    for algorithm in VARIANTS[1:]:
        signer = DkimSigner("news.example.org", "s", generate_key(algorithm)[0], algorithm)
        started = time.perf_counter()
        for _ in range(samples):
            signer.sign(body)
        out[algorithm] = (time.perf_counter() - started) / samples * 1e6
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--articles", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="write bench/results/dkim.md")
    args = parser.parse_args()
    load_at_start = os.getloadavg()
    busy_at_start, own_at_start = busy_seconds()
    started = time.monotonic()
    from generate import generate

    results: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="syndicate-bench-dkim-") as tmp:
        folder = Path(tmp)
        generate(folder / "content", args.articles)
        load_corpus(settings_for(folder, 0, args.port))
        fill_database(folder, args.subscribers, args.port)
        database = Path(settings_for(folder, args.subscribers, args.port).database.url.removeprefix("sqlite:///"))
        template = folder / "template.db"
        shutil.copy(database, template)
        for variant in VARIANTS[1:]:
            settings_for(folder, 0, args.port, variant)  # make the key once, outside the timed runs
        for _ in range(args.rounds):
            for variant in VARIANTS:
                shutil.copy(template, database)
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                result = child("e2e", str(folder), str(args.subscribers), str(args.port), variant)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                # CPU of the run and its worker processes (all reaped): what load on the machine does not inflate
                result["cpu_ms_per_msg"] = 1000 * ((after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)) / result["messages"]
                print(json.dumps(result), file=sys.stderr)
                results[variant].append(result)
    busy_at_end, own_at_end = busy_seconds()
    cost = signing_cost()
    base = statistics.median(r["msgs_per_s"] for r in results["none"])
    base_cpu = statistics.median(r["cpu_ms_per_msg"] for r in results["none"])
    rows = ["| variant | runs (msgs/s) | median msgs/s | vs unsigned | CPU ms per message (median) | vs unsigned, by CPU | "
            "sign one 20 kB message |", "|---|---|---:|---:|---:|---:|---:|"]
    for variant in VARIANTS:
        speeds = [r["msgs_per_s"] for r in results[variant]]
        median = statistics.median(speeds)
        cpu = statistics.median(r["cpu_ms_per_msg"] for r in results[variant])
        rows.append(f"| {'unsigned' if variant == 'none' else variant} | {', '.join(f'{s:,.0f}' for s in speeds)} | "
                    f"{median:,.0f} | {median / base:.2f} | {cpu:.2f} | {base_cpu / cpu:.2f} | "
                    f"{'-' if variant == 'none' else f'{cost[variant]:.0f} us'} |")
    wall = (time.monotonic() - started) * (os.cpu_count() or 1)
    text = "\n".join([
        "# DKIM signing end to end (bench_delivery.py's end-to-end path)", "",
        f"Command: `python bench/bench_dkim.py {' '.join(sys.argv[1:])}`", f"Machine: {machine(load_at_start)}",
        f"CPU while it ran: {busy_at_end - busy_at_start:.0f} s of {wall:.0f} s available; the benchmark's processes "
        f"{own_at_end - own_at_start:.0f} s.",
        f"{args.subscribers:,} subscribers, {args.articles:,} generated articles; rounds interleaved (unsigned, RSA, Ed25519) "
        "on a fresh copy of the same database; RSA key 2048 bits; c=relaxed/simple (the default).", "", *rows, "",
    ])
    print(text)
    if args.write:
        (ROOT / "bench" / "results" / "dkim.md").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
