"""``streams.report``: what the recorder keeps (bounded), the report directory, the plots."""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from detectors.engine import Anomaly, DetectionEngine, Segment, Signal
from detectors.incidents import Incident, IncidentUpdate
from detectors.latency import LatencyShift
from streams.errors import RadarError
from streams.evaluate import Label, Match, RunStats
from streams.report import (
    SeriesRecorder,
    _cheap_observed,
    _explained,
    prepare_report_dir,
    write_report,
)

W = 10_000  # window, ms
T0 = 1_760_832_000_000  # 2025-10-19T00:00Z
MIN = 60_000
SIGNALS = {s.name: s for s in DetectionEngine(W).signals}
RATE = SIGNALS["logins.success_rate"]
COUNT = SIGNALS["complaints.volume"]
NORTH = Segment("wallet", "region", "north")
SOUTH = Segment("wallet", "region", "south")


@dataclass(frozen=True)
class Evidence:
    observed: float | None
    expected: float
    lower_bound: float
    upper_bound: float
    score: float = 9.0


class FakeDetector:
    """Explains like the real ones (the fields every evidence shares) and counts the calls."""

    def __init__(self) -> None:
        self.explained = 0

    def explain(self, x: dict[str, Any]) -> Evidence:
        self.explained += 1
        n = x.get("trials")
        if n is not None:
            return Evidence(x["successes"] / n if n else None, 0.98, 0.9, 1.0)
        return Evidence(float(x["count"]), 5.0, 1.0, 12.0)


def feed(
    rec: SeriesRecorder,
    det: FakeDetector,
    start: int,
    end: int,
    series: list[tuple[Signal, Segment]],
    bad: tuple[int, int] = (0, 0),
    updates: dict[int, list[IncidentUpdate]] | None = None,
    into: list[IncidentUpdate] | None = None,
) -> None:
    """Windows ``[start, end)``: each series scored once per window; a rate collapses to 10 %
    during ``bad``; ``updates[t]`` are appended to ``into`` after window ``t`` (as the
    pipeline does after the engine scored it)."""
    for t in range(start, end, W):
        for signal, seg in series:
            broken = bad[0] <= t < bad[1]
            if signal is RATE:
                x = {"successes": 2 if broken else 19, "trials": 20}
            else:
                x = {"t": t, "count": 3}
            rec(signal, seg, t, x, 8.0 if broken else 0.5, broken, det)
        for u in (updates or {}).get(t, []):
            assert into is not None
            if u.action == "resolve":  # as the incident manager does
                u.incident.resolved_at_ms = u.at_ms
            into.append(u)
    rec.finish()


def incident(opened: int, seg: Segment = NORTH, cause: str = "login_outage") -> Incident:
    inc = Incident(key=f"{seg.service}/{opened}", opened_at_ms=opened, cause_class=cause)
    inc.anomalies.append(
        Anomaly("open", RATE, seg, opened, opened - W, opened, Evidence(0.1, 0.98, 0.9, 1.0), 1)
    )
    return inc


def opened_and_resolved(inc: Incident, resolved: int) -> dict[int, list[IncidentUpdate]]:
    """The updates the pipeline would append: ``open`` after the window ending at
    ``opened_at_ms``, ``resolve`` after the one ending at ``resolved``."""
    return {
        inc.opened_at_ms - W: [IncidentUpdate("open", inc, inc.opened_at_ms, tuple(inc.anomalies))],
        resolved - W: [IncidentUpdate("resolve", inc, resolved, ())],
    }


def test_ring_buffers_alone_hold_at_most_margin_windows_per_series() -> None:
    rec = SeriesRecorder([], W, margin_ms=10 * MIN, explain_every=6)
    det = FakeDetector()
    series = [(RATE, NORTH), (RATE, SOUTH), (COUNT, Segment("wallet"))]
    feed(rec, det, T0, T0 + 24 * 60 * MIN, series)  # a day of windows
    assert rec.scored == 3 * 8640
    assert rec.kept == {}
    assert all(len(ring) == rec.ring_len == 60 for ring in rec.recent.values())
    assert rec.peak_held == rec.held == 3 * 60
    # The ring explains every 6th window (rates and counts can be read without it).
    assert det.explained == rec.explained == 3 * 8640 // 6


def test_label_segments_are_kept_around_the_label_window_only() -> None:
    label = Label("L1", "synthetic", T0 + 5 * 60 * MIN, T0 + 5 * 60 * MIN + 20 * MIN,
                  [{"service": "wallet", "region": "north"}], "login_outage")  # fmt: skip
    rec = SeriesRecorder([label], W, margin_ms=10 * MIN, explain_every=6)
    det = FakeDetector()
    feed(rec, det, T0, T0 + 12 * 60 * MIN, [(RATE, NORTH), (RATE, SOUTH)])
    assert list(rec.kept) == [(RATE.name, NORTH)]  # the south is not named by the label
    points = rec.kept[(RATE.name, NORTH)].points
    # The margin before the label, every window explained, to the margin after it; before
    # that, what the ring buffer held (every 6th window explained).
    held_from = label.start - 10 * MIN
    assert points[0].t == held_from - 10 * MIN
    assert points[-1].t == label.end + 10 * MIN
    assert [p.t for p in points] == list(range(points[0].t, points[-1].t + 1, W))
    assert all(p.expected is not None for p in points if p.t >= held_from)
    ring_part = [p for p in points if p.t < held_from]
    assert sum(p.expected is not None for p in ring_part) == len(ring_part) // 6
    assert rec.peak_held <= 2 * rec.ring_len + len(points)


def test_an_incident_pins_its_series_with_the_margin_before_and_after() -> None:
    rec = SeriesRecorder([], W, margin_ms=10 * MIN)
    det = FakeDetector()
    updates: list[IncidentUpdate] = []
    rec.follow(updates)
    opened, resolved = T0 + 60 * MIN, T0 + 80 * MIN
    inc = incident(opened)
    plan = opened_and_resolved(inc, resolved)
    feed(rec, det, T0, T0 + 3 * 60 * MIN, [(RATE, NORTH), (RATE, SOUTH)],
         bad=(opened - W, resolved - 3 * W), updates=plan, into=updates)  # fmt: skip
    assert list(rec.kept) == [(RATE.name, NORTH)]
    assert id(inc) in rec.pinned and rec.pinned[id(inc)].keys == [(RATE.name, NORTH)]
    points = rec.kept[(RATE.name, NORTH)].points
    assert points[0].t <= opened - 10 * MIN + W  # the ring's margin before the opening
    assert points[-1].t == resolved + 10 * MIN  # the margin after the resolve, then no more
    assert all(p.flagged for p in points if opened - W <= p.t < resolved - 3 * W)
    assert all(p.expected is not None for p in points if p.flagged)
    assert rec.open_holds[(RATE.name, NORTH)] == 0


def test_false_incidents_beyond_the_cap_are_not_recorded() -> None:
    rec = SeriesRecorder([], W, margin_ms=5 * MIN, max_false=1)
    det = FakeDetector()
    updates: list[IncidentUpdate] = []
    rec.follow(updates)
    first, second = incident(T0 + 30 * MIN), incident(T0 + 90 * MIN, SOUTH)
    plan = {**opened_and_resolved(first, T0 + 40 * MIN),
            **opened_and_resolved(second, T0 + 100 * MIN)}  # fmt: skip
    feed(rec, det, T0, T0 + 2 * 60 * MIN, [(RATE, NORTH), (RATE, SOUTH)],
         updates=plan, into=updates)  # fmt: skip
    assert list(rec.pinned) == [id(first)]
    assert rec.false_unpinned == 1
    assert list(rec.kept) == [(RATE.name, NORTH)]


def test_a_long_incident_keeps_its_start_and_its_latest_windows() -> None:
    rec = SeriesRecorder([], W, margin_ms=5 * MIN, max_span_ms=60 * MIN)
    det = FakeDetector()
    updates: list[IncidentUpdate] = []
    rec.follow(updates)
    inc = incident(T0 + 30 * MIN)  # never resolves
    feed(rec, det, T0, T0 + 10 * 60 * MIN, [(RATE, NORTH)],
         updates=opened_and_resolved(inc, T0 + 99 * 60 * MIN), into=updates)  # fmt: skip
    series = rec.kept[(RATE.name, NORTH)]
    assert len(series.points) == rec.max_points == 360
    assert series.tail is not None and len(series.tail) == rec.ring_len == 30
    assert series.tail[-1].t == T0 + 10 * 60 * MIN - W
    assert series.dropped > 0
    assert rec.peak_held <= 360 + 30 + rec.ring_len


def test_prepare_report_dir_creates_it_or_names_the_bad_path(tmp_path: Path) -> None:
    made = prepare_report_dir(tmp_path / "a" / "b")
    assert made.is_dir() and list(made.iterdir()) == []  # the write test leaves nothing
    file = tmp_path / "report.txt"
    file.write_text("x")
    with pytest.raises(RadarError, match=rf"--report {file} is an existing file"):
        prepare_report_dir(file)
    with pytest.raises(RadarError, match=rf"--report {file}/sub cannot be used"):
        prepare_report_dir(file / "sub")


def png_size(path: Path) -> tuple[int, int]:
    """Width and height of a PNG, checking its signature and IHDR chunk."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert head[12:16] == b"IHDR"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def test_write_report_plots_a_label_and_a_false_incident(tmp_path: Path) -> None:
    start = T0 + 60 * MIN
    label = Label("L 1/x", "synthetic", start, start + 10 * MIN,
                  [{"service": "wallet", "region": "north"}], "login_outage")  # fmt: skip
    missed = Label(
        "L2",
        "synthetic",
        T0 + 9 * 60 * MIN,
        T0 + 10 * 60 * MIN,
        [{"service": "pay"}],
        "login_outage",
    )  # fmt: skip (after the data ends)
    rec = SeriesRecorder([label, missed], W, margin_ms=15 * MIN)
    det = FakeDetector()
    updates: list[IncidentUpdate] = []
    rec.follow(updates)
    caught, false = incident(start + W), incident(start + 50 * MIN, SOUTH)
    plan = {**opened_and_resolved(caught, start + 11 * MIN),
            **opened_and_resolved(false, start + 55 * MIN)}  # fmt: skip
    feed(rec, det, T0, T0 + 3 * 60 * MIN, [(RATE, NORTH), (RATE, SOUTH), (COUNT, NORTH)],
         bad=(start, start + 10 * MIN), updates=plan, into=updates)  # fmt: skip
    stats = RunStats(events=1, first_ms=T0, last_ms=T0 + 3 * 60 * MIN, seconds=1.0)
    matches = [Match(label, caught), Match(missed, None)]
    written = write_report(tmp_path, rec, matches, [caught, false], stats, W,
                           ["evaluated 1 events", "evaluate: detected=1/2 ..."])  # fmt: skip
    names = [p.path.name for p in written.plots]
    assert names == ["label-L_1_x.png", f"false-001-wallet_{start + 50 * MIN}.png"]
    for plot in written.plots:
        width, height = png_size(plot.path)
        assert width >= 800 and height >= 250
        assert plot.path.stat().st_size > 20_000  # drawn, not an empty canvas
    index = (tmp_path / "index.md").read_text()
    for name in names:
        assert f"]({name})" in index
    assert re.search(r"`L 1/x +login_outage +detected after +10 s; segment right", index)
    assert "evaluate: detected=1/2 ..." in index
    assert (
        "L2: no plot, no scored window of the series to show from 2025-10-19T08:45:00Z to "
        "2025-10-19T10:15:00Z (the input runs from 2025-10-19T00:00:00Z to 2025-10-19T03:00:00Z)"
    ) in index
    assert written.summary().startswith(f"report: 2 plots and index.md in {tmp_path} (")


def test_a_latency_is_plotted_as_its_mean_not_its_count() -> None:
    x = {"t": T0, "count": 4, "sum": 14_000.0}
    assert _cheap_observed(x) == (False, None)  # the count is not the value plotted
    assert _cheap_observed({"t": T0, "count": 4}) == (True, 4.0)
    assert _explained(T0, x, 0.0, False, LatencyShift()).observed == 3500.0
