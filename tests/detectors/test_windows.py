"""Tests for detectors.windows: per-partition event-time windows and their assembly."""

from __future__ import annotations

import random
from collections import defaultdict

import pytest

from detectors.windows import (
    AssembledWindow,
    ClosedWindow,
    PartitionWindows,
    WindowAssembler,
    add_counts,
    window_start,
)

SIZE = 10_000
LATENESS = 2_000


def starts(closed: list[ClosedWindow]) -> list[int]:
    return [c.start_ms for c in closed]


def as_tuples(windows: list[AssembledWindow]) -> list[tuple[int, dict]]:
    return [(w.start_ms, w.groups) for w in windows]


# --------------------------------------------------------------------- helpers


def test_window_start_and_add_counts() -> None:
    assert window_start(0, SIZE) == 0
    assert window_start(9_999, SIZE) == 0
    assert window_start(10_000, SIZE) == 10_000
    assert window_start(1_700_000_019_999, SIZE) == 1_700_000_010_000
    into = [1, 2, 3]
    add_counts(into, [10, 20, 30])
    assert into == [11, 22, 33]


def test_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="size_ms"):
        PartitionWindows(size_ms=0, lateness_ms=0, width=1)


# ----------------------------------------------------------- PartitionWindows


def test_no_watermark_before_first_record() -> None:
    w = PartitionWindows(SIZE, LATENESS, width=2)
    assert w.watermark_ms is None
    assert w.pop_closed() == []
    assert w.flush() == []
    assert w.closed_until_ms is None


def test_watermark_is_newest_event_minus_lateness() -> None:
    w = PartitionWindows(SIZE, LATENESS, width=1)
    w.add(15_000, "a", 0)
    assert w.watermark_ms == 13_000
    w.add(14_000, "a", 0)  # older record: the watermark never goes back
    assert w.watermark_ms == 13_000
    w.add(17_500, "a", 0)
    assert w.watermark_ms == 15_500


def test_window_closes_exactly_when_watermark_reaches_its_end() -> None:
    w = PartitionWindows(SIZE, LATENESS, width=2)
    assert w.add(1_000, "a", 0)
    assert w.add(11_999, "a", 1)  # watermark 9_999: window [0, 10_000) still open
    assert w.watermark_ms == 9_999
    assert w.pop_closed() == []
    assert w.add(12_000, "b", 0)  # watermark 10_000 == end of window 0: closes
    closed = w.pop_closed()
    assert [(c.start_ms, c.segments) for c in closed] == [(0, {"a": [1, 0]})]
    assert w.closed_until_ms == 10_000
    # nothing more to close until the watermark reaches 20_000
    assert w.add(21_999, "b", 0)
    assert w.pop_closed() == []
    assert w.add(22_000, "b", 0)
    closed = w.pop_closed()
    assert [(c.start_ms, c.segments) for c in closed] == [(10_000, {"a": [0, 1], "b": [1, 0]})]


def test_disorder_within_lateness_is_counted_in_its_window() -> None:
    w = PartitionWindows(SIZE, LATENESS, width=1)
    assert w.add(9_000, "a", 0)
    assert w.add(11_000, "b", 0)  # watermark 9_000: window [0, 10_000) still open
    assert w.pop_closed() == []
    assert w.add(9_500, "a", 0)  # out of order but within the lateness: counted in window 0
    assert w.pop_closed() == []
    assert w.add(12_000, "b", 0)
    closed = w.pop_closed()
    assert [(c.start_ms, c.segments) for c in closed] == [(0, {"a": [2]})]


def test_late_records_rejected_and_not_counted() -> None:
    w = PartitionWindows(SIZE, LATENESS, width=1)
    w.add(1_000, "a", 0)
    w.add(12_500, "a", 0)
    assert starts(w.pop_closed()) == [0]
    max_before = w.max_event_ms
    assert w.add(9_999, "a", 0) is False
    assert w.add(0, "z", 0) is False
    assert w.max_event_ms == max_before
    assert w.add(10_000, "a", 0) is True  # first ms of the still-open window
    flushed = w.flush()
    assert [(c.start_ms, c.segments) for c in flushed] == [(10_000, {"a": [2]})]
    assert all("z" not in c.segments for c in flushed)


def test_amount_and_width() -> None:
    w = PartitionWindows(SIZE, LATENESS, width=4)
    w.add(100, "a", 3, amount=5)
    w.add(200, "a", 0)
    w.add(300, "a", 3, amount=2)
    [closed] = w.flush()
    assert closed.segments == {"a": [1, 0, 0, 7]}


def test_flush_closes_everything_oldest_first_and_later_records_are_late() -> None:
    w = PartitionWindows(SIZE, LATENESS, width=1)
    for ts in (22_000, 25_000, 31_000, 45_000):
        w.add(ts, "a", 0)
    # window 40_000 is the newest; watermark 43_000 closes 20_000 and 30_000 only
    assert starts(w.pop_closed()) == [20_000, 30_000]
    flushed = w.flush()
    assert starts(flushed) == [40_000]
    assert w.closed_until_ms == 50_000
    assert w.flush() == []  # idempotent
    assert w.add(49_999, "a", 0) is False
    assert w.add(50_000, "a", 0) is True
    assert starts(w.flush()) == [50_000]


def test_close_until_aligns_down_to_a_window_boundary() -> None:
    w = PartitionWindows(SIZE, LATENESS, width=1)
    for ts in (1_000, 11_000, 21_000):
        w.add(ts, "a", 0)
    closed = w.close_until(25_000)  # inside window 20_000: only 0 and 10_000 end by 20_000
    assert starts(closed) == [0, 10_000]
    assert w.closed_until_ms == 20_000
    assert w.add(19_999, "a", 0) is False
    assert w.add(20_000, "a", 0) is True
    # closing to an earlier or equal boundary does nothing
    assert w.close_until(24_999) == []
    assert w.close_until(20_000) == []
    assert w.closed_until_ms == 20_000
    # an exact boundary closes the window that ends there
    closed = w.close_until(30_000)
    assert [(c.start_ms, c.segments) for c in closed] == [(20_000, {"a": [2]})]
    assert w.closed_until_ms == 30_000


def test_pop_closed_returns_each_window_once() -> None:
    w = PartitionWindows(SIZE, 0, width=1)
    seen: list[int] = []
    for ts in range(0, 100_000, 700):
        assert w.add(ts, "a", 0)
        seen.extend(starts(w.pop_closed()))
    seen.extend(starts(w.flush()))
    assert seen == list(range(0, 100_000, SIZE))


def test_record_behind_closed_window_rejected_without_pop_closed() -> None:
    """Lateness is judged by the watermark, not by whether pop_closed ran in between."""
    w = PartitionWindows(SIZE, LATENESS, width=1)
    assert w.add(25_000, "a", 0)  # watermark 23_000: window [0, 10_000) is over
    assert w.add(500, "a", 0) is False
    # window [10_000, 20_000) ended at the boundary below the watermark too: late
    assert w.add(19_999, "a", 0) is False
    assert w.add(20_000, "a", 0) is True  # the window the watermark is in still counts
    assert w.add(23_500, "b", 0) is True
    assert [(c.start_ms, c.segments) for c in w.flush()] == [(20_000, {"a": [2], "b": [1]})]


def test_windows_do_not_depend_on_pop_closed_cadence() -> None:
    """The stage-1 agent calls pop_closed once per batch: batching must not change windows."""
    records = [(1_000, "a"), (25_000, "a"), (500, "b"), (26_000, "a"), (3_000, "b")]

    def run(batch: int) -> list[tuple[int, dict]]:
        w = PartitionWindows(SIZE, LATENESS, width=1)
        out: list[ClosedWindow] = []
        for i, (ts, seg) in enumerate(records, 1):
            w.add(ts, seg, 0)
            if i % batch == 0:
                out.extend(w.pop_closed())
        out.extend(w.flush())
        return [(c.start_ms, c.segments) for c in out]

    assert run(batch=1) == run(batch=len(records))


# ------------------------------------------------------------ WindowAssembler


def test_assembler_needs_sources() -> None:
    with pytest.raises(ValueError):
        WindowAssembler(sources=[], size_ms=SIZE)


def test_release_waits_for_every_source_and_merges() -> None:
    a = WindowAssembler(sources=[0, 1, 2], size_ms=SIZE)
    a.add_partial(0, 0, "svc", {"x": [1, 0]})
    a.add_partial(1, 0, "svc", {"x": [2, 1], "y": [0, 5]})
    a.add_partial(2, 0, "card", {"z": [7, 0]})
    assert a.mark_closed(0, 10_000) == []
    assert a.mark_closed(1, 10_000) == []
    released = a.mark_closed(2, 10_000)
    assert as_tuples(released) == [(0, {"card": {"z": [7, 0]}, "svc": {"x": [3, 1], "y": [0, 5]}})]
    assert a.released_until_ms == 10_000


def test_source_without_any_close_blocks_release() -> None:
    a = WindowAssembler(sources=[0, 1], size_ms=SIZE)
    for ws in (0, 10_000, 20_000):
        a.add_partial(0, ws, "svc", {"x": [1]})
        assert a.mark_closed(0, ws + SIZE) == []
    assert a.released_until_ms is None
    released = a.mark_closed(1, 20_000)
    assert [w.start_ms for w in released] == [0, 10_000]


def test_release_up_to_slowest_source_in_window_order() -> None:
    a = WindowAssembler(sources=[0, 1], size_ms=SIZE)
    for ws in (20_000, 0, 10_000):  # partials of later windows may come first
        a.add_partial(0, ws, "svc", {"x": [1]})
        a.add_partial(1, ws, "svc", {"x": [10]})
    assert a.mark_closed(0, 30_000) == []
    assert [w.start_ms for w in a.mark_closed(1, 10_000)] == [0]
    assert [w.start_ms for w in a.mark_closed(1, 30_000)] == [10_000, 20_000]
    # a close that goes backwards is ignored
    assert a.mark_closed(0, 10_000) == []


def test_resent_partial_replaces_instead_of_double_counting() -> None:
    a = WindowAssembler(sources=[0, 1], size_ms=SIZE)
    a.add_partial(0, 0, "svc", {"x": [1, 1]})
    a.add_partial(0, 0, "svc", {"x": [1, 1]})  # redelivered copy
    a.add_partial(1, 0, "svc", {"x": [5, 0]})
    a.add_partial(1, 0, "svc", {"x": [5, 0]})
    a.mark_closed(0, 10_000)
    a.mark_closed(0, 10_000)  # redelivered marker too
    [w] = a.mark_closed(1, 10_000)
    assert w.groups == {"svc": {"x": [6, 1]}}
    # a copy delivered after release is counted as late, not released again
    a.add_partial(0, 0, "svc", {"x": [1, 1]})
    assert a.late_partials == 1
    assert a.mark_closed(1, 10_000) == []
    assert a.mark_closed(0, 20_000) == []


def test_merge_does_not_alias_or_mutate_partials() -> None:
    a = WindowAssembler(sources=[0, 1], size_ms=SIZE)
    p0 = {"x": [1, 2]}
    p1 = {"x": [10, 20]}
    a.add_partial(0, 0, "svc", p0)
    a.add_partial(1, 0, "svc", p1)
    a.mark_closed(0, 10_000)
    [w] = a.mark_closed(1, 10_000)
    assert w.groups["svc"]["x"] == [11, 22]
    assert p0 == {"x": [1, 2]} and p1 == {"x": [10, 20]}
    w.groups["svc"]["x"][0] = 999
    assert p0["x"][0] == 1 and p1["x"][0] == 10


def test_add_sources_awaits_new_partitions_and_keeps_old_state() -> None:
    a = WindowAssembler(sources=[0], size_ms=SIZE)
    a.add_partial(0, 0, "svc", {"x": [1]})
    a.add_partial(0, 10_000, "svc", {"x": [1]})
    assert [w.start_ms for w in a.mark_closed(0, 10_000)] == [0]
    a.add_sources([0, 1])  # the topic grew: partition 1 must now close windows too
    assert a.mark_closed(0, 20_000) == []
    a.add_partial(1, 10_000, "svc", {"x": [5]})
    [w] = a.mark_closed(1, 20_000)
    assert (w.start_ms, w.groups) == (10_000, {"svc": {"x": [6]}})
    a.add_sources([0, 1])  # re-adding known sources resets nothing
    a.add_partial(0, 20_000, "svc", {"x": [1]})
    a.add_partial(1, 20_000, "svc", {"x": [1]})
    a.mark_closed(0, 30_000)
    assert [w.start_ms for w in a.mark_closed(1, 30_000)] == [20_000]


# ---------------------------------------------- event-time determinism property

PARTITIONS = 3
GROUPS = ("card", "wallet")
SEGMENTS = ("a", "b", "c")
WIDTH = 2
DET_LATENESS = 3_000


def make_records(seed: int = 11) -> dict[int, list[tuple[int, str, str, int]]]:
    """Per partition, in partition order: (ts, group, segment, counter), with some disorder."""
    rng = random.Random(seed)
    out: dict[int, list[tuple[int, str, str, int]]] = {}
    for p in range(PARTITIONS):
        recs = []
        t = 1_700_000_000_000 + rng.randrange(SIZE)
        for _ in range(600):
            t += rng.randrange(0, 400)
            jitter = rng.choice((0, 0, 0, rng.randrange(0, 2_500), rng.randrange(0, 9_000)))
            recs.append((t - jitter, rng.choice(GROUPS), rng.choice(SEGMENTS), rng.randrange(2)))
        out[p] = recs
    return out


def expected_windows(records: dict[int, list[tuple[int, str, str, int]]]) -> list[tuple]:
    """Oracle: a record counts unless its window was closed by its partition's earlier records."""
    totals: dict[int, dict[str, dict[str, list[int]]]] = {}
    late = 0
    for recs in records.values():
        max_ts: int | None = None
        closed: int | None = None
        for ts, group, seg, idx in recs:
            if closed is not None and window_start(ts, SIZE) < closed:
                late += 1
                continue
            max_ts = ts if max_ts is None else max(max_ts, ts)
            boundary = window_start(max_ts - DET_LATENESS, SIZE)
            closed = boundary if closed is None else max(closed, boundary)
            counts = (
                totals.setdefault(window_start(ts, SIZE), {})
                .setdefault(group, {})
                .setdefault(seg, [0] * WIDTH)
            )
            counts[idx] += 1
    assert late > 0, "the records should include late ones to exercise rejection"
    return sorted(totals.items())


def run_pipeline(
    records: dict[int, list[tuple[int, str, str, int]]], order_seed: int, pop_every: float = 1.0
) -> tuple[list[AssembledWindow], int]:
    """Interleave the partitions in a random (seeded) order through both stages.

    ``pop_every`` is the chance that pop_closed runs after a record (1.0: after each one; less
    imitates the stage-1 agent, which pops once per batch of records).
    """
    rng = random.Random(order_seed)
    windows = {p: PartitionWindows(SIZE, DET_LATENESS, WIDTH) for p in records}
    asm = WindowAssembler(sources=records, size_ms=SIZE)
    out: list[AssembledWindow] = []
    released_mid_stream = 0

    def emit(p: int, closed: list[ClosedWindow]) -> None:
        for c in closed:
            by_group: dict[str, dict[str, list[int]]] = defaultdict(dict)
            for key, counts in c.segments.items():
                group, seg = key.split("/")
                by_group[group][seg] = counts
            for group, segs in by_group.items():
                asm.add_partial(p, c.start_ms, group, segs)
        until = windows[p].closed_until_ms
        if until is not None:
            out.extend(asm.mark_closed(p, until))

    cursors = dict.fromkeys(records, 0)
    while any(cursors[p] < len(records[p]) for p in records):
        p = rng.choice([q for q in records if cursors[q] < len(records[q])])
        ts, group, seg, idx = records[p][cursors[p]]
        cursors[p] += 1
        windows[p].add(ts, f"{group}/{seg}", idx)
        if pop_every < 1.0 and rng.random() >= pop_every:
            continue
        before = windows[p].closed_until_ms
        closed = windows[p].pop_closed()
        if windows[p].closed_until_ms != before:
            emit(p, closed)
    released_mid_stream = len(out)
    flush_order = list(records)
    rng.shuffle(flush_order)
    # End of input, as the worker does when every partition is quiet: close every partition
    # up to the end of the newest window any of them has seen.
    newest = max(w.max_event_ms for w in windows.values() if w.max_event_ms is not None)
    horizon = newest - newest % SIZE + SIZE
    for p in flush_order:
        emit(p, windows[p].close_until(horizon))
    return out, released_mid_stream


def test_event_time_determinism_across_interleavings() -> None:
    records = make_records()
    expected = expected_windows(records)
    results = []
    for order_seed in (1, 2, 3):
        out, mid = run_pipeline(records, order_seed)
        assert mid > 0, "windows should be released while the stream runs, not only at flush"
        got = [(w.start_ms, w.groups) for w in out]
        got_starts = [s for s, _ in got]
        assert got_starts == sorted(set(got_starts)), "released once each, in window order"
        results.append(got)
    assert results[0] == results[1] == results[2]
    assert results[0] == expected


def test_event_time_determinism_whatever_the_batching() -> None:
    records = make_records(seed=12)
    expected = expected_windows(records)
    for order_seed, pop_every in ((4, 0.5), (5, 0.1), (6, 0.01)):
        out, _ = run_pipeline(records, order_seed, pop_every=pop_every)
        assert [(w.start_ms, w.groups) for w in out] == expected
