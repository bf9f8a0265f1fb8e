"""The cyclic garbage collector's setting for the commands that read or send in bulk.

Process-wide, so an entry point's choice, never a stage's: `syndicate build` and `syndicate
send` run with the cyclic collector paused, and so does each rebuild of `syndicate run`. Their tens of thousands of articles (and the
objects a cache load or a digest run makes) hold no reference cycles, and every full
collection that the new objects trigger would scan them all for nothing. Reference counting
still frees everything as it goes; worker processes forked meanwhile inherit the setting (and
so never write to the pages they share with this process). Between rebuilds the service runs
with the collector on.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic collector off for the with-block (nests safely)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
