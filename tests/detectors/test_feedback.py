"""Operator feedback changes what the detectors do, visibly (detectors.feedback)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from detectors.engine import DetectionEngine, EngineWindow
from detectors.feedback import DEDUP_PREFIX, Feedback, FeedbackQueue, apply_feedback
from detectors.incidents import IncidentManager, IncidentUpdate
from detectors.signals import FAMILIES, SEP

W = 10_000
T0 = 1_760_860_800_000
TXN = FAMILIES["transactions"]
Rate = Callable[[int, str], float]


def window(rng: np.random.Generator, i: int, rate: Rate) -> EngineWindow:
    cells = {}
    for bank in ("ACB", "VCB", "TCB", "BIDV"):
        n = int(rng.poisson(60))
        ok = int(rng.binomial(n, rate(i, bank)))
        counts = [0] * len(TXN.counters)
        counts[TXN.index("success")], counts[TXN.index("failed")] = ok, n - ok
        cells[SEP.join(("wallet", bank, "north", "app"))] = counts
    return EngineWindow(T0 + i * W, {"transactions": {"wallet": cells}})


class Run:
    """Engine + manager + feedback queue, fed window by window as the pipeline does."""

    def __init__(self, rate: Rate, seed: int = 1) -> None:
        self.rng = np.random.default_rng(seed)
        self.rate = rate
        self.engine = DetectionEngine(W)
        self.manager = IncidentManager()
        self.queue = FeedbackQueue()
        self.updates: list[IncidentUpdate] = []
        self.log: list[str] = []
        self.i = 0

    def until(self, i_end: int) -> Run:
        while self.i < i_end:
            end = T0 + (self.i + 1) * W
            for fb in self.queue.due(end):
                ups, line = apply_feedback(self.engine, self.manager, fb, end)
                self.updates.extend(ups)
                self.log.append(line)
            anomalies = self.engine.process(window(self.rng, self.i, self.rate))
            self.updates.extend(self.manager.process(end, anomalies))
            self.i += 1
        return self

    def verdict(self, key: str, verdict: str, at_i: int) -> None:
        self.queue.add({"event_id": f"fb-{key}-{verdict}-{at_i}", "event_time": T0 + at_i * W,
                        "dedup_key": DEDUP_PREFIX + key, "verdict": verdict})  # fmt: skip

    def actions(self) -> list[tuple[str, str]]:
        return [(u.action, u.incident.key) for u in self.updates]


def tcb_bad(spans: list[tuple[int, int]], level: float = 0.3) -> Rate:
    def rate(i: int, bank: str) -> float:
        return level if bank == "TCB" and any(a <= i < b for a, b in spans) else 0.99

    return rate


def test_false_alarm_resolves_now_and_the_next_one_needs_more_evidence() -> None:
    run = Run(tcb_bad([(60, 64), (100, 101), (130, 160)])).until(62)
    [(action, key)] = run.actions()
    assert action == "open"
    run.verdict(key, "false_alarm", at_i=63)
    run.until(100)
    assert run.actions() == [("open", key), ("resolve", key)]
    resolve = run.updates[-1]
    assert resolve.at_ms == T0 + 64 * W and resolve.severity == "info"
    assert resolve.incident.verdict == "false_alarm"
    assert "resolved" in run.log[-1]
    # Its last bad window (63) alone no longer opens anything, nor does a one-window blip
    # (window 100); a lasting drop still does, and says why it took two windows.
    run.until(200)
    reopened = [u for u in run.updates[2:] if u.action == "open"]
    assert len(reopened) == 1
    last = reopened[0].incident
    assert last.opened_at_ms == T0 + 131 * W  # first of the two windows (lifecycle time)
    assert last.notes == [
        "needs 2 anomalous windows in a row and 1 more standard deviation(s) of evidence to "
        f"open (false alarm on {key})"
    ]


def test_without_feedback_the_blip_opens_an_incident() -> None:
    """The control for the test above: the one-window blip is seen with default settings."""
    run = Run(tcb_bad([(100, 101)])).until(200)
    assert [a for a, _ in run.actions()] == ["open", "resolve"]


def test_new_normal_rebaselines_so_the_lasting_level_stops_paging() -> None:
    tcb = ("transactions.success_rate", "wallet/partner_bank=TCB")

    def on_tcb(run: Run) -> list[tuple[str, int]]:
        return [(a.action, (a.window_end_ms - T0) // W) for u in run.updates
                for a in u.anomalies if (a.signal.name, a.segment.label) == tcb]  # fmt: skip

    control = Run(tcb_bad([(60, 400)], level=0.8), seed=2).until(400)
    assert on_tcb(control) == [("open", 61)]  # never learned: open to the end
    run = Run(tcb_bad([(60, 400)], level=0.8), seed=2).until(62)
    [(_, key)] = run.actions()
    run.verdict(key, "new_normal", at_i=62)
    run.until(400)
    assert run.actions() == [("open", key), ("resolve", key)]
    assert on_tcb(run) == [("open", 61)]  # resolved by the verdict, never again
    assert run.updates[-1].incident.verdict == "new_normal"
    seg = run.updates[0].incident.segments[0]
    assert run.engine.notes[("transactions.success_rate", seg)] == (
        f"re-baselined (new normal after {key})"
    )


def test_expected_downgrades_an_open_incident_and_says_so() -> None:
    run = Run(tcb_bad([(60, 90)])).until(62)
    [(_, key)] = run.actions()
    assert run.updates[0].severity in ("critical", "error")
    run.verdict(key, "expected", at_i=62)
    run.until(120)
    assert [a for a, _ in run.actions()] == ["open", "update", "resolve"]
    assert run.updates[1].severity == "info" and run.updates[1].incident.verdict == "expected"


def test_confirmed_keeps_severity_and_detectors() -> None:
    run = Run(tcb_bad([(60, 90)])).until(62)
    [(_, key)] = run.actions()
    run.verdict(key, "confirmed", at_i=62)
    run.until(120)
    assert [a for a, _ in run.actions()] == ["open", "update", "resolve"]
    assert run.updates[1].severity == run.updates[0].severity
    assert run.engine.notes == {}


def test_unknown_incident_is_reported_not_applied() -> None:
    run = Run(tcb_bad([])).until(5)
    run.verdict("wallet/123", "false_alarm", at_i=5)
    run.until(10)
    assert run.updates == [] and run.engine.extra_windows == {}
    assert "no incident 'wallet/123'" in run.log[0] and "dedup_key" in run.log[0]


def test_bad_verdict_names_the_value() -> None:
    with pytest.raises(ValueError, match="'maybe'"):
        Feedback.from_record({"event_id": "x", "event_time": 1, "dedup_key": "k",
                              "verdict": "maybe"})  # fmt: skip
