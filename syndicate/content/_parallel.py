"""Work in forked processes: the one way the stages start them (the reader, the article cache
writer, the site build and the delivery workers), and how such a process hears it should stop.

Forking shares what this process has loaded (the articles above all) without pickling it, and
is safe only in a process that runs no other thread: `can_fork()` says whether it may, and
every caller falls back to doing the work itself when it may not.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.synchronize
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from multiprocessing.connection import Connection, wait
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
_FORK = "fork"


class WorkerDied(Exception):
    """A forked process ended without handing back its result."""


def can_fork() -> bool:
    """Whether this process may fork: the platform can, and no other thread runs (a thread
    holding a lock at the fork would leave it locked forever in the child)."""
    return threading.active_count() == 1 and _FORK in multiprocessing.get_all_start_methods()


def shared_event() -> multiprocessing.synchronize.Event:
    """An event that this process and the processes it forks afterwards all see."""
    return multiprocessing.get_context("fork").Event()


@contextmanager
def event_on_signals(event: threading.Event, *signals: int,
                     then: Callable[[int], None] | None = None) -> Iterator[threading.Event]:
    """Within the block, `event` is set when one of `signals` arrives (call from the main thread).
    `then(signal number)` runs in the watching thread after the event is set (what a stop must
    also tell others: it may take locks, a handler may not).

    The handler only writes a byte to a pipe; a thread of its own reads it and sets the event.
    A handler that set the event itself would run in the main thread between two bytecodes and
    wait for the event's lock, which that same thread may hold: inside `event.wait()`, or inside
    the handler of a signal that came just before (two SIGTERMs in a row, as a supervisor or a
    `kill` script sends them). The process would then hang for good."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)

    def handler(number: int, frame: Any) -> None:
        try:
            os.write(write_end, bytes([number]))
        except OSError:  # the pipe is full: the event is being set anyway
            pass

    def watch() -> None:
        try:
            while received := os.read(read_end, 64):
                event.set()
                if then is not None:
                    for number in received:
                        then(number)
        finally:
            os.close(read_end)

    watcher = threading.Thread(target=watch, name="signal-watch", daemon=True)
    watcher.start()
    previous: dict[int, Any] = {}
    for number in signals:
        previous[number] = signal.signal(number, handler)
    try:
        yield event
    finally:
        for number, action in previous.items():
            signal.signal(number, action)
        os.close(write_end)  # the watcher reads the end of the pipe and stops
        watcher.join(5)


class Forked:
    """`target(*args)` running in a forked process; `result()` is what it returned."""

    def __init__(self, target: Callable[..., Any], *args: Any, name: str | None = None) -> None:
        context = multiprocessing.get_context("fork")
        self._receiver, sender = context.Pipe(duplex=False)
        self._process = context.Process(target=_run_and_send, args=(target, args, sender), name=name, daemon=True)
        self._process.start()
        sender.close()

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def exitcode(self) -> int | None:
        return self._process.exitcode

    def is_alive(self) -> bool:
        return self._process.is_alive()

    def join(self, timeout: float | None = None) -> None:
        self._process.join(timeout)

    def result(self) -> Any:
        """What the target returned (waiting for it); WorkerDied if the process ended without
        returning (killed, or the target raised: the process logged why)."""
        try:
            value = self._receiver.recv()
        except EOFError:
            self._process.join()
            raise WorkerDied(f"worker {self.pid} exited with code {self.exitcode}") from None
        finally:
            self._receiver.close()
        self._process.join()
        return value


def _run_and_send(target: Callable[..., Any], args: tuple, sender: Any) -> None:
    try:
        value = target(*args)
    except Exception:
        log.exception("worker %s failed", os.getpid())
        raise SystemExit(1) from None
    sender.send(value)
    sender.close()


def run_parallel(function: Callable[[Sequence[T]], list[R]], items: Sequence[T], workers: int, *,
                 batch: int = 64) -> list[R]:
    """`function(items)`, its work spread over `workers` forked processes when forking is safe.

    Each process gets an interleaved share of `items` (alike items, such as feeds, spread over
    every process) and hands back `function` of `batch` items at a time, which this process
    takes as they come (so it decodes results while the workers still work) and puts back in
    the order of `items`. What a process did not hand back (it died) is done here. Without
    forking, or with one worker, everything runs here.
    """
    workers = max(1, min(workers, len(items)))
    if workers == 1 or not can_fork():
        return function(items)
    context = multiprocessing.get_context("fork")
    shares = [items[i::workers] for i in range(workers)]
    results: list[list[R]] = [[] for _ in shares]
    streams: dict[Connection, int] = {}
    forked: list[Forked] = []
    for index, share in enumerate(shares):
        receiver, sender = context.Pipe(duplex=False)
        forked.append(Forked(_stream, function, share, batch, sender, name="syndicate-worker"))
        sender.close()
        streams[receiver] = index
    while streams:
        for ready in wait(list(streams)):
            assert isinstance(ready, Connection)
            index = streams[ready]
            try:
                results[index].extend(ready.recv())
            except EOFError:
                del streams[ready]
                ready.close()
    for index, worker in enumerate(forked):
        try:
            worker.result()
        except WorkerDied as e:
            left = shares[index][len(results[index]):]
            log.warning("%s; doing its last %d items here", e, len(left))
            results[index].extend(function(left))
    ordered: list[R] = [None] * len(items)  # type: ignore[list-item]
    for offset, result in enumerate(results):
        ordered[offset::workers] = result
    return ordered


def _stream(function: Callable[[Sequence[T]], list[R]], share: Sequence[T], batch: int, sender: Any) -> None:
    for start in range(0, len(share), batch):
        sender.send(function(share[start:start + batch]))
    sender.close()
