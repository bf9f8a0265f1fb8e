"""`syndicate worker` processes sharing one PostgreSQL outbox: scaling, CPU per message, kill -9.

    python bench/bench_workers.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test \
        [--digests 20000] [--workers 1,2,4,8] [--concurrency 4] [--delay 0.02] \
        [--cpu-digests 10000] [--cpu-runs 3] [--kill-digests 8000] [--skip scaling,cpu,kill]

1. scaling: an SMTP sink answering every command after `--delay` (bench/smtp_delay_sink.py, a
   relay one round trip away); `--digests` digests planned into the outbox, then sent by
   `syndicate worker --processes P --concurrency C` for each P of `--workers` (each process with
   the same C connections; [smtp] connections = P x C). Throughput = digests / (last sent_at -
   first sent_at). Every Message-ID is counted at the sink: each must be accepted exactly once.
2. cpu: no delay, Postfix's smtp-sink; the raw smtplib pipe (4 connections, one pre-built message
   of the mean digest size, bench/mail_smtp.py's) against `syndicate worker --processes 2
   --concurrency 2` (4 connections) sending `--cpu-digests` digests, `--cpu-runs` times; the CPU
   seconds of the worker processes and of the whole machine per message.
3. kill: 4 separate worker processes (delay sink), one killed with SIGKILL when 40% are sent;
   every digest must arrive, only the ones it had in flight twice (same Message-ID), and the
   others must have sent its share within `[outbox] claim_timeout` + 1 s of the kill.

Each scenario gets a fresh PostgreSQL schema (dropped at the end) and the same generated corpus.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_delivery import busy_seconds, machine, raw_pipe
from bench_delivery import settings_for as delivery_settings
from bench_digest import NOW, BenchLinks, subscribers
from sqlalchemy import create_engine, func, insert, select
from sqlalchemy.engine import make_url

from syndicate.delivery import SendRequest
from syndicate.digest import Timeline, select_digest
from syndicate.site import SiteUrls
from syndicate.storage import create_database, upgrade
from syndicate.storage.schema import deliveries, subscriber_categories
from syndicate.storage.schema import subscribers as subscribers_table
from syndicate.wiring import Components, email_renderer, load_corpus, message_builder

SECRET = {"SYNDICATE_SECRET": "bench-secret-for-signed-links-of-32-bytes"}
CLAIM_TIMEOUT = 5


class Scenario:
    """A fresh schema with `count` subscribers and a config of workers mode pointing at it and at `port`."""

    def __init__(self, base_url: str, folder: Path, count: int, port: int, connections: int,
                 max_articles: int = 30, inliner: str = "premailer") -> None:
        self.base_url = base_url
        self.schema = f"bench_{uuid.uuid4().hex[:12]}"
        self.admin = create_engine(base_url)
        with self.admin.begin() as connection:
            connection.exec_driver_sql(f'CREATE SCHEMA "{self.schema}"')
        self.url = make_url(base_url).update_query_dict({"options": f"-csearch_path={self.schema}"}).render_as_string(
            hide_password=False)
        self.folder = folder
        self.config = folder / f"{self.schema}.toml"
        self.config.write_text(
            f'[site]\ntitle = "Bench News"\nbase_url = "https://news.example.org"\ntimezone = "Europe/Paris"\n'
            f'[content]\nfolder = "{folder / "content"}"\ncache = "{folder / "cache" / "articles.pickle"}"\n'
            f'[database]\nurl = "{self.url}"\n'
            f'[mail]\nbackend = "smtp"\nfrom = "Bench News <digest@news.example.org>"\ndomain = "news.example.org"\n'
            f'[smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\nconnections = {connections}\n'
            f'ehlo_name = "bench.test"\ntimeout = 30\n'
            f'[digest]\nmax_articles = {max_articles}\n[email]\ncss_inliner = "{inliner}"\n'
            f'[outbox]\nclaim_timeout = {CLAIM_TIMEOUT}\n[delivery]\nmode = "workers"\n[logging]\nlevel = "WARNING"\n',
            encoding="utf-8")
        self.database = create_database(self.url)
        upgrade(self.database)
        settings = bench_settings(folder, port, max_articles)
        settings = settings.model_copy(update={"database": settings.database.model_copy(update={"url": self.url})})
        os.environ.update(SECRET)
        # One run, as the scheduler plans the subscribers of one send hour: not every subscriber has
        # something new, so subscribers are added (a dry run counting their digests) until `count` are due.
        delivery = Components(settings, database=self.database).delivery
        due, filled = 0, 0
        while due < count:
            more = count if not due else max(100, int((count - due) * filled / due * 1.05))
            self._fill(filled, more)
            filled += more
            due = len(delivery.dry_run(SendRequest(), NOW))
            if not due:
                raise SystemExit(f"no digest due for {filled} subscribers: is the corpus dated around {NOW}?")
        started = time.perf_counter()
        self.planned = delivery.plan_manual(SendRequest(), NOW).total
        self.plan_seconds = time.perf_counter() - started

    def _fill(self, start: int, count: int) -> None:
        corpus = load_corpus(delivery_settings(self.folder, 0, 0))
        people = subscribers(start + count, [c.slug for c in corpus.categories])[start:]
        for first in range(0, count, 10_000):
            chunk = people[first:first + 10_000]
            with self.database.write() as connection:
                connection.execute(insert(subscribers_table), [
                    {"id": p.id, "email": p.email, "email_key": p.email.lower(), "name": p.name, "status": "active",
                     "frequency": p.frequency.value, "timezone": p.timezone, "send_hour": p.send_hour, "weekday": 0,
                     "high_water": p.high_water, "next_send_at": NOW, "source": "import",
                     "created_at": NOW - timedelta(days=30), "updated_at": NOW, "status_changed_at": NOW,
                     "confirmed_at": NOW}
                    for p in chunk
                ])
                connection.execute(insert(subscriber_categories),
                                   [{"subscriber_id": p.id, "slug": slug} for p in chunk for slug in p.categories])

    def sent(self) -> int:
        with self.database.read() as connection:
            return connection.execute(select(func.count()).where(deliveries.c.status == "sent")).scalar_one()

    def window(self) -> float:
        with self.database.read() as connection:
            first, last = connection.execute(select(func.min(deliveries.c.sent_at), func.max(deliveries.c.sent_at))).one()
        return (last - first).total_seconds()

    def message_ids(self) -> set[str]:
        with self.database.read() as connection:
            return set(connection.execute(select(deliveries.c.message_id)).scalars())

    def worker(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "syndicate", "--config", str(self.config), "worker", *args],
                                cwd=ROOT, env={**os.environ, **SECRET}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def open_left(self) -> bool:
        """Whether a delivery is still to be sent: a look for one row by the status index, where counting
        the sent ones reads every one of them (20 times a second in the CPU part: 1-2% of the machine)."""
        with self.database.read() as connection:
            return connection.execute(
                select(deliveries.c.id).where(deliveries.c.status.in_(("queued", "sending", "retry"))).limit(1)
            ).first() is not None

    def wait_sent(self, timeout: float, *workers: subprocess.Popen[bytes], poll: float = 0.5) -> None:
        """Until every planned digest is recorded sent; looks every `poll` seconds (the CPU part's
        runs last a few seconds: its end is seen within 0.05 s, not 0.5 s)."""
        deadline = time.monotonic() + timeout
        while self.open_left():
            if time.monotonic() > deadline:
                raise SystemExit(f"only {self.sent()} of {self.planned} sent after {timeout} s")
            for worker in workers:
                if worker.poll() is not None:
                    raise SystemExit(f"worker exited with {worker.returncode}: {worker.stderr.read().decode()[-3000:]}")
            time.sleep(poll)
        if self.sent() != self.planned:
            raise SystemExit(f"{self.sent()} of {self.planned} sent: the others failed or were skipped")

    def drop(self) -> None:
        self.database.close()
        with self.admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{self.schema}" CASCADE')
        self.admin.dispose()


def bench_settings(folder: Path, port: int, max_articles: int) -> Any:
    settings = delivery_settings(folder, 0, port)
    return settings.model_copy(update={"digest": settings.digest.model_copy(update={"max_articles": max_articles})})


def mean_size(folder: Path, port: int, max_articles: int, sample: int = 500) -> int:
    """The mean size of the digests of the first `sample` subscribers (what the raw pipe sends)."""
    settings = bench_settings(folder, port, max_articles)
    corpus = load_corpus(settings)
    timeline = Timeline.of_corpus(corpus)
    links = BenchLinks(SiteUrls(settings.site.base_url, settings.feeds.folder))
    builder = message_builder(settings, email_renderer(settings), links, corpus.categories, NOW)
    sizes = []
    for person in subscribers(sample, [c.slug for c in corpus.categories]):
        digest = select_digest(person, timeline, corpus.categories, NOW, settings.digest.max_articles)
        if digest is not None:
            sizes.append(len(builder.digest_message(digest).data))
    return sum(sizes) // len(sizes)


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by process `pid` and its descendants still running."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / tick
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return total
    return total + sum(tree_cpu(int(child)) for child in children)


class DelaySink:
    def __init__(self, folder: Path, delay: float) -> None:
        self.report = folder / f"sink-{uuid.uuid4().hex[:8]}.json"
        self.process = subprocess.Popen([sys.executable, str(ROOT / "bench" / "smtp_delay_sink.py"), "--delay", str(delay),
                                         "--report", str(self.report)], stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline().rsplit(":", 1)[1])

    def counts(self) -> dict[str, int]:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)
        return json.loads(self.report.read_text())


def stop(process: subprocess.Popen[bytes]) -> str:
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    return err.decode()[-2000:]


def scaling(args: argparse.Namespace, folder: Path) -> list[dict]:
    rows = []
    for processes in [int(x) for x in args.workers.split(",")]:
        sink = DelaySink(folder, args.delay)
        try:
            scenario = Scenario(args.database_url, folder, args.digests, sink.port, processes * args.concurrency)
        except BaseException:
            sink.process.kill()
            raise
        try:
            worker = scenario.worker("--processes", str(processes), "--concurrency", str(args.concurrency))
            started = time.monotonic()
            scenario.wait_sent(3600, worker)
            wall = time.monotonic() - started
            window = scenario.window()
            log = stop(worker)
            counts = sink.counts()
            planned_ids = scenario.message_ids()
            once = set(counts) == planned_ids and all(n == 1 for n in counts.values())
            row = {"processes": processes, "digests": scenario.planned, "seconds": window, "wall": wall,
                   "msgs_per_s": scenario.planned / window, "exactly_once": once,
                   "accepted": sum(counts.values()), "distinct": len(counts), "plan_s": scenario.plan_seconds}
            if not once:
                row["log"] = log
            print(json.dumps(row), file=sys.stderr, flush=True)
            rows.append(row)
        finally:
            if sink.process.poll() is None:
                sink.process.kill()
            scenario.drop()
    return rows


def cpu(args: argparse.Namespace, folder: Path) -> list[dict]:
    port = args.smtp_sink_port
    sink = subprocess.Popen(["/usr/sbin/smtp-sink", "-u", "nobody", f"127.0.0.1:{port}", "256"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    size = mean_size(folder, port, args.max_articles)
    raw_pipe(size, min(2_000, args.cpu_digests), port)  # a warm-up, not recorded: the first pipe of a set ran 10-25% slow
    rows = []
    try:
        for run in range(args.cpu_runs):
            raw = raw_pipe(size, args.cpu_digests, port)
            scenario = Scenario(args.database_url, folder, args.cpu_digests, port, args.cpu_processes * args.cpu_concurrency,
                                args.max_articles, args.inliner)
            try:
                worker = scenario.worker("--processes", str(args.cpu_processes), "--concurrency", str(args.cpu_concurrency))
                while scenario.sent() == 0:  # steady state: from the first message recorded sent
                    time.sleep(0.02)
                machine_before, _ = busy_seconds()
                cpu_before, sent_before, started = tree_cpu(worker.pid), scenario.sent(), time.monotonic()
                scenario.wait_sent(3600, worker, poll=0.05)
                cpu_after, seconds = tree_cpu(worker.pid), time.monotonic() - started
                machine_after, _ = busy_seconds()
                stop(worker)
                count = scenario.planned - sent_before
                row = {"run": run + 1, "digests": scenario.planned, "mean_bytes": size,
                       "raw_msgs_per_s": raw["msgs_per_s"], "msgs_per_s": count / seconds,
                       "ratio": count / seconds / raw["msgs_per_s"],
                       "worker_cpu_us_per_msg": (cpu_after - cpu_before) / count * 1e6,
                       "machine_cpu_us_per_msg": (machine_after - machine_before) / count * 1e6,
                       "seconds": seconds}
                print(json.dumps(row), file=sys.stderr, flush=True)
                rows.append(row)
            finally:
                scenario.drop()
    finally:
        sink.terminate()
        sink.wait(10)
    return rows


def kill(args: argparse.Namespace, folder: Path) -> dict:
    sink = DelaySink(folder, args.delay)
    scenario = Scenario(args.database_url, folder, args.kill_digests, sink.port, 4 * args.concurrency)
    try:
        workers = [scenario.worker("--concurrency", str(args.concurrency)) for _ in range(4)]
        while scenario.sent() < 0.4 * scenario.planned:
            time.sleep(0.1)
        victim = workers[1]
        victim.kill()
        killed_at = time.monotonic()
        victim.wait()
        with scenario.database.read() as connection:
            stranded = {row.message_id: row.id for row in connection.execute(
                select(deliveries.c.id, deliveries.c.message_id)
                .where(deliveries.c.status == "sending", deliveries.c.claimed_by.like(f"%:{victim.pid}:%")))}
        ids = list(stranded.values())
        share_done = None
        while True:
            with scenario.database.read() as connection:
                left = connection.execute(select(func.count()).where(deliveries.c.id.in_(ids),
                                                                     deliveries.c.status != "sent")).scalar_one()
            if left == 0 and share_done is None:
                share_done = time.monotonic() - killed_at
            if share_done is not None and scenario.sent() >= scenario.planned:
                break
            if time.monotonic() - killed_at > 600:
                raise SystemExit("kill scenario: not finished after 600 s")
            time.sleep(0.05)
        for worker in workers:
            if worker is not victim:
                stop(worker)
        counts = sink.counts()
        planned_ids = scenario.message_ids()
        twice = {mid for mid, n in counts.items() if n > 1}
        result = {"digests": scenario.planned, "stranded_at_kill": len(stranded), "accepted": sum(counts.values()),
                  "all_delivered": planned_ids <= set(counts), "duplicates": len(twice),
                  "duplicates_only_in_flight": twice <= set(stranded), "share_done_after_s": share_done,
                  "claim_timeout": CLAIM_TIMEOUT}
        print(json.dumps(result), file=sys.stderr, flush=True)
        return result
    finally:
        scenario.drop()


def report(args: argparse.Namespace, command: str, load_at_start: tuple[float, ...], scaled: list[dict],
           cpu_rows: list[dict], killed: dict | None) -> str:
    lines = ["# syndicate worker processes sharing the PostgreSQL outbox", "", f"Command: `{command}`",
             f"Machine: {machine(load_at_start)}", ""]
    if scaled:
        base = scaled[0]["msgs_per_s"]
        lines += [f"Scaling: sink answering every command after {args.delay * 1000:.0f} ms; {args.concurrency} "
                  "connections per worker process.", "",
                  "| worker processes | digests | seconds (first to last sent) | msgs/s | vs 1 process | accepted once each |",
                  "|---:|---:|---:|---:|---:|---|"]
        for r in scaled:
            lines.append(f"| {r['processes']} | {r['digests']:,} | {r['seconds']:.1f} | {r['msgs_per_s']:,.0f} | "
                         f"{r['msgs_per_s'] / base:.2f}x | {'yes' if r['exactly_once'] else 'NO'} "
                         f"({r['accepted']:,} accepted, {r['distinct']:,} Message-IDs) |")
        lines.append("")
    if cpu_rows:
        lines += ["CPU: Postfix smtp-sink (no delay); raw smtplib pipe 4 connections against `syndicate worker "
                  "--processes 2 --concurrency 2`.", "",
                  "| run | digests | mean bytes | raw msgs/s | workers msgs/s | ratio | worker CPU us/msg | machine CPU us/msg |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in cpu_rows:
            lines.append(f"| {r['run']} | {r['digests']:,} | {r['mean_bytes']:,} | {r['raw_msgs_per_s']:,.0f} | "
                         f"{r['msgs_per_s']:,.0f} | {r['ratio']:.2f} | {r['worker_cpu_us_per_msg']:,.0f} | "
                         f"{r['machine_cpu_us_per_msg']:,.0f} |")
        lines += ["", f"Median ratio: {statistics.median(r['ratio'] for r in cpu_rows):.2f}", ""]
    if killed:
        lines += ["Kill -9 of one of 4 workers at 40% sent: " + json.dumps(killed), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--digests", type=int, default=20_000)
    parser.add_argument("--workers", default="1,2,4,8")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--delay", type=float, default=0.02)
    parser.add_argument("--cpu-digests", type=int, default=10_000)
    parser.add_argument("--cpu-runs", type=int, default=3)
    parser.add_argument("--cpu-processes", type=int, default=2, help="worker processes of the cpu runs")
    parser.add_argument("--cpu-concurrency", type=int, default=2, help="SMTP connections per worker process of the cpu runs")
    parser.add_argument("--kill-digests", type=int, default=8_000)
    parser.add_argument("--articles", type=int, default=2_000)
    parser.add_argument("--max-articles", type=int, default=1, help="[digest] max_articles of the cpu runs (1: digests of about 10.7 KB; 2: 12 KB)")
    parser.add_argument("--inliner", default="premailer", help="[email] css_inliner of the cpu runs")
    parser.add_argument("--smtp-sink-port", type=int, default=25461)
    parser.add_argument("--skip", default="", help="comma-separated: scaling, cpu, kill")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    load_at_start = os.getloadavg()
    from generate import generate

    with tempfile.TemporaryDirectory(prefix="syndicate-bench-workers-") as tmp:
        folder = Path(tmp)
        generate(folder / "content", args.articles)
        load_corpus(delivery_settings(folder, 0, 0))  # fill the article cache once for every process
        scaled = [] if "scaling" in skip else scaling(args, folder)
        cpu_rows = [] if "cpu" in skip else cpu(args, folder)
        killed = None if "kill" in skip else kill(args, folder)
    command = "python bench/bench_workers.py " + " ".join(a if "://" not in a else "<url>" for a in sys.argv[1:])
    print(report(args, command, load_at_start, scaled, cpu_rows, killed))


if __name__ == "__main__":
    main()
