"""Tests for detectors.drift.RateDrift."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from detectors.drift import RateDrift
from detectors.rates import SuccessRateDrop
from tests.detectors.river_conformance import Dataset, credit_card_like, run_river_checks

HOURS_6 = 2160  # 10-second windows


def stream(
    seed: int, volume: float, failure: Callable[[int], float], windows: int
) -> Iterator[dict[str, int]]:
    """Windows of ~``volume`` trials (Poisson) failing at ``failure(i)``."""
    rng = np.random.default_rng(seed)
    for i in range(windows):
        n = int(rng.poisson(volume))
        yield {"successes": n - int(rng.binomial(n, failure(i))), "trials": n}


def ramp(i: int) -> float:
    """1 % failing for 6 hours, then one point more every 10 minutes (60 windows)."""
    return 0.01 if i < HOURS_6 else min(0.5, 0.01 + 0.01 * (i - HOURS_6) / 60)


def first_flag(detector: Any, windows: Iterator[dict[str, int]]) -> int | None:
    found = None
    for i, x in enumerate(windows):
        if found is None and detector.is_anomalous(x):
            found = i
        detector.learn_one(x)
    return found


@pytest.mark.parametrize("volume", [8.0, 50.0, 500.0])
def test_a_slow_rise_of_failures_is_found_where_the_fast_baseline_follows_it(
    volume: float,
) -> None:
    windows = HOURS_6 + 720  # the ramp's first 2 hours: up to 13 % failing
    found = first_flag(RateDrift(), stream(1, volume, ramp, windows))
    assert found is not None and found > HOURS_6
    minutes = (found - HOURS_6) / 6
    # Found once the drop matters (5 points or 10 x, on the 5-minute level): ~6 % failing
    # plus the recent level's lag, later at low volume, where batches span minutes.
    assert 40 < minutes < (75 if volume >= 50 else 110), minutes
    # The 10-minute baseline learns the rise as it comes: never flagged.
    assert first_flag(SuccessRateDrop(), stream(1, volume, ramp, windows)) is None


@pytest.mark.parametrize("volume", [3.0, 50.0, 2000.0])
def test_a_stable_rate_never_drifts(volume: float) -> None:
    # 5 seeds x 2 simulated days; the detector's chance crossings would be far rarer still.
    for seed in range(5):
        detector = RateDrift()
        assert first_flag(detector, stream(seed, volume, lambda i: 0.02, 2 * 8640)) is None
        assert not detector.shifted


def test_a_step_that_ends_clears_the_shift_and_is_not_learned() -> None:
    detector = RateDrift()
    calm = stream(2, 100.0, lambda i: 0.01, HOURS_6)
    step = stream(3, 100.0, lambda i: 0.2, 360)  # one hour at 20 % failing
    after = stream(4, 100.0, lambda i: 0.01, 360)
    assert first_flag(detector, calm) is None
    assert first_flag(detector, step) is not None and detector.shifted
    assert round(detector.expected_rate, 2) == 0.99  # the hour was not learned as normal
    flagged = []
    for i, x in enumerate(after):
        if detector.is_anomalous(x):
            flagged.append(i)
        detector.learn_one(x)
    # The 5-minute recent level forgets the hour within 10 minutes (measured: flags end after
    # 52-55 windows on 5 seeds); then the shift is over.
    assert max(flagged, default=0) < 60, flagged
    assert not detector.shifted and not detector.is_anomalous({"successes": 99, "trials": 100})


def test_neutral_on_missing_counts_and_empty_windows() -> None:
    detector = RateDrift()
    for x in ({"latency_ms": 3.0}, {"successes": 0, "trials": 0}):
        assert detector.score_one(x) == 0.0 and not detector.is_anomalous(x)
        detector.learn_one(x)
    assert detector.explain({}).observed_rate is None


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"reference_half_life": 0.0}, "reference_half_life must be > 0, got 0.0"),
        ({"recent_half_life": 3000.0}, "recent_half_life (3000.0) must be below"),
        ({"max_batch": 0}, "max_batch must be >= 1 window, got 0"),
        ({"prior_rate": 1.0}, "prior_rate must be in (0, 1), got 1.0"),
        ({"min_failure_ratio": 0.5}, "min_failure_ratio must be > 1 (or None), got 0.5"),
    ],
)
def test_bad_parameters_say_which_and_why(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as error:
        RateDrift(**params)
    assert message in str(error.value)


def test_impossible_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="0 <= successes <= trials"):
        RateDrift().learn_one({"successes": 5, "trials": 3})


# ---------------------------------------------------------------- River conformance


@functools.cache
def _drifting_windows(size: int) -> Dataset:
    """A rate at 99 % that drifts down to 70 % over the last third (label 1 past 90 %)."""
    rng = np.random.default_rng(size)
    rows = []
    for t in range(size):
        q = 0.01 if t < 2 * size // 3 else 0.01 + 0.29 * (t - 2 * size // 3) / (size // 3)
        n = int(rng.integers(50, 150))
        rows.append(({"successes": n - int(rng.binomial(n, q)), "trials": n}, int(q > 0.1)))
    return Dataset(rows)


def _datasets(model: Any, scale: int = 1) -> Iterator[Dataset]:
    yield credit_card_like(1000 * scale)
    yield _drifting_windows(1000 * scale)


@pytest.mark.parametrize("params", list(RateDrift._unit_test_params()), ids=str)
def test_river_checks(params: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    model = RateDrift(**params)
    ran = run_river_checks(model, _datasets, monkeypatch)
    assert {"check_roc_auc", "check_emerging_features", "check_bounded_memory_growth"} <= set(ran)
    assert len(ran) >= 30
