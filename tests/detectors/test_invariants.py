"""Tests for detectors.invariants.InvariantBurst."""

from __future__ import annotations

import dataclasses
import doctest
import functools
import json
import random
from collections.abc import Iterator
from typing import Any

import pytest

import detectors.invariants
from detectors.invariants import InvariantBurst, InvariantEvidence
from tests.detectors.river_conformance import (
    Dataset,
    credit_card_like,
    roc_auc_score,
    run_river_checks,
)

W = 10_000  # window length, ms
DAY = 8640  # ten-second windows per day
COMMON_EVIDENCE = {
    "observed",
    "expected",
    "lower_bound",
    "upper_bound",
    "score",
    "volume",
    "warm",
    "direction",
}


def window(i: int, violations: int, checked: int | None = 500) -> dict[str, Any]:
    x: dict[str, Any] = {"t": i * W, "violations": violations}
    if checked is not None:
        x["checked"] = checked
    return x


def run(detector: InvariantBurst, counts: list[int], start: int = 0) -> list[bool]:
    """Decide, then learn, one window per count; return the decisions."""
    flags = []
    for i, v in enumerate(counts, start=start):
        x = window(i, v)
        flags.append(detector.is_anomalous(x))
        detector.learn_one(x)
    return flags


# ---------------------------------------------------------------- the decision


def test_one_stray_violation_is_not_an_incident() -> None:
    detector = InvariantBurst()
    assert not detector.is_anomalous(window(0, 1))
    assert detector.score_one(window(0, 1)) == pytest.approx(4 / 3)
    assert run(InvariantBurst(), [0, 0, 1, 0, 0, 0, 0, 0]) == [False] * 8


def test_three_in_one_window_are_an_incident_from_the_first_window() -> None:
    detector = InvariantBurst()  # no baseline needed
    x = window(0, 3)
    assert detector.is_anomalous(x)
    assert detector.score_one(x) == 4.0
    evidence = detector.explain(x)
    assert evidence.observed == 3.0 and evidence.bar == 3
    assert evidence.direction == "up" and evidence.observed > evidence.upper_bound
    assert evidence.violation_rate == pytest.approx(3 / 500)


def test_three_spread_over_five_windows_within_the_span_are_an_incident() -> None:
    flags = run(InvariantBurst(span_windows=6), [1, 0, 1, 0, 1, 0, 0, 0, 0])
    # The third violation completes the burst; the span holds all three one window more.
    assert flags == [False, False, False, False, True, True, False, False, False]


def test_three_spread_wider_than_the_span_are_not() -> None:
    assert not any(run(InvariantBurst(span_windows=6), [1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1]))


def test_a_trickle_of_one_every_twenty_windows_for_a_day_is_never_an_incident() -> None:
    detector = InvariantBurst()
    flags = run(detector, [int(i % 20 == 0) for i in range(DAY)])
    assert not any(flags)
    assert detector.background_rate == pytest.approx(1 / 20, rel=0.15)
    # The trickle does not raise the bar: three in a window are still an incident.
    assert detector.bar == 3
    assert detector.is_anomalous(window(DAY, 3))


def test_a_heavier_trickle_raises_the_bar_only_up_to_its_cap() -> None:
    # Two violations a minute (one every 3 windows) never reach 3 in a span, but make 3 an
    # everyday sight: the bar rises, to 2 x min_violations at most.
    detector = InvariantBurst()
    assert not any(run(detector, [int(i % 3 == 0) for i in range(DAY)]))
    expected = detector.background_rate * detector.span_windows
    assert expected == pytest.approx(2.0, rel=0.1)
    assert detector.bar == 6  # ceil(2 + 3 sqrt(2)) = 7, capped at 6
    trickle_in_span = 1  # window DAY - 3 (DAY is a multiple of 3)
    burst = window(DAY, 5)
    assert detector.explain(burst).observed == 5 + trickle_in_span
    assert detector.is_anomalous(burst)
    assert not detector.is_anomalous(window(DAY, 4))


def test_the_bar_rule() -> None:
    detector = InvariantBurst(min_violations=3, span_windows=6, max_bar_factor=2.0)
    # bar = min(6, max(3, ceil(E + 3 sqrt(E)))) with E = 6 * rate
    cases = [(0.0, 3), (0.05, 3), (0.1, 3), (0.15, 4), (0.2, 5), (0.3, 6), (1.0, 6), (5.0, 6)]
    for rate, bar in cases:
        detector._background_sum = rate * detector._background_weight
        assert detector.bar == bar, rate


def test_decision_is_score_at_least_four() -> None:
    detector = InvariantBurst()
    rng = random.Random(1)
    for i in range(2000):
        x = window(i, rng.choice([0, 0, 0, 0, 0, 1, 2]))
        assert detector.is_anomalous(x) == (detector.score_one(x) >= 4.0)
        evidence = detector.explain(x)
        assert evidence.observed is not None
        assert detector.is_anomalous(x) == (evidence.observed > evidence.upper_bound)
        detector.learn_one(x)


def test_score_grows_with_the_burst_and_is_capped() -> None:
    detector = InvariantBurst()
    scores = [detector.score_one(window(0, v, checked=None)) for v in (0, 1, 2, 3, 6, 30, 3000)]
    assert scores[:5] == pytest.approx([0.0, 4 / 3, 8 / 3, 4.0, 8.0])
    assert scores[5] == 40.0 and scores[6] == InvariantBurst.SCORE_CAP


# ----------------------------------------------------------------- time and gaps


def test_the_span_is_in_event_time_so_gaps_do_not_stretch_it() -> None:
    detector = InvariantBurst(span_windows=6)
    detector.learn_one({"t": 0, "violations": 2})
    # The next window fed is ten minutes later (no windows in between): outside the span.
    assert not detector.is_anomalous({"t": 60 * W, "violations": 1})
    # Within the span it counts, even with windows missing in between.
    assert detector.is_anomalous({"t": 5 * W, "violations": 1})


def test_the_same_window_fed_twice_counts_once() -> None:
    detector = InvariantBurst()
    x = window(0, 2)
    detector.learn_one(x)
    assert detector.explain(x).observed == 2.0  # not 4: the learned copy is this window
    detector.learn_one(x)
    assert detector.n_windows == 1
    assert not detector.is_anomalous(window(1, 0))


def test_without_t_the_last_windows_count() -> None:
    detector = InvariantBurst(span_windows=3)
    for v in (1, 0, 1):
        detector.learn_one({"violations": v})
    # The last span_windows - 1 = 2 windows (0 and 1) plus this one.
    assert detector.explain({"violations": 1}).observed == 2.0
    assert detector.is_anomalous({"violations": 2})


# --------------------------------------------------------------------- learning


def test_protection_keeps_bursts_out_of_the_background() -> None:
    protected, unprotected = (
        InvariantBurst(half_life=100.0),
        InvariantBurst(half_life=100.0, protect=False),
    )
    counts = [0] * 50 + [5] * 20 + [0] * 10
    assert sum(run(protected, counts)) >= 20
    run(unprotected, counts)
    assert protected.background_rate == 0.0
    assert protected.bar == 3
    assert unprotected.bar > 3  # without protection the burst would raise the bar


def test_state_is_bounded() -> None:
    detector = InvariantBurst()
    rng = random.Random(2)
    run(detector, [rng.choice([0, 0, 1]) for _ in range(5000)])
    size = len(json.dumps(detector.state_dict()))
    run(detector, [rng.choice([0, 0, 1]) for _ in range(5000)], start=5000)
    assert len(detector._ring) == detector.span_windows
    assert len(json.dumps(detector.state_dict())) <= size + 40


def test_reset_forgets_everything() -> None:
    detector = InvariantBurst()
    run(detector, [1, 1, 0, 1])
    detector.reset()
    assert detector.state_dict() == InvariantBurst().state_dict()


# ------------------------------------------------------------------ bad data


@pytest.mark.parametrize(
    "x", [{}, {"t": 0}, {"t": 0, "violations": None, "checked": 10}, {"V1": 0.5}]
)
def test_missing_violations_are_neutral_and_not_learned(x: dict[str, Any]) -> None:
    detector = InvariantBurst()
    run(detector, [1, 0, 1])
    before = detector.state_dict()
    assert detector.score_one(x) == 0.0
    assert detector.is_anomalous(x) is False
    detector.learn_one(x)
    assert detector.state_dict() == before
    evidence = detector.explain(x)
    assert evidence.observed is None and evidence.score == 0.0
    assert evidence.direction == "none"


@pytest.mark.parametrize(
    ("x", "match"),
    [
        ({"violations": -1}, "violations"),
        ({"violations": 1.5}, "violations"),
        ({"violations": float("nan")}, "violations"),
        ({"violations": "two"}, "violations"),
        ({"violations": 3, "checked": 2}, "exceed"),
        ({"violations": 1, "checked": -5}, "checked"),
        ({"violations": 1, "t": "now"}, "t must"),
    ],
)
def test_impossible_values_raise(x: dict[str, Any], match: str) -> None:
    detector = InvariantBurst()
    for method in (detector.score_one, detector.learn_one, detector.is_anomalous):
        with pytest.raises(ValueError, match=match):
            method(x)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"min_violations": 0}, "min_violations"),
        ({"min_violations": 2.5}, "min_violations"),
        ({"span_windows": 0}, "span_windows"),
        ({"window_ms": 0}, "window_ms"),
        ({"max_bar_factor": 0.5}, "max_bar_factor"),
        ({"half_life": 0.0}, "half_life"),
    ],
)
def test_invalid_parameters_raise(params: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        InvariantBurst(**params)


# ------------------------------------------------------------------- checkpoints


def test_state_round_trip_through_json_gives_identical_results() -> None:
    detector = InvariantBurst(half_life=200.0)
    rng = random.Random(3)
    run(detector, [rng.choice([0, 0, 0, 1]) for _ in range(300)])
    restored = InvariantBurst.from_state(json.loads(json.dumps(detector.state_dict())))
    assert restored.state_dict() == detector.state_dict()
    assert repr(restored) == repr(detector)
    stream = [window(300 + i, rng.choice([0, 0, 0, 1, 2])) for i in range(100)]
    stream += [{"violations": 2}, window(500, 7)]
    for x in stream:
        assert restored.score_one(x) == detector.score_one(x)
        assert restored.is_anomalous(x) == detector.is_anomalous(x)
        assert restored.explain(x) == detector.explain(x)
        restored.learn_one(x)
        detector.learn_one(x)
    assert restored.state_dict() == detector.state_dict()


def test_unknown_state_version_is_refused() -> None:
    with pytest.raises(ValueError, match="version"):
        InvariantBurst.from_state({**InvariantBurst().state_dict(), "version": 2})


def test_evidence_is_frozen_and_has_the_common_fields() -> None:
    evidence = InvariantBurst().explain(window(0, 1, checked=None))
    assert isinstance(evidence, InvariantEvidence)
    assert {f.name for f in dataclasses.fields(evidence)} >= COMMON_EVIDENCE
    assert evidence.volume == 1.0 and evidence.checked is None  # no `checked`: the violations
    assert (evidence.expected, evidence.lower_bound, evidence.upper_bound) == (0.0, 0.0, 2.0)
    with pytest.raises(AttributeError):
        evidence.score = 1.0  # type: ignore[misc]


def test_doctest_example_runs() -> None:
    # Also collected by --doctest-modules; run here so this file alone covers the example.
    failures, tried = doctest.testmod(
        detectors.invariants, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    )
    assert tried > 10 and failures == 0


# --------------------------------------------------------------- River conformance


@functools.cache
def _violation_windows(size: int) -> Dataset:
    """Stray violations; every 100 windows a burst of 2-5 a window for 3 windows (label 1)."""
    rng = random.Random(size + 1)
    rows = []
    for i in range(size):
        burst = i % 100 >= 97
        v = rng.randint(2, 5) if burst else int(rng.random() < 0.02)
        rows.append(({"t": i * W, "violations": v, "checked": rng.randint(100, 900)}, int(burst)))
    return Dataset(rows)


def _datasets(model: Any, scale: int = 1) -> Iterator[Dataset]:
    scale = min(scale, 4)  # check_bounded_memory_growth asks for 10x; 4x tells growth apart
    yield credit_card_like(200 * scale)
    yield _violation_windows(500 * scale)


@pytest.mark.parametrize("params", list(InvariantBurst._unit_test_params()), ids=str)
def test_river_checks(params: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    # Every River check runs (see river_conformance), on a CreditCard-shaped stream (no
    # violation count: neutral, no exception) and on labelled violation windows; freeze_gc, as
    # in test_counts, keeps check_bounded_memory_growth quick.
    model = InvariantBurst(**params)
    ran = run_river_checks(
        model, _datasets, monkeypatch, skips=model._unit_test_skips(), freeze_gc=True
    )
    assert {"check_roc_auc", "check_emerging_features", "check_bounded_memory_growth"} <= set(ran)
    assert len(ran) >= 30


def test_scores_rank_bursts_above_normal_windows() -> None:
    detector = InvariantBurst()
    scores, labels = [], []
    for x, y in _violation_windows(3000):
        scores.append(detector.score_one(x))
        detector.learn_one(x)
        labels.append(y)
    assert roc_auc_score(labels, scores) > 0.95
