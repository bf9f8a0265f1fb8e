"""Benchmarks the SMTP backend against the raw pipe: one pre-built 36 KB message over 4 connections to a sink.

    python bench/mail_smtp.py --port 2525 --count 20000

Start the sink first, e.g. Postfix's `smtp-sink -u nobody 127.0.0.1:2525 100`. The raw pipe
is plain smtplib.sendmail over 4 threads, one connection each, never reconnecting; the
backend is SmtpBackend with 4 connections and its default max_per_connection (500).
"""

from __future__ import annotations

import argparse
import resource
import smtplib
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from syndicate.config import SmtpSettings
from syndicate.mail import OutgoingMessage, SmtpBackend

SENDER = "digest@news.test"


def build_message(size: int = 36 * 1024) -> bytes:
    head = (
        f"From: Syndicate <{SENDER}>\r\nTo: reader@example.org\r\nSubject: Your digest\r\n"
        "Message-ID: <bench@news.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    )
    line = "<p>council river budget tram science market festival harbour drone battery reef</p>\r\n"
    return (head + line * (size // len(line))).encode()


def raw_pipe(port: int, data: bytes, count: int, connections: int) -> float:
    def worker(share: int) -> None:
        smtp = smtplib.SMTP("127.0.0.1", port, "bench.test")
        for number in range(share):
            smtp.sendmail(SENDER, [f"reader{number}@example.org"], data)
        smtp.quit()

    threads = [threading.Thread(target=worker, args=(count // connections,)) for _ in range(connections)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return (count // connections * connections) / (time.perf_counter() - started)


def backend_pipe(port: int, data: bytes, count: int, connections: int) -> tuple[float, int]:
    def messages() -> Iterator[OutgoingMessage]:
        for number in range(count):
            yield OutgoingMessage(f"d{number}", SENDER, (f"reader{number}@example.org",), data, f"<{number}@news.test>")

    options = SmtpSettings(host="127.0.0.1", port=port, security="none", connections=connections, ehlo_name="bench.test")
    sent = 0
    started = time.perf_counter()
    with SmtpBackend(options) as backend:
        for result in backend.send_messages(messages()):
            sent += result.outcome == "sent"
    return count / (time.perf_counter() - started), sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    data = build_message()
    raw = raw_pipe(args.port, data, args.count, args.connections)
    ours, sent = backend_pipe(args.port, data, args.count, args.connections)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"message: {len(data)} bytes, {args.count} messages, {args.connections} connections")
    print(f"raw smtplib pipe: {raw:8.0f} messages/s")
    print(f"SmtpBackend:      {ours:8.0f} messages/s ({sent} sent)  ratio {ours / raw:.2f}")
    print(f"peak RSS: {rss:.0f} MB")


if __name__ == "__main__":
    main()
