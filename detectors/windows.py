"""Event-time tumbling windows, computed the same way live, in replay and offline.

Two pure stages, so a stream can be split over many partitions and workers and still give
the same windows whatever the speed or interleaving of the input:

1. :class:`PartitionWindows` aggregates one input partition. Its watermark is the newest
   event time seen in *that partition* minus the allowed lateness, so it depends only on
   the partition's own order, never on wall-clock time or on other partitions. A window
   closes when the watermark passes its end; a record older than the watermark is late.
2. :class:`WindowAssembler` merges the closed partials of every partition and releases a
   window only when all partitions have closed it, in window order (a quiet partition is
   advanced by its owner, never skipped).

Counts are small lists of integers per segment; their meaning belongs to the signal.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field

Counts = list[int]
SegmentCounts = dict[str, Counts]


def window_start(ts_ms: int, size_ms: int) -> int:
    """Start of the tumbling window holding ``ts_ms``.

    >>> window_start(1_700_000_012_345, 10_000)
    1700000010000
    """
    return ts_ms - ts_ms % size_ms


def add_counts(into: Counts, more: Counts) -> None:
    """Element-wise ``into += more`` (lengths must match)."""
    for i, v in enumerate(more):
        into[i] += v


@dataclass
class ClosedWindow:
    """A window closed by one partition: its start and the counts per segment."""

    start_ms: int
    segments: SegmentCounts


class PartitionWindows:
    """Tumbling event-time windows for one input partition.

    Works when the partition's records are roughly in event-time order (lateness covers the
    disorder). Fails, by design, for records older than the watermark: :meth:`add` returns
    False and the caller must report them (they go to the dead-letter topic as ``late``).

    Parameters
    ----------
    size_ms
        Window length in milliseconds.
    lateness_ms
        How far behind the newest event time a record may be and still count.
    width
        Number of counters per segment.

    Example
    -------
    >>> w = PartitionWindows(size_ms=10_000, lateness_ms=2_000, width=2)
    >>> w.add(1_000, "a", 0), w.add(9_000, "a", 1), w.add(12_500, "b", 0)
    (True, True, True)
    >>> [(c.start_ms, c.segments) for c in w.pop_closed()]
    [(0, {'a': [1, 1]})]
    >>> w.add(500, "a", 0)  # 12_500 - 2_000 > 500: late
    False
    >>> [(c.start_ms, c.segments) for c in w.flush()]
    [(10000, {'b': [1, 0]})]
    """

    def __init__(self, size_ms: int, lateness_ms: int, width: int) -> None:
        if size_ms <= 0:
            raise ValueError(f"size_ms must be positive, got {size_ms}")
        self.size_ms = size_ms
        self.lateness_ms = lateness_ms
        self.width = width
        self.max_event_ms: int | None = None
        self.closed_until_ms: int | None = None
        self._open: dict[int, SegmentCounts] = {}

    @property
    def watermark_ms(self) -> int | None:
        """Newest event time minus lateness. A record is accepted while its window ends after
        the last window boundary at or before this time; windows ending there are closed."""
        if self.max_event_ms is None:
            return None
        return self.max_event_ms - self.lateness_ms

    @property
    def open_from_ms(self) -> int | None:
        """Start of the oldest open window (``None`` when none is open)."""
        return min(self._open) if self._open else None

    def add(self, ts_ms: int, segment: str, index: int, amount: int = 1) -> bool:
        """Count ``amount`` into counter ``index`` of ``segment``; False if the record is late."""
        ws = ts_ms - ts_ms % self.size_ms
        if self.closed_until_ms is not None and ws < self.closed_until_ms:
            return False
        if self.max_event_ms is not None:
            # Late by the watermark itself, whether or not pop_closed ran since: this keeps
            # the windows independent of how records are batched.
            wm = self.max_event_ms - self.lateness_ms
            if ws + self.size_ms <= wm - wm % self.size_ms:
                return False
        if self.max_event_ms is None or ts_ms > self.max_event_ms:
            self.max_event_ms = ts_ms
        window = self._open.get(ws)
        if window is None:
            window = self._open[ws] = {}
        counts = window.get(segment)
        if counts is None:
            counts = window[segment] = [0] * self.width
        counts[index] += amount
        return True

    def pop_closed(self) -> list[ClosedWindow]:
        """Windows whose end is at or before the watermark, oldest first."""
        wm = self.watermark_ms
        if wm is None:
            return []
        return self.close_until(wm)

    def flush(self) -> list[ClosedWindow]:
        """Close every open window (end of input)."""
        if not self._open:
            return []
        return self.close_until(max(self._open) + self.size_ms)

    def close_until(self, time_ms: int) -> list[ClosedWindow]:
        """Close the windows that end at or before ``time_ms``; later records there are late."""
        boundary_ms = time_ms - time_ms % self.size_ms
        if self.closed_until_ms is not None and boundary_ms <= self.closed_until_ms:
            return []
        self.closed_until_ms = boundary_ms
        ready = sorted(ws for ws in self._open if ws + self.size_ms <= boundary_ms)
        return [ClosedWindow(ws, self._open.pop(ws)) for ws in ready]


@dataclass
class _Source:
    closed_until_ms: int | None = None


@dataclass
class AssembledWindow:
    """One window, complete across all partitions: counts per group and segment."""

    start_ms: int
    groups: dict[str, SegmentCounts] = field(default_factory=dict)


def merge_windows(windows: Iterable[AssembledWindow]) -> AssembledWindow:
    """One window from the parts of it that several assemblers released (their groups are
    disjoint: each holds other services).

    >>> a, b = AssembledWindow(0, {"s1": {"x": [1]}}), AssembledWindow(0, {"s2": {"y": [2]}})
    >>> merge_windows([a, b]).groups
    {'s1': {'x': [1]}, 's2': {'y': [2]}}
    """
    parts = list(windows)
    out = AssembledWindow(parts[0].start_ms)
    for part in parts:
        for group, segments in part.groups.items():
            _add_segments(out, group, segments)
    return out


def _add_segments(window: AssembledWindow, group: str, segments: Mapping[str, Counts]) -> None:
    target = window.groups.setdefault(group, {})
    for seg, counts in segments.items():
        have = target.get(seg)
        if have is None:
            target[seg] = list(counts)
        else:
            add_counts(have, counts)


def _merge(
    start_ms: int, parts: Mapping[tuple[str, Hashable], Mapping[str, Counts]]
) -> AssembledWindow:
    window = AssembledWindow(start_ms)
    for (group, _source), segments in sorted(
        parts.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))
    ):
        _add_segments(window, group, segments)
    return window


class WindowAssembler:
    """Merges per-partition partials into complete windows, released in window order.

    A window is complete when every source partition has closed it.
    Results do not depend on the order partials of different partitions arrive in, and a
    partial delivered twice (at-least-once redelivery after a restart) replaces the first
    copy instead of being counted twice.

    Parameters
    ----------
    sources
        The source partitions (e.g. ``range(4)``) whose closes are awaited.
    size_ms
        Window length in milliseconds.

    Example
    -------
    >>> a = WindowAssembler(sources=[0, 1], size_ms=10)
    >>> a.add_partial(0, 0, "svc", {"x": [1, 0]})
    >>> a.mark_closed(0, 10)
    []
    >>> a.add_partial(1, 0, "svc", {"x": [0, 2]})
    >>> [(w.start_ms, w.groups) for w in a.mark_closed(1, 10)]
    [(0, {'svc': {'x': [1, 2]}})]
    """

    def __init__(self, sources: Iterable[Hashable], size_ms: int) -> None:
        self.size_ms = size_ms
        self._sources: dict[Hashable, _Source] = {p: _Source() for p in sources}
        if not self._sources:
            raise ValueError("a WindowAssembler needs at least one source partition")
        self._pending: dict[int, dict[tuple[str, Hashable], Mapping[str, Counts]]] = {}
        self.released_until_ms: int | None = None
        #: partials that arrived for windows already released (counted, not merged)
        self.late_partials = 0

    def add_sources(self, sources: Iterable[Hashable]) -> None:
        """Await closes from more partitions (the input topic grew)."""
        for p in sources:
            self._sources.setdefault(p, _Source())

    def add_partial(
        self, source: Hashable, start_ms: int, group: str, segments: Mapping[str, Counts]
    ) -> None:
        if self.released_until_ms is not None and start_ms < self.released_until_ms:
            self.late_partials += 1
            return
        self._sources.setdefault(source, _Source())
        self._pending.setdefault(start_ms, {})[(group, source)] = segments

    @property
    def horizon_ms(self) -> int | None:
        """Every window ending at or before this time is complete here (released, or had no
        partial at all); None until every source has closed something."""
        closes = [s.closed_until_ms for s in self._sources.values()]
        if any(c is None for c in closes):
            return None
        return min(c for c in closes if c is not None)

    def mark_closed(self, source: Hashable, closed_until_ms: int) -> list[AssembledWindow]:
        """Partition ``source`` has closed every window ending at or before this time."""
        src = self._sources.setdefault(source, _Source())
        if src.closed_until_ms is None or closed_until_ms > src.closed_until_ms:
            src.closed_until_ms = closed_until_ms
        return self._release()

    def _release(self) -> list[AssembledWindow]:
        horizon = self.horizon_ms
        if horizon is None:
            return []
        ready = sorted(ws for ws in self._pending if ws + self.size_ms <= horizon)
        out = [_merge(ws, self._pending.pop(ws)) for ws in ready]
        if out:
            end = out[-1].start_ms + self.size_ms
            if self.released_until_ms is None or end > self.released_until_ms:
                self.released_until_ms = end
        return out
