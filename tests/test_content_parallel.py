"""The one helper for parallel work: results in order, a dead worker's share done anyway."""

from __future__ import annotations

import os

from syndicate.content import run_parallel
from tests.test_content_cache import OPTIONS, TEMPLATE

PARENT = os.getpid()


def squares(share):
    return [n * n for n in share]


def test_results_come_back_in_the_order_of_the_items():
    items = list(range(1000))
    assert run_parallel(squares, items, 2, batch=7) == [n * n for n in items]
    assert run_parallel(squares, items[:1], 4) == [0]


def dies_in_a_worker_at_500(share):
    if os.getpid() != PARENT and 500 in share:
        os._exit(3)  # a worker killed mid-way (the OOM killer, a segfault in an extension)
    return squares(share)


def test_what_a_dead_worker_did_not_hand_back_is_done_here(caplog):
    items = list(range(1000))
    assert run_parallel(dies_in_a_worker_at_500, items, 2, batch=10) == [n * n for n in items]
    assert "exited with code 3" in caplog.text


def test_a_parallel_read_gives_the_corpus_a_serial_read_gives(tmp_path):
    from syndicate.content import read_corpus

    folder = tmp_path / "content"
    folder.mkdir()
    for i in range(450):  # above the reader's threshold for parallel parsing
        (folder / f"a{i}.md").write_text(TEMPLATE.format(title=f"Article {i}", day=i % 9 + 1))
    parallel = read_corpus(folder, OPTIONS, workers=2)
    serial = read_corpus(folder, OPTIONS, workers=1)
    assert parallel.parsed == serial.parsed == 450
    assert parallel.articles == serial.articles and not parallel.problems


# A process that `event_on_signals` stops: SIGTERM lands while its main thread holds the stop event's
# lock, as when the signal comes during `stop.wait()` or during the handler of a SIGTERM just before
# (a supervisor or a test sending two in a row). A handler that set the event itself would wait for
# that lock in the same thread, forever: the process would never stop.
STOPPED_WHILE_HOLDING_THE_LOCK = """
import os, signal, sys, threading, time
from syndicate.content import event_on_signals

with event_on_signals(threading.Event(), signal.SIGTERM) as stop:
    with stop._cond:  # the lock Event.wait() and Event.set() hold
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)  # the handlers run here, in this thread, with the lock held
    sys.exit(0 if stop.wait(5) else 3)
"""


def test_a_signal_landing_while_the_stop_event_is_locked_still_stops_the_process():
    import subprocess
    import sys
    from pathlib import Path

    done = subprocess.run([sys.executable, "-c", STOPPED_WHILE_HOLDING_THE_LOCK], cwd=Path(__file__).parent.parent,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


# `then` hears of each signal, in the watching thread, after the event is set.
THEN_HEARS_OF_EACH_SIGNAL = """
import os, signal, sys, threading, time
from syndicate.content import event_on_signals

heard = []
with event_on_signals(threading.Event(), signal.SIGINT, signal.SIGTERM, then=heard.append) as stop:
    os.kill(os.getpid(), signal.SIGINT)
    assert stop.wait(5)
    os.kill(os.getpid(), signal.SIGTERM)
    deadline = time.monotonic() + 5
    while len(heard) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
sys.exit(0 if heard == [signal.SIGINT, signal.SIGTERM] else 3)
"""


def test_then_hears_of_each_signal_after_the_event_is_set():
    import subprocess
    import sys
    from pathlib import Path

    done = subprocess.run([sys.executable, "-c", THEN_HEARS_OF_EACH_SIGNAL], cwd=Path(__file__).parent.parent,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
