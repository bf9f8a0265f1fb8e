"""The stdlib copies removed in #11, each against what replaced it: CPU microseconds a call.

    git worktree add --detach OLD dacb121      # the last commit that still has the copies
    PYTHONPATH=OLD python bench/bench_copies.py

Each copy (from the code on PYTHONPATH) and its replacement (the stdlib or itsdangerous, as the
code now calls it) runs in this process, CPU time (time.process_time, not disturbed by the other
work of a shared machine), best of 5 batches. How often each runs, for the share of the work it
saved: `wrap` once per distinct list of followed categories in a digest run (the renderer keeps
4,096), the address quoting twice a message (MAIL FROM, RCPT TO), link signing twice a message
(unsubscribe and preferences links), the date parsing once per export-format article read.
"""

from __future__ import annotations

import hashlib
import os
import smtplib
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

from itsdangerous import URLSafeTimedSerializer

sys.path.insert(0, str(Path(__file__).resolve().parent))


def cpu_us(call, n: int) -> float:
    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        for _ in range(n):
            call()
        best = min(best, (time.process_time() - started) / n)
    return best * 1e6


def main() -> None:
    from syndicate.content._article import _parse_date
    from syndicate.digest._render import wrap
    from syndicate.mail.smtp import angle_address
    from syndicate.subscribers._tokens import LinkSigner, _ClockSigner

    sentence = "You get this digest because you follow City Council, Science, Harbour News, Sport and Weather Today."
    address = "reader12345@example.org"
    now = datetime(2026, 3, 1, tzinfo=UTC)
    signer = LinkSigner("bench-secret-for-signed-links")
    serializer = URLSafeTimedSerializer(  # as LinkSigner now keeps one per purpose and clock
        ["bench-secret-for-signed-links"], salt="syndicate.link.unsubscribe", signer=_ClockSigner,
        signer_kwargs={"clock": now.timestamp(), "digest_method": hashlib.sha256})
    rows = [
        ("render.wrap vs textwrap.fill", lambda: wrap(sentence, 72), lambda: textwrap.fill(sentence, 72), 5000),
        ("angle_address vs smtplib.quoteaddr", lambda: angle_address(address), lambda: smtplib.quoteaddr(address), 20000),
        ("LinkSigner.make's HMAC vs URLSafeTimedSerializer.dumps", lambda: signer.make("unsubscribe", 12345, now=now),
         lambda: serializer.dumps(["unsubscribe", 12345, signer._key_id]), 5000),
        ("_parse_date vs datetime.strptime", lambda: _parse_date("03/05/2021", "%m/%d/%Y"),
         lambda: datetime.strptime("03/05/2021", "%m/%d/%Y"), 20000),
    ]
    print("| copy vs replacement | copy (us) | replacement (us) | difference (us a call) |")
    print("|---|---:|---:|---:|")
    for name, copy, replacement, n in rows:
        a, b = cpu_us(copy, n), cpu_us(replacement, n)
        print(f"| {name} | {a:.2f} | {b:.2f} | {b - a:+.2f} |")
    # bench_digest imports this checkout's code: counted in a process without PYTHONPATH
    count_lists = ("from bench_digest import subscribers\n"
                   "for n in (20_000, 100_000):\n"
                   "    people = subscribers(n, [f'c{i}' for i in range(40)])\n"
                   "    print(f'{n:,} subscribers (bench_digest mix): {len({tuple(p.categories) for p in people}):,} "
                   "distinct lists of followed categories')\n")
    here = Path(__file__).resolve().parent
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", count_lists], cwd=here, env={**env, "PYTHONPATH": f"{here.parent}:{here}"},
                          capture_output=True, text=True, check=True)
    print("\n" + done.stdout.strip())


if __name__ == "__main__":
    main()
