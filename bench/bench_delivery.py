"""End to end delivery: subscribers in SQLite -> outbox -> select, render, inline, message -> SMTP,
against the raw pipe and the naive path, into a running SMTP sink.

    smtp-sink -u nobody 127.0.0.1:25252 100 &      # Postfix's smtp-sink (Debian package postfix)
    python bench/bench_delivery.py --port 25252 [--subscribers 10000,100000] [--raw 20000] [--naive 500]

Every measurement runs in a process of its own, whose memory (and that of its worker processes)
the parent watches: the peak of the summed PSS and the sum of each process's peak RSS.
- end to end: DeliveryService.send_manual, as `syndicate send --yes` runs it (the default
  `[outbox] workers`, one per core), with real signed links, the SmtpBackend over 4 connections
  in all, every result recorded in the outbox (SQLite file);
- raw pipe: smtplib sending one pre-built message (of the mean digest size) over 4 connections;
- naive: per subscriber render + premailer + a stdlib EmailMessage + a new SMTP connection.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import smtplib
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_digest import NOW, BenchLinks, naive_message, subscribers
from bench_digest import settings_for as digest_settings
from mail_smtp import raw_pipe as smtplib_pipe
from sqlalchemy import insert

from syndicate.cli._collector import collector_paused
from syndicate.config import Settings
from syndicate.delivery import DeliveryService, SendRequest
from syndicate.digest import Timeline, select_digest
from syndicate.site import SiteUrls
from syndicate.storage import create_database, upgrade
from syndicate.storage.schema import subscriber_categories
from syndicate.storage.schema import subscribers as subscribers_table
from syndicate.wiring import content_source, delivery_config, email_renderer, load_corpus, message_builder

SECRET = "bench-secret-for-signed-links-0123456789"
SENDER = "digest@news.example.org"


def settings_for(folder: Path, count: int, port: int, dkim: str = "none") -> Settings:
    """`dkim`: none, or rsa-sha256 / ed25519-sha256 with a key made in `folder` (bench_dkim.py)."""
    base = digest_settings(folder)
    database = base.database.model_copy(update={"url": f"sqlite:///{folder / f'subscribers-{count}.db'}"})
    smtp = base.smtp.model_copy(update={"host": "127.0.0.1", "port": port, "security": "none", "connections": 4,
                                        "ehlo_name": "bench.test"})
    mail = base.mail.model_copy(update={"backend": "smtp"})
    update = {"database": database, "smtp": smtp, "mail": mail}
    if dkim != "none":
        key = folder / f"dkim-{dkim}.pem"
        if not key.exists():
            from syndicate.mail.dkim import generate_key

            key.write_bytes(generate_key(dkim)[0])
        update["dkim"] = base.dkim.model_copy(update={"domain": "news.example.org", "private_key_file": key, "algorithm": dkim})
    return base.model_copy(update=update)


def fill_database(folder: Path, count: int, port: int) -> None:
    """`count` active subscribers (bench_digest's mix of categories and high-water marks)."""
    settings = settings_for(folder, count, port)
    corpus = load_corpus(settings)
    database = create_database(settings.database.url)
    upgrade(database)
    people = subscribers(count, [c.slug for c in corpus.categories])
    for start in range(0, count, 10_000):
        chunk = people[start:start + 10_000]
        with database.write() as connection:
            connection.execute(insert(subscribers_table), [
                {"id": p.id, "email": p.email, "email_key": p.email.lower(), "name": p.name, "status": "active",
                 "frequency": p.frequency.value, "timezone": p.timezone, "send_hour": p.send_hour, "weekday": 0,
                 "high_water": p.high_water, "next_send_at": NOW, "source": "import", "created_at": NOW - timedelta(days=30),
                 "updated_at": NOW, "status_changed_at": NOW, "confirmed_at": NOW}
                for p in chunk
            ])
            connection.execute(insert(subscriber_categories),
                               [{"subscriber_id": p.id, "slug": slug} for p in chunk for slug in p.categories])
    database.close()


def rss_mb() -> float:
    """This process's peak RSS (VmHWM: ru_maxrss would count the parent's memory at fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def end_to_end(folder: Path, count: int, port: int, dkim: str = "none") -> dict:
    """What `syndicate send --yes` does after start-up: DeliveryService.send_manual (planning, and
    the worker processes sending the first planned digests while the rest is planned)."""
    os.environ["SYNDICATE_SECRET"] = SECRET
    settings = settings_for(folder, count, port, dkim)
    database = create_database(settings.database.url)
    service = DeliveryService(delivery_config(settings), database, content_source(settings))
    planned: list[float] = []
    started = time.perf_counter()
    with collector_paused():  # as `syndicate send` runs it
        report = service.send_manual(SendRequest(), NOW, clock=lambda: NOW,
                                     planned=lambda run: planned.append(time.perf_counter()))
    done = time.perf_counter()
    database.close()
    assert report.sent == report.total and report.status == "finished", report
    return {"path": "end to end" if dkim == "none" else f"end to end, DKIM {dkim}", "subscribers": count, "messages": report.sent, "failed": report.failed,
            "plan_s": planned[0] - started, "seconds": done - started, "msgs_per_s": report.sent / (done - started),
            "peak_rss_mb": rss_mb()}


def mean_size(folder: Path, port: int, sample: int = 500) -> int:
    """The mean size of the digests of the first `sample` subscribers (what the raw pipe sends)."""
    settings = settings_for(folder, sample, port)
    corpus = load_corpus(settings)
    timeline = Timeline.of_corpus(corpus)
    renderer = email_renderer(settings)
    links = BenchLinks(SiteUrls(settings.site.base_url))

    builder = message_builder(settings, renderer, links, corpus.categories, NOW)
    sizes = []
    for person in subscribers(sample, [c.slug for c in corpus.categories]):
        digest = select_digest(person, timeline, corpus.categories, NOW, settings.digest.max_articles)
        if digest is not None:
            sizes.append(len(builder.digest_message(digest).data))
    return sum(sizes) // len(sizes)


def raw_pipe(size: int, count: int, port: int, connections: int = 4) -> dict:
    head = f"From: Bench <{SENDER}>\r\nTo: reader@example.org\r\nSubject: digest\r\nMessage-ID: <raw@bench>\r\n\r\n"
    line = "council river budget tram science market festival harbour drone battery reef lorem ip\r\n"
    data = (head + line * ((size - len(head)) // len(line) + 1)).encode()[:size]

    rate = smtplib_pipe(port, data, count, connections)  # the same pipe as bench/mail_smtp.py
    sent = count // connections * connections
    elapsed = sent / rate
    return {"path": "raw pipe", "subscribers": sent, "messages": sent, "seconds": elapsed, "msgs_per_s": sent / elapsed,
            "bytes": len(data), "peak_rss_mb": rss_mb()}


def naive(folder: Path, count: int, port: int) -> dict:
    """Render, premailer, EmailMessage and a new SMTP connection for every message."""
    settings = settings_for(folder, count, port)
    corpus = load_corpus(settings)
    renderer = email_renderer(settings, inliner="premailer", cache=False)
    links = BenchLinks(SiteUrls(settings.site.base_url))
    sent = 0
    started = time.perf_counter()
    for person in subscribers(count, [c.slug for c in corpus.categories]):
        digest = select_digest(person, corpus.articles, corpus.categories, NOW, settings.digest.max_articles)
        if digest is None:
            continue
        data = naive_message(settings, renderer, links, corpus.categories, digest)
        with smtplib.SMTP("127.0.0.1", port, "bench.test") as smtp:
            smtp.sendmail(SENDER, [person.email], data)
        sent += 1
    elapsed = time.perf_counter() - started
    return {"path": "naive", "subscribers": count, "messages": sent, "seconds": elapsed, "msgs_per_s": sent / elapsed,
            "peak_rss_mb": rss_mb()}


def child(*args: str) -> dict:
    """Run one measurement in a process of its own, watching the memory of it and its workers."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen([sys.executable, __file__, "--child", *args], stdout=out, stderr=err, text=True)
        memory = watch_memory(process)
        out.seek(0)
        err.seek(0)
        if process.returncode != 0:
            raise SystemExit(err.read()[-3000:])
        return {**json.loads(out.read().strip().splitlines()[-1]), **memory}


def watch_memory(process: subprocess.Popen[str], interval: float = 0.1) -> dict:
    """Until `process` ends, every `interval`: the peak RSS (VmHWM) of it and of each of its child
    processes, summed at the end, and the sum of their PSS (shared pages divided among the
    processes sharing them, /proc/PID/smaps_rollup), whose highest value is kept."""
    peaks: dict[int, int] = {}
    pss_peak = 0
    processes = 1
    while process.poll() is None:
        family = [process.pid, *_children(process.pid)]
        processes = max(processes, len(family))
        pss = 0
        for pid in family:
            fields = _proc_kb(pid, "status", "VmHWM:") | _proc_kb(pid, "smaps_rollup", "Pss:")
            if "VmHWM:" in fields:
                peaks[pid] = max(peaks.get(pid, 0), fields["VmHWM:"])
            pss += fields.get("Pss:", 0)
        pss_peak = max(pss_peak, pss)
        time.sleep(interval)
    return {"rss_sum_mb": sum(peaks.values()) / 1024, "pss_peak_mb": pss_peak / 1024, "processes": processes}


def _children(pid: int) -> list[int]:
    try:
        direct = [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    return direct + [grandchild for child in direct for grandchild in _children(child)]


def _proc_kb(pid: int, name: str, *keys: str) -> dict[str, int]:
    try:
        lines = Path(f"/proc/{pid}/{name}").read_text().splitlines()
    except OSError:
        return {}
    return {line.split()[0]: int(line.split()[1]) for line in lines if line.split(":")[0] + ":" in keys}


def busy_seconds() -> tuple[float, float]:
    """(CPU seconds every process on the machine has used since boot, of which this process and its
    finished children), from /proc/stat and os.times()."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = sum(fields) - fields[3] - fields[4]  # all but idle and iowait
    own = os.times()
    return busy / os.sysconf("SC_CLK_TCK"), own.user + own.system + own.children_user + own.children_system


def machine(load_at_start: tuple[float, ...]) -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "?")
    start, end = (", ".join(f"{x:.2f}" for x in load) for load in (load_at_start, os.getloadavg()))
    return (f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}; "
            f"load average at the start {start}, at the end {end}")


def report(results: list[dict], command: str, articles: int, load_at_start: tuple[float, ...],
           busy: tuple[float, float, float]) -> str:
    raw = next(r for r in results if r["path"] == "raw pipe")
    slow = next(r for r in results if r["path"] == "naive")
    rows = ["| path | subscribers | messages | seconds | msgs/s | vs raw pipe | vs naive | processes | "
            "peak PSS MB (sum) | peak RSS MB (sum) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        rows.append(f"| {r['path']} | {r['subscribers']:,} | {r['messages']:,} | {r['seconds']:.1f} | {r['msgs_per_s']:,.0f} | "
                    f"{r['msgs_per_s'] / raw['msgs_per_s']:.2f} | {r['msgs_per_s'] / slow['msgs_per_s']:.1f}x | "
                    f"{r['processes']} | {r['pss_peak_mb']:.0f} | {r['rss_sum_mb']:.0f} |")
    details = [f"- end to end, {r['subscribers']:,} subscribers: planning done after {r['plan_s']:.1f} s (the workers "
               f"sending meanwhile); the parent's own peak RSS {r['peak_rss_mb']:.0f} MB"
               for r in results if r["path"] == "end to end"]
    return "\n".join([
        "# Delivery end to end: outbox + render + SMTP against the raw pipe and the naive path", "",
        f"Command: `{command}`", f"Machine: {machine(load_at_start)}",
        f"CPU while it ran: {busy[0]:.0f} s of {busy[2]:.0f} s available on {os.cpu_count()} CPUs; the benchmark's "
        f"processes {busy[1]:.0f} s, everything else (smtp-sink, other work on the machine) {busy[0] - busy[1]:.0f} s.",
        f"Corpus: {articles:,} generated articles (bench/generate.py) over 40 categories; subscribers as in "
        f"bench_digest.py (1-5 categories, daily or weekly, 80% with a digest one period ago). Raw pipe message: "
        f"{raw['bytes']:,} bytes (the mean digest).", "", *rows, "", *details, "",
    ])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, folder, count, port = sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
        if kind == "e2e":
            result = end_to_end(folder, count, port, *sys.argv[6:7])
        elif kind == "naive":
            result = naive(folder, count, port)
        else:
            result = raw_pipe(int(sys.argv[6]), count, port)
        print(json.dumps(result))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="port of a running SMTP sink on 127.0.0.1")
    parser.add_argument("--subscribers", default="10000,100000")
    parser.add_argument("--raw", type=int, default=20_000)
    parser.add_argument("--naive", type=int, default=500)
    parser.add_argument("--articles", type=int, default=2_000)
    parser.add_argument("--write", action="store_true", help="write bench/results/delivery.md")
    args = parser.parse_args()
    load_at_start = os.getloadavg()
    busy_at_start, own_at_start = busy_seconds()
    started = time.monotonic()
    from generate import generate

    counts = [int(x) for x in args.subscribers.split(",")]
    with tempfile.TemporaryDirectory(prefix="syndicate-bench-delivery-") as tmp:
        folder = Path(tmp)
        generate(folder / "content", args.articles)
        load_corpus(settings_for(folder, 0, args.port))  # fill the article cache once for every child
        for count in counts:
            fill_database(folder, count, args.port)
        size = mean_size(folder, args.port)
        results = []
        for step in [("raw", str(args.raw), str(size)), *[("e2e", str(c)) for c in counts], ("naive", str(args.naive))]:
            kind, count, *extra = step
            result = child(kind, str(folder), count, str(args.port), *extra)
            print(json.dumps(result), file=sys.stderr)
            results.append(result)
    busy_at_end, own_at_end = busy_seconds()
    busy = (busy_at_end - busy_at_start, own_at_end - own_at_start, (time.monotonic() - started) * (os.cpu_count() or 1))
    text = report(results, ("python bench/bench_delivery.py " + " ".join(sys.argv[1:])).strip(), args.articles,
                  load_at_start, busy)
    print(text)
    if args.write:
        (ROOT / "bench" / "results" / "delivery.md").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
