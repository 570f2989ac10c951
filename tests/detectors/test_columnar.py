"""detectors.columnar against the per-record pieces it replaces: OfflinePipeline's windows,
lateness and closing points, and AccountBalances' zero-read invariant, on random streams."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from detectors import columnar
from detectors.engine import EngineWindow
from detectors.pipeline import OfflinePipeline
from detectors.signals import _CMP, _OTP, COMPLAINT_CATEGORIES, SEP, AccountBalances, OtpDeadlines

W, LATE = 10_000, 5_000
T0 = 1_760_000_000_000


class _Recorder:
    """Stands in for the engine: keeps each window and after which record it came."""

    def __init__(self, pipeline: list[OfflinePipeline]) -> None:
        self.pipeline = pipeline
        self.windows: list[tuple[int, Any, int]] = []
        self.window_ms = W

    def process(self, window: EngineWindow) -> list[Any]:
        p = self.pipeline[0]
        seen = p.counted + p.late - 1
        families = {f: {s: dict(c) for s, c in sv.items()} for f, sv in window.families.items()}
        self.windows.append((window.start_ms, families, seen))
        return []


def _stream(seed: int, n: int) -> list[tuple[int, str, str]]:
    rng = random.Random(seed)
    t = T0
    out = []
    for _ in range(n):
        t += rng.randrange(0, 3_000)
        jitter = rng.choice([0, 0, 0, -2_000, -7_000, -30_000])
        service = rng.choice(["a", "b", "c"])
        category = rng.choice([*COMPLAINT_CATEGORIES, "total", "weird"])
        out.append((t + jitter, service, category))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_windows_lateness_and_close_points_match_the_pipeline(seed: int) -> None:
    stream = _stream(seed, 600)
    holder: list[OfflinePipeline] = []
    rec = _Recorder(holder)
    pipeline = OfflinePipeline(W, LATE, engine=rec)  # type: ignore[arg-type]
    holder.append(pipeline)
    for t, service, category in stream:
        pipeline.add("complaints", {"event_time": t, "service": service, "category": category})
    closed_before_finish = len(rec.windows)
    pipeline.finish()

    t = np.array([s[0] for s in stream], dtype=np.int64)
    late = columnar.late_mask(t, W, LATE)
    assert int(late.sum()) == pipeline.late and pipeline.late > 0
    services = sorted({s[1] for s in stream})
    cell = np.array([services.index(s[1]) for s in stream], dtype=np.int64)
    n = len(stream)
    rec_idx = np.concatenate([np.arange(n), np.arange(n)])
    counter = np.concatenate(
        [np.zeros(n, dtype=np.int64), [_CMP.get(s[2], _CMP["other"]) for s in stream]]
    )
    amount = np.ones(2 * n, dtype=np.int64)
    wc = columnar.window_cells(t, cell, ~late, rec_idx, counter, amount, W, width=7)
    starts, first = np.unique(wc.window, return_index=True)
    got = []
    bounds = [*first.tolist(), len(wc.cell)]
    for j, start in enumerate(starts.tolist()):
        cells = {}
        for r in range(bounds[j], bounds[j + 1]):
            cells[services[wc.cell[r]]] = wc.counts[r].tolist()
        got.append((start, cells))
    expected = [
        (start, {svc: counts for svc, by_key in fam["complaints"].items()
                 for counts in by_key.values()})
        for start, fam, _ in rec.windows
    ]  # fmt: skip
    assert [(s, list(c.items())) for s, c in got] == [(s, list(c.items())) for s, c in expected]
    points = columnar.close_points(t, starts, W, LATE).tolist()
    assert (
        points[:closed_before_finish] == [seen for _, _, seen in rec.windows][:closed_before_finish]
    )
    assert all(p == n for p in points[closed_before_finish:])


def _windows_of(wc: columnar.WindowCells, names: list[str]) -> list[tuple[int, list[Any]]]:
    starts, first = np.unique(wc.window, return_index=True)
    bounds = [*first.tolist(), len(wc.cell)]
    return [
        (
            start,
            [(names[wc.cell[r]], wc.counts[r].tolist()) for r in range(bounds[j], bounds[j + 1])],
        )
        for j, start in enumerate(starts.tolist())
    ]


@pytest.mark.parametrize("seed", range(6))
def test_updates_into_other_cells_match_the_pipeline(seed: int) -> None:
    # OTP records decide earlier codes' outcomes in those codes' cells: the windows of
    # window_cells with per-update cells are the pipeline's, disorder and late records included.
    rng = random.Random(seed)
    holder: list[OfflinePipeline] = []
    rec = _Recorder(holder)
    pipeline = OfflinePipeline(W, LATE, engine=rec)  # type: ignore[arg-type]
    holder.append(pipeline)
    ops = ["viettel", "mobifone", "vina"]
    t, stream = T0, []
    for i in range(800):
        t += rng.randrange(0, 2_000)
        jitter = rng.choice([0, 0, 0, -3_000, -9_000, -40_000])
        code = f"c{rng.randrange(i + 1)}" if rng.random() < 0.6 else f"c{i}"
        stage = rng.choice(["requested", "requested", "delivered", "verified", "expired", "sent"])
        stream.append({"event_time": t + jitter, "service": "s", "stage": stage, "otp_id": code,
                       "operator": rng.choice(ops), "provider": "p"})  # fmt: skip
    for r in stream:
        pipeline.add("otp", r)
    pipeline.finish()

    times = np.array([r["event_time"] for r in stream], dtype=np.int64)
    late = columnar.late_mask(times, W, LATE)
    assert int(late.sum()) == pipeline.late > 0
    cell = np.array([ops.index(r["operator"]) for r in stream], dtype=np.int64)
    where, counter, into = [], [], []
    deadlines: OtpDeadlines[str, int] = OtpDeadlines()
    for i, r in enumerate(stream):  # the record's own count, then the outcomes it decides
        where.append(i), counter.append(_OTP[r["stage"]]), into.append(int(cell[i]))
        for c, ok in deadlines.step(r["event_time"], r["stage"], r["otp_id"], int(cell[i])):
            (
                where.append(i),
                counter.append(_OTP["in_time" if ok else "not_in_time"]),
                into.append(c),
            )
    assert any(c != cell[w] for w, c in zip(where, into, strict=True))  # some other cells
    wc = columnar.window_cells(
        times, cell, ~late, np.array(where), np.array(counter), np.ones(len(where), dtype=np.int64),
        W, len(_OTP), np.array(into),
    )  # fmt: skip
    names = [SEP.join(("s", op, "p")) for op in ops]
    expected = [(start, list(fam["otp"]["s"].items())) for start, fam, _ in rec.windows]
    assert _windows_of(wc, names) == expected


@pytest.mark.parametrize("seed", range(8))
def test_zero_reads_match_account_balances(seed: int) -> None:
    rng = random.Random(seed)
    state = AccountBalances()
    accounts, reads, changes, has, values, expected = [], [], [], [], [], []
    for _ in range(2_000):
        account = rng.randrange(30)
        kind = rng.choice(["read", "read", "change", "bank_link_added"])
        record: dict[str, Any] = {"service": "s", "kind": kind, "account_id": f"a{account}"}
        balance = rng.choice([None, 0, 0.0, -0.0, 5, -3, 1e9, 0])
        if balance is not None:
            record["balance"] = balance
        hit = any(u[2] == 2 for u in state.observe(record))
        accounts.append(account)
        reads.append(kind == "read")
        changes.append(kind == "change")
        has.append(balance is not None)
        values.append(0.0 if balance is None else float(balance))
        expected.append(hit)
    got = columnar.zero_reads(
        np.array(accounts),
        np.array(reads),
        np.array(changes),
        np.array(has),
        np.array(values, dtype=np.float64),
    )
    assert got.tolist() == expected and any(expected)


def test_empty_inputs() -> None:
    z = np.zeros(0, dtype=np.int64)
    assert columnar.late_mask(z, W, LATE).tolist() == []
    wc = columnar.window_cells(z, z, np.zeros(0, dtype=bool), z, z, z, W, 3)
    assert wc.counts.shape == (0, 3)
    no = z.astype(bool)
    assert columnar.zero_reads(z, no, no, no, z.astype(float)).tolist() == []
