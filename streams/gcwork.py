"""Python's cyclic garbage collector during batch work that allocates millions of objects.

CPython starts a collection of its youngest generation every 700 net allocations of container
objects (the default threshold), and every tenth of those also collects the middle one; a full
collection walks every tracked object alive. A batch run such as ``evaluate`` keeps hundreds of
thousands of objects alive (decoded rows, per-segment detector state) while it allocates
millions of short-lived ones, so those collections walk the same live objects again and again
and find next to nothing: the objects die by reference counting.

:func:`fewer_collections` raises the youngest generation's threshold for the span of such work
(nothing else changes: cycles are still collected, just in larger batches; at most ``gen0``
more container objects of cyclic garbage wait for their collection).

Measured on the bench set of ``bench.evaluate_bench`` (401,718 records, 2 processes, 3 runs
each, one process timing the phases): detection took 0.43-0.50 s instead of 0.58-0.69 s, the
whole run 1.44-1.57 s instead of 1.58-1.82 s; a threshold of 10,000 gave about the same, and
turning the collector off no more. ``python -m bench.evaluate_bench``, alternating the code
before and after (with the files shared by records, :func:`streams.fastload.share_out`):
253,551 / 260,576 / 277,781 events/s against 225,489 / 208,585 / 213,481 (medians of 3).

>>> import gc
>>> before = gc.get_threshold()
>>> with fewer_collections(gen0=20_000):
...     gc.get_threshold()[0]
20000
>>> gc.get_threshold() == before
True
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["GEN0", "fewer_collections"]

#: Allocations between two collections of the youngest generation inside ``fewer_collections``.
GEN0 = 50_000


@contextmanager
def fewer_collections(gen0: int = GEN0) -> Iterator[None]:
    """Within the block, the youngest generation is collected every ``gen0`` allocations (not
    every 700); the thresholds in force before are restored after it, also on an error."""
    if gen0 < 1:
        raise ValueError(f"gen0 must be at least 1 (0 would turn the collector off), got {gen0}")
    before = gc.get_threshold()
    gc.set_threshold(max(gen0, before[0]), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
