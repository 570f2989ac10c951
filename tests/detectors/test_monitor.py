"""Tests for detectors.monitor.TransactionMonitor: rollups, attribution, incidents."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from detectors.monitor import (
    TXN_COUNTERS,
    TXN_INDEX,
    IncidentChange,
    Segment,
    TransactionMonitor,
    cell_key,
    split_cell,
)
from detectors.windows import AssembledWindow

SERVICE = "wallet"
BANKS = ("ACB", "VCB", "TCB", "BIDV")
REGIONS = ("north", "central", "south")
CHANNELS = ("app", "web")
WINDOW_MS = 60_000
T0 = 1_760_860_800_000
NORMAL = 0.985

Cell = tuple[str, str, str]  # bank, region, channel
RateFn = Callable[[str, str, str], float]


def normal_rate(bank: str, region: str, channel: str) -> float:
    return NORMAL


def make_window(
    rng: np.random.Generator,
    index: int,
    rate: RateFn = normal_rate,
    volume: float = 50.0,
    banks: tuple[str, ...] = BANKS,
    extra: dict[str, list[int]] | None = None,
) -> AssembledWindow:
    """A complete window: every bank x region x channel cell, Poisson volume, binomial outcome."""
    cells: dict[str, list[int]] = {}
    for bank in banks:
        for region in REGIONS:
            for channel in CHANNELS:
                n = int(rng.poisson(volume))
                ok = int(rng.binomial(n, rate(bank, region, channel)))
                pending = int(rng.binomial(1, 0.05))  # pending / late do not count as trials
                counts = [0] * len(TXN_COUNTERS)
                counts[TXN_INDEX["success"]] = ok
                counts[TXN_INDEX["failed"]] = n - ok
                counts[TXN_INDEX["pending"]] = pending
                cells[cell_key(SERVICE, bank, region, channel)] = counts
    if extra:
        cells.update(extra)
    return AssembledWindow(T0 + index * WINDOW_MS, {SERVICE: cells})


def collapse(pred: Callable[[str, str, str], bool], rate: float = 0.15) -> RateFn:
    def fn(bank: str, region: str, channel: str) -> float:
        return rate if pred(bank, region, channel) else NORMAL

    return fn


def run(
    monitor: TransactionMonitor, windows: list[AssembledWindow]
) -> list[tuple[int, IncidentChange]]:
    out: list[tuple[int, IncidentChange]] = []
    for i, w in enumerate(windows):
        out.extend((i, c) for c in monitor.process(w))
    return out


def scenario(
    seed: int, bad: RateFn, warm: int = 40, outage: int = 10, after: int = 12
) -> tuple[list[AssembledWindow], int, int]:
    rng = np.random.default_rng(seed)
    windows = [make_window(rng, i) for i in range(warm)]
    windows += [make_window(rng, warm + i, bad) for i in range(outage)]
    windows += [make_window(rng, warm + outage + i) for i in range(after)]
    return windows, warm, warm + outage


def test_cell_key_round_trip() -> None:
    key = cell_key("wallet", "ACB", "north", "app")
    assert split_cell(key) == {
        "service": "wallet",
        "partner_bank": "ACB",
        "region": "north",
        "channel": "app",
    }
    assert split_cell(cell_key("wallet", None, "north", "app"))["partner_bank"] == "-"


def test_rollup_sums_cells_per_segment_and_skips_missing_bank() -> None:
    m = TransactionMonitor(WINDOW_MS)
    cells = {
        cell_key(SERVICE, "ACB", "north", "app"): [10, 1, 3, 0],
        cell_key(SERVICE, "ACB", "south", "web"): [20, 2, 0, 1],
        cell_key(SERVICE, None, "north", "web"): [5, 0, 0, 0],
    }
    rollups = m._rollup(SERVICE, cells)
    counts = {seg.label: r.counts for seg, r in rollups.items()}
    assert counts == {
        "wallet": [35, 3, 3, 1],
        "wallet/partner_bank=ACB": [30, 3, 3, 1],
        "wallet/region=north": [15, 1, 3, 0],
        "wallet/region=south": [20, 2, 0, 1],
        "wallet/channel=app": [10, 1, 3, 0],
        "wallet/channel=web": [25, 2, 0, 1],
    }
    assert not any(seg.value == "-" for seg in rollups)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_bank_collapse_opens_one_incident_at_the_bank_and_resolves(seed: int) -> None:
    windows, onset, recovery = scenario(seed, collapse(lambda b, r, c: b == "TCB"))
    m = TransactionMonitor(WINDOW_MS)
    changes = run(m, windows)
    opens = [(i, c) for i, c in changes if c.action == "open"]
    resolves = [(i, c) for i, c in changes if c.action == "resolve"]
    assert len(opens) == 1, [c.segment.label for _, c in opens]
    assert len(resolves) == 1
    i_open, opened = opens[0]
    i_resolve, resolved = resolves[0]
    bank = Segment(SERVICE, "partner_bank", "TCB")
    assert opened.segment == bank and resolved.segment == bank
    assert onset <= i_open <= onset + 1, "detected within 2 windows of onset"
    assert recovery <= i_resolve <= recovery + 5, "resolved soon after recovery"
    assert opened.dedup_key == resolved.dedup_key
    assert opened.opened_at_ms == resolved.opened_at_ms == windows[i_open].start_ms + WINDOW_MS
    assert opened.window_end_ms - opened.window_start_ms == WINDOW_MS
    assert opened.cause_class == "partner_bank_failure" and "TCB" in opened.cause
    assert opened.severity == "critical"  # ~98.5 % -> ~15 %
    assert resolved.severity == "info"
    assert opened.evidence.observed_rate is not None and opened.evidence.observed_rate < 0.3
    assert opened.evidence.expected_rate > 0.95
    assert "TCB" in opened.summary and "collapsed" in opened.summary
    assert "recovered" in resolved.summary
    assert resolved.windows_open == i_resolve - i_open + 1


def test_service_wide_collapse_is_one_incident_at_the_service() -> None:
    windows, onset, _ = scenario(4, collapse(lambda b, r, c: True, rate=0.3))
    changes = run(TransactionMonitor(WINDOW_MS), windows)
    opens = [(i, c) for i, c in changes if c.action == "open"]
    assert [c.segment for _, c in opens] == [Segment(SERVICE)]
    assert onset <= opens[0][0] <= onset + 1
    assert opens[0][1].cause_class == "service_failure"
    resolves = [c for _, c in changes if c.action == "resolve"]
    assert [c.segment for c in resolves] == [Segment(SERVICE)]
    assert resolves[0].dedup_key == opens[0][1].dedup_key


def test_region_wide_collapse_is_attributed_to_the_region() -> None:
    windows, onset, _ = scenario(5, collapse(lambda b, r, c: r == "south"))
    changes = run(TransactionMonitor(WINDOW_MS), windows)
    opens = [(i, c) for i, c in changes if c.action == "open"]
    assert [c.segment for _, c in opens] == [Segment(SERVICE, "region", "south")]
    assert onset <= opens[0][0] <= onset + 1
    assert opens[0][1].cause_class == "regional_failure"


def test_channel_collapse_is_attributed_to_the_channel() -> None:
    windows, _, _ = scenario(6, collapse(lambda b, r, c: c == "web"))
    changes = run(TransactionMonitor(WINDOW_MS), windows)
    opens = [c for _, c in changes if c.action == "open"]
    assert [c.segment for c in opens] == [Segment(SERVICE, "channel", "web")]


def test_quiet_bank_with_three_of_four_failed_does_not_page() -> None:
    rng = np.random.default_rng(7)
    m = TransactionMonitor(WINDOW_MS)
    quiet = cell_key(SERVICE, "QUIET", "north", "app")
    windows = [make_window(rng, i, extra={quiet: [4, 0, 0, 0]}) for i in range(40)]
    windows += [make_window(rng, 40 + i, extra={quiet: [1, 3, 0, 0]}) for i in range(10)]
    changes = run(m, windows)
    assert changes == []
    # the detector did see the drop: a high score, but too few excess failures to matter
    ev = m.detector(Segment(SERVICE, "partner_bank", "QUIET")).explain(
        {"successes": 1, "trials": 4}
    )
    assert ev.drop > 0.5
    assert ev.excess_failures < 5


def test_same_collapse_at_volume_does_page() -> None:
    """Control for the quiet-bank test: the same 75 % failure rate at 400 trials pages."""
    rng = np.random.default_rng(7)
    m = TransactionMonitor(WINDOW_MS)
    loud = cell_key(SERVICE, "LOUD", "north", "app")
    windows = [make_window(rng, i, extra={loud: [400, 0, 0, 0]}) for i in range(40)]
    windows += [make_window(rng, 40 + i, extra={loud: [100, 300, 0, 0]}) for i in range(3)]
    opens = [c for _, c in run(m, windows) if c.action == "open"]
    assert [c.segment for c in opens] == [Segment(SERVICE, "partner_bank", "LOUD")]


def test_false_incidents_over_day_night_volume_swings_are_rare_and_only_at_low_volume() -> None:
    # Known weakness, stated rather than hidden behind a lucky seed: judged one window at a
    # time, a low-volume segment (~60..140 trials, ~1 failure expected, 6..9 seen) sometimes
    # crosses the thresholds. Measured (this simulation, 300 windows a run): seeds 0..19 open
    # 7 false incidents, seeds 100..139 open 3; the largest had 139 trials. Pooling evidence
    # across windows (issue 4) is the fix. Until then this pins the rate and the shape: at most
    # 10 over seeds 0..19, and never one at a busy window (>= 200 trials).
    false_incidents = []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        m = TransactionMonitor(WINDOW_MS)
        windows = []
        for i in range(300):
            phase = (math.sin(2 * math.pi * i / 100) + 1) / 2  # a "day" every 100 windows
            volume = 0.5 + 80 * phase**2  # ~12 transactions a window at night, ~1900 at peak
            windows.append(make_window(rng, i, volume=volume))
        false_incidents += [c for _, c in run(m, windows) if c.action == "open"]
    assert len(false_incidents) <= 10, [c.summary for c in false_incidents]
    assert all(c.evidence.trials < 200 for c in false_incidents), [
        c.summary for c in false_incidents
    ]


def test_services_are_independent() -> None:
    rng = np.random.default_rng(9)
    m = TransactionMonitor(WINDOW_MS)
    opens: list[IncidentChange] = []
    bad = collapse(lambda b, r, c: b == "ACB")
    for i in range(50):
        w = make_window(rng, i, bad if i >= 40 else normal_rate)
        other = make_window(rng, i)
        w.groups["card"] = {
            k.replace(SERVICE, "card", 1): v for k, v in other.groups[SERVICE].items()
        }
        opens += [c for c in m.process(w) if c.action == "open"]
    assert [c.segment for c in opens] == [Segment(SERVICE, "partner_bank", "ACB")]


def test_new_bank_appearing_in_a_collapse_opens_an_incident() -> None:
    rng = np.random.default_rng(10)
    m = TransactionMonitor(WINDOW_MS)
    run(m, [make_window(rng, i) for i in range(40)])
    new = cell_key(SERVICE, "NEWB", "north", "app")
    changes = m.process(make_window(rng, 40, extra={new: [10, 290, 0, 0]}))
    assert [(c.action, c.segment) for c in changes] == [
        ("open", Segment(SERVICE, "partner_bank", "NEWB"))
    ]


def test_collapse_in_the_very_first_window_opens_an_incident() -> None:
    """Cold start: a segment's first windows are judged by the prior (rates.py cold-start rule)."""
    m = TransactionMonitor(WINDOW_MS)
    cells = {cell_key(SERVICE, "ACB", "north", "app"): [10, 90, 0, 0]}
    changes = m.process(AssembledWindow(T0, {SERVICE: cells}))
    assert [(c.action, c.segment) for c in changes] == [
        ("open", Segment(SERVICE, "partner_bank", "ACB"))
    ]
    # it stays open while the collapse lasts; after recovery it resolves once the baseline
    # has warmed up on normal windows (warm-up 6 + hold-down 3)
    later: list[tuple[int, IncidentChange]] = []
    for i in range(1, 20):
        counts = [10, 90, 0, 0] if i < 4 else [197, 3, 0, 0]
        cells = {cell_key(SERVICE, "ACB", "north", "app"): counts}
        later += [(i, c) for c in m.process(AssembledWindow(T0 + i * WINDOW_MS, {SERVICE: cells}))]
    assert [(c.action, c.segment.label) for _, c in later] == [
        ("resolve", "wallet/partner_bank=ACB")
    ]
    assert 4 + 3 <= later[0][0] <= 4 + 10
    assert later[0][1].dedup_key == changes[0].dedup_key
