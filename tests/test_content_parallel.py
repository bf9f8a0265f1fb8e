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
