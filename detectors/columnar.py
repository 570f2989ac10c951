"""Vectorised windowing: the counts of :class:`~detectors.pipeline.OfflinePipeline`, for whole
columns of records at once (numpy, no per-record Python).

The per-record path adds validated records one by one, in event-time order of arrival, to
:class:`~detectors.windows.PartitionWindows` (one per family, all closed together by one
watermark). Given the same records as columns, in the same order, the functions here compute
exactly what it computes:

* :func:`late_mask`: which records are late (their window had closed when they arrived);
* :func:`window_cells`: the counts per window and cell, each window's cells in the order the
  per-record path first touched them (so every dict the engine sees is built in the same order);
* :func:`close_points`: after which record each window is closed (when the per-record path
  hands it to the engine), to interleave other records (maintenance declarations) exactly;
* :func:`zero_reads`: the balance invariant (a funded account reading 0 with no change
  explaining it) of :class:`~detectors.signals.AccountBalances`, for accounts never forgotten.

>>> t = np.array([1_000, 12_000, 3_000, 26_000, 14_000])
>>> late_mask(t, window_ms=10_000, lateness_ms=5_000).tolist()
[False, False, False, False, True]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]


def floor_to(t: IntArray, size: int) -> IntArray:
    """``t - t % size`` (Python's floor semantics, as :func:`detectors.windows.window_start`).

    >>> floor_to(np.array([-1, 0, 9, 10]), 10).tolist()
    [-10, 0, 0, 10]
    """
    return np.asarray(t - np.mod(t, size), dtype=np.int64)


def late_mask(event_time: IntArray, window_ms: int, lateness_ms: int) -> BoolArray:
    """Records (in arrival order) whose window had closed when they arrived.

    The per-record path closes windows up to ``floor(max event time so far - lateness)``
    (one watermark for every family), and a record is late when its window starts before
    that boundary. A late record never raises the maximum (its time is below the boundary),
    so the maximum over all earlier records is the maximum over the counted ones.

    >>> late_mask(np.array([20_000, 4_999, 10_000, 14_999]), 10_000, 5_000).tolist()
    [False, True, False, False]
    """
    t = np.asarray(event_time, dtype=np.int64)
    late = np.zeros(len(t), dtype=np.bool_)
    if len(t) < 2:
        return late
    before = np.maximum.accumulate(t)[:-1]
    boundary = floor_to(before - lateness_ms, window_ms)
    late[1:] = floor_to(t[1:], window_ms) < boundary
    return late


def close_points(
    event_time: IntArray, window_starts: IntArray, window_ms: int, lateness_ms: int
) -> IntArray:
    """For each window start: the index of the record after which the per-record path closes
    it (the first record that moves the boundary past its end), or ``len(event_time)`` for
    windows closed by the end of input.

    >>> close_points(np.array([1_000, 9_000, 16_000, 31_000]), np.array([0, 10_000]),
    ...              10_000, 5_000).tolist()
    [2, 3]
    """
    t = np.asarray(event_time, dtype=np.int64)
    if len(t) == 0:
        return np.zeros(len(window_starts), dtype=np.int64)
    boundary = floor_to(np.maximum.accumulate(t) - lateness_ms, window_ms)
    ends = np.asarray(window_starts, dtype=np.int64) + window_ms
    return np.asarray(np.searchsorted(boundary, ends, side="left"), dtype=np.int64)


@dataclass
class WindowCells:
    """Counts per (window, cell), sorted by window, then by first touch within the window.

    Attributes
    ----------
    window
        Window start (ms) of each row.
    cell
        Cell code of each row.
    first
        Index (in arrival order) of the record that first touched the cell in the window.
    counts
        ``(rows, width)`` integer counts.
    """

    window: IntArray
    cell: IntArray
    first: IntArray
    counts: IntArray


def window_cells(
    event_time: IntArray,
    cell: IntArray,
    counted: BoolArray,
    upd_record: IntArray,
    upd_counter: IntArray,
    upd_amount: IntArray,
    window_ms: int,
    width: int,
    upd_cell: IntArray | None = None,
) -> WindowCells:
    """Sum the updates of the counted records per (window, cell).

    ``event_time``, ``cell`` and ``counted`` are per record (arrival order); each update adds
    ``upd_amount`` to counter ``upd_counter`` of the cell of record ``upd_record`` (or of
    ``upd_cell``, when given: a record may count into another cell, in its own window, as an
    OTP record deciding an earlier code's outcome does). Every counted record touches its cell
    (a cell whose updates are all 0 still exists, as in the per-record path), then the other
    cells of its updates in their order; updates of records not counted are ignored.

    >>> wc = window_cells(np.array([5, 1, 12, 3]), np.array([7, 8, 7, 7]),
    ...                   np.array([True, True, True, False]),
    ...                   np.array([0, 1, 2, 3, 0]), np.array([0, 1, 0, 0, 2]),
    ...                   np.array([1, 1, 1, 1, 4]), window_ms=10, width=3)
    >>> wc.window.tolist(), wc.cell.tolist(), wc.first.tolist(), wc.counts.tolist()
    ([0, 0, 10], [7, 8, 7], [0, 1, 2], [[1, 0, 4], [0, 1, 0], [1, 0, 0]])

    Record 1 (cell 8, window 10) also counts into cell 7, after its own cell:

    >>> wc = window_cells(np.array([5, 12]), np.array([7, 8]), np.array([True, True]),
    ...                   np.array([0, 1, 1]), np.array([0, 0, 1]), np.array([1, 1, 1]),
    ...                   window_ms=10, width=2, upd_cell=np.array([7, 8, 7]))
    >>> wc.window.tolist(), wc.cell.tolist(), wc.counts.tolist()
    ([0, 10, 10], [7, 8, 7], [[1, 0], [1, 0], [0, 1]])
    """
    t = np.asarray(event_time, dtype=np.int64)
    cell = np.asarray(cell, dtype=np.int64)
    idx = np.flatnonzero(counted)
    if len(idx) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return WindowCells(empty, empty, empty, np.zeros((0, width), dtype=np.int64))
    w0 = int(floor_to(t[idx[:1]], window_ms)[0])  # windows relative to the first counted one
    urec = np.asarray(upd_record, dtype=np.int64)
    ucell = cell[urec] if upd_cell is None else np.asarray(upd_cell, dtype=np.int64)
    ncell = int(max(cell.max(), ucell.max(initial=0))) + 1
    is_counted = np.zeros(len(t), dtype=np.bool_)
    is_counted[idx] = True
    # Touches: each counted record's own cell, then its updates' other cells, in order: the
    # (few) others sorted by (record, update), inserted after their record's own.
    other = np.flatnonzero(is_counted[urec] & (ucell != cell[urec]))
    other = other[np.lexsort((other, urec[other]))]
    pos = np.searchsorted(idx, urec[other], side="right")
    by = np.insert(idx, pos, urec[other])
    is_own = np.ones(len(by), dtype=np.bool_)
    is_own[pos + np.arange(len(other))] = False
    touched = np.insert(cell[idx], pos, ucell[other])
    pair = (floor_to(t[by], window_ms) - w0) // window_ms * ncell + touched
    uniq, first_pos, inverse = np.unique(pair, return_index=True, return_inverse=True)
    first = by[first_pos]
    row_of_record = np.full(len(t), -1, dtype=np.int64)
    row_of_record[idx] = inverse[is_own]
    urow = row_of_record[urec]
    urow[other] = inverse[~is_own]
    rows = len(uniq)
    keep = urow >= 0
    flat = urow[keep] * width + np.asarray(upd_counter, dtype=np.int64)[keep]
    amounts = np.asarray(upd_amount, dtype=np.int64)[keep]
    flat_counts = np.zeros(rows * width, dtype=np.int64)
    np.add.at(flat_counts, flat, amounts)
    counts = flat_counts.reshape(rows, width)
    window = (uniq // ncell) * window_ms + w0
    order = np.lexsort((first_pos, window))
    return WindowCells(window[order], uniq[order] % ncell, first[order], counts[order])


def zero_reads(
    account: IntArray,
    is_read: BoolArray,
    is_change: BoolArray,
    has_balance: BoolArray,
    balance: FloatArray,
) -> BoolArray:
    """Reads of 0 by an account whose last known balance is positive (arrival order).

    :class:`~detectors.signals.AccountBalances` remembers the balance of every read and of
    every change that carries one (never of a bank-link event), except a faulty read (0
    while the known balance is positive). A read of 0 never changes whether the known
    balance is positive (it is skipped when it is, and remembered as 0 when it is not), so
    the balance a read of 0 is judged against is that of the account's last change with a
    balance or read of a non-zero balance. Exact while no account is forgotten (fewer
    accounts than the capacity).

    >>> zero_reads(np.array([1, 1, 1, 2, 1, 1]),
    ...            np.array([True, True, True, True, False, True]),
    ...            np.array([False, False, False, False, True, False]),
    ...            np.array([True, True, True, True, True, True]),
    ...            np.array([5.0, 0.0, 0.0, 0.0, 0.0, 0.0])).tolist()
    [False, True, True, False, False, False]
    """
    n = len(account)
    out = np.zeros(n, dtype=np.bool_)
    if n == 0:
        return out
    with np.errstate(invalid="ignore"):
        zero = is_read & has_balance & (balance == 0)
        setting = has_balance & ~zero & (is_read | is_change)
    order = np.lexsort((np.arange(n), account))
    acc = np.asarray(account)[order]
    pos = np.arange(n)
    group_start = np.zeros(n, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, acc[1:] != acc[:-1]])
    group_start[starts] = starts
    group_start = np.maximum.accumulate(group_start)
    last = np.maximum.accumulate(np.where(setting[order], pos, -1))
    known = last >= group_start
    before = np.where(known, balance[order][np.maximum(last, 0)], np.nan)
    with np.errstate(invalid="ignore"):
        hit = zero[order] & known & (before > 0)
    out[order] = hit
    return out
