"""Slow, sustained drift of a success rate: what a fast-learning baseline takes for normal.

`SuccessRateDrop` learns its baseline with a half-life of minutes, so that the day's small
changes do not page. A failure rate that creeps up over hours (a partner bank's timeouts growing
with its load) moves that baseline along with it: no single window is ever far below it, and the
rate ends far below where it was without an alarm. `RateDrift` watches the same success/trial
counts against a *long* reference (a half-life of hours) and asks River's drift detector,
`river.drift.PageHinkley`, whether the failures have shifted up in a sustained way; it says the
segment drifted when that shift is also large enough to matter (the same practical rule as
`SuccessRateDrop`: 5 points of success rate, or ten times the failure rate).

"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from river import base, drift, stats

from detectors.rates import RateEvidence, _counts, _drop_z, _rate_at_z, practical_floor

__all__ = ["RateDrift"]


class RateDrift(base.AnomalyDetector):
    """Sustained upward drift of one segment's failure rate against its long-term level.

    Each window brings `{"successes": k, "trials": n}`. The detector keeps

    * a **reference** success probability `p` as exponentially forgetting Beta counts with a
      long half-life (`reference_half_life` windows with trials, default 6 hours of 10-second
      windows), learned only while the segment is not drifting;
    * a **recent** level: the same counts with a short half-life (`recent_half_life`);
    * **batches** of windows, each closed once it expects `batch_failures` failures under `p`
      (or after `max_batch` windows), whose Pearson residual
      `r = (f - b (1 - p)) / sqrt(b p (1 - p) D)` (`f` failures of `b` trials, `D` the
      overdispersion of the batches, learned from those below the reference; `r` clipped to
      +-5) feeds a `river.drift.PageHinkley` in mode "up" (a CUSUM of `r - delta`, no
      forgetting). Batching makes the residuals close to normal at any volume: a quiet
      segment's batch spans many windows, a busy one's one.

    Page-Hinkley's detection marks the segment as *shifted*; it stays shifted until the recent
    level is back within 1 standard deviation of the reference. A window is anomalous when the
    segment is shifted, the recent level including the window is a drop that matters (below
    `practical_floor`: `min_drop` points, or `min_failure_ratio` times the failure rate), has
    `min_excess` failures more than the reference expects, and scores `threshold` or more.
    `score_one` is that score: the likelihood-ratio z of the recent level (window included)
    against the reference, in standard deviations (0.0 while warming up).

    Under no drift the residuals have mean 0 and variance 1, and a CUSUM with `delta = 0.5` and
    threshold 20 crosses by chance about once in 10^9 batches (Siegmund's approximation); a
    shift of 2 standard deviations per batch crosses in ~14 batches.

    `learn_one` sees every window, flagged or not (`sees_every_window`): the recent level and
    the batches must follow the drift to see it end; it keeps the reference from learning while
    shifted itself.

    When it works: rates that are stable at the scale of hours, which degrade over tens of
    minutes to hours. When it fails: a daily cycle in the rate itself (the reference follows the
    day only at its half-life; such a segment needs `reference_half_life` well under the cycle,
    or no drift signal); a drift that starts while the reference is still warming up is part of
    the reference. A collapse is found by `SuccessRateDrop` first; this detector finds it too,
    later.

    Parameters
    ----------
    reference_half_life
        Windows with trials after which a window's weight in the reference has halved (> 0).
    recent_half_life
        The same for the recent level (> 0, below `reference_half_life`).
    batch_failures
        Expected failures under the reference that close a batch (> 0).
    max_batch
        Windows with trials that close a batch anyway (>= 1).
    delta, ph_threshold, min_batches
        Page-Hinkley's `delta` (standard deviations of drift tolerated per batch), `threshold`
        and `min_instances` (batches before it may detect).
    threshold
        Score from which a shifted segment's window is anomalous.
    min_drop, min_failure_ratio, min_excess
        What matters in practice, as in `SuccessRateDrop`.
    prior_rate, prior_strength
        Reference before any window, and its weight in pseudo-trials.
    warmup_failures
        Failures the reference must expect (its effective trials times its failure rate) before
        the detector is warm: the reference of a rare failure needs many trials to be known.

    Examples
    --------

    >>> import random
    >>> from detectors.drift import RateDrift

    A bank's transactions fail at 1 % for 6 hours, then more and more: +1 point every 10
    minutes (60 windows of ~50 trials).

    >>> rng = random.Random(3)
    >>> def window(q):
    ...     n = rng.randint(40, 60)
    ...     return {"successes": sum(rng.random() >= q for _ in range(n)), "trials": n}
    >>> detector = RateDrift()
    >>> for _ in range(2160):
    ...     detector.learn_one(window(0.01))
    >>> found = None
    >>> for i in range(600):
    ...     x = window(0.01 + 0.01 * i / 60)
    ...     if found is None and detector.is_anomalous(x):
    ...         found = i
    ...     detector.learn_one(x)
    >>> found // 60  # tens of minutes into the drift
    5
    >>> evidence = detector.explain(x)
    >>> round(evidence.expected_rate, 3), evidence.observed_rate < 0.91
    (0.989, True)

    """

    #: The engine hands this detector every window, flagged or not (see the class docstring).
    sees_every_window = True
    #: Batch residuals are clipped to this many standard deviations.
    R_CAP = 5.0
    BOUND_SIGMAS = 3.0

    def __init__(
        self,
        reference_half_life: float = 2160.0,
        recent_half_life: float = 30.0,
        batch_failures: float = 5.0,
        max_batch: int = 60,
        delta: float = 0.5,
        ph_threshold: float = 20.0,
        min_batches: int = 12,
        threshold: float = 4.0,
        min_drop: float = 0.05,
        min_failure_ratio: float | None = 10.0,
        min_excess: float = 5.0,
        prior_rate: float = 0.95,
        prior_strength: float = 20.0,
        warmup_failures: float = 20.0,
    ) -> None:
        for name, value in (
            ("reference_half_life", reference_half_life),
            ("recent_half_life", recent_half_life),
            ("batch_failures", batch_failures),
            ("prior_strength", prior_strength),
        ):
            if not value > 0.0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        if not recent_half_life < reference_half_life:
            raise ValueError(
                f"recent_half_life ({recent_half_life!r}) must be below reference_half_life "
                f"({reference_half_life!r}): the recent level is compared with the reference"
            )
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1 window, got {max_batch!r}")
        if not 0.0 < prior_rate < 1.0:
            raise ValueError(f"prior_rate must be in (0, 1), got {prior_rate!r}")
        if min_failure_ratio is not None and not min_failure_ratio > 1.0:
            raise ValueError(f"min_failure_ratio must be > 1 (or None), got {min_failure_ratio!r}")
        self.reference_half_life = reference_half_life
        self.recent_half_life = recent_half_life
        self.batch_failures = batch_failures
        self.max_batch = max_batch
        self.delta = delta
        self.ph_threshold = ph_threshold
        self.min_batches = min_batches
        self.threshold = threshold
        self.min_drop = min_drop
        self.min_failure_ratio = min_failure_ratio
        self.min_excess = min_excess
        self.prior_rate = prior_rate
        self.prior_strength = prior_strength
        self.warmup_failures = warmup_failures
        self._ref_decay = 0.5 ** (1.0 / reference_half_life)
        self._rec_decay = 0.5 ** (1.0 / recent_half_life)
        self.rebaseline()

    @classmethod
    def _unit_test_params(cls) -> Iterator[dict[str, Any]]:
        yield {}
        yield {"reference_half_life": 200.0, "recent_half_life": 10.0, "warmup_failures": 2.0}

    def rebaseline(self) -> None:
        """Forget everything learned (the level an incident saw is the new normal)."""
        self._ref_a = self.prior_rate * self.prior_strength
        self._ref_b = (1.0 - self.prior_rate) * self.prior_strength
        self._rec_a = 0.0
        self._rec_b = 0.0
        self._batch_k = 0
        self._batch_n = 0
        self._batch_windows = 0
        self._ph = drift.PageHinkley(
            min_instances=self.min_batches, delta=self.delta, threshold=self.ph_threshold,
            alpha=1.0, mode="up",
        )  # fmt: skip
        self._dispersion = stats.EWMean(fading_factor=0.05)
        self._dispersion_seen = False
        self._batches = 0
        self.shifted = False

    # ---------------------------------------------------------------- state

    @property
    def expected_rate(self) -> float:
        """The reference success probability, clipped away from 0 and 1."""
        return self._reference()[0]

    @property
    def dispersion(self) -> float:
        """Overdispersion factor D >= 1 of the batches (1 = binomial noise only)."""
        return max(1.0, self._dispersion.get()) if self._dispersion_seen else 1.0

    @property
    def warm(self) -> bool:
        """True once the reference expects `warmup_failures` failures and Page-Hinkley has
        seen `min_batches` batches."""
        p, big_n = self._reference()
        return big_n * (1.0 - p) >= self.warmup_failures and self._batches >= self.min_batches

    def _reference(self) -> tuple[float, float]:
        big_n = self._ref_a + self._ref_b
        eps = max(1e-6, min(0.5, 1.0 / (2.0 * big_n)))
        return min(max(self._ref_a / big_n, eps), 1.0 - eps), big_n

    def _recent(self, x: Mapping[Any, Any]) -> tuple[float, float]:
        """(successes, trials) of the recent level with the window `x` added."""
        counts = _counts(x)
        k, n = counts if counts is not None else (0, 0)
        return self._rec_a + k, self._rec_a + self._rec_b + n

    def _recent_z(self, k: float, n: float) -> float:
        if n <= 0.0:
            return 0.0
        p, big_n = self._reference()
        return _drop_z(k, n, p, self.dispersion * (1.0 + n / big_n))

    # ---------------------------------------------------------------- scoring

    def score_one(self, x: Mapping[Any, Any]) -> float:
        """The recent level (with `x`) against the reference, in standard deviations of drop
        (>= 0; 0.0 while warming up or for a window without counts)."""
        counts = _counts(x)
        if counts is None or counts[1] == 0 or not self.warm:
            return 0.0
        return self._recent_z(*self._recent(x))

    def is_anomalous(self, x: Mapping[Any, Any]) -> bool:
        """True iff warm, shifted (Page-Hinkley detected a sustained rise of the failures), and
        the recent level with `x` is a drop that matters with `min_excess` failures beyond the
        reference, scoring `threshold` or more."""
        counts = _counts(x)
        if counts is None or counts[1] == 0 or not self.shifted or not self.warm:
            return False
        k, n = self._recent(x)
        p, _ = self._reference()
        if n * p - k < self.min_excess:
            return False
        if k / n > practical_floor(n, p, self.min_drop, self.min_failure_ratio):
            return False
        return self._recent_z(k, n) >= self.threshold

    def explain(self, x: Mapping[Any, Any]) -> RateEvidence:
        """The recent level (window included) against the reference."""
        k, n = self._recent(x)
        p, big_n = self._reference()
        d = self.dispersion
        if n <= 0.0:
            return RateEvidence(None, p, 0.0, 1.0, 0.0, 0, 0, 0.0, 0.0, self.warm, d)
        lower = _rate_at_z(max(1, round(n)), p, d * (1.0 + n / big_n), self.BOUND_SIGMAS)
        return RateEvidence(
            observed_rate=k / n,
            expected_rate=p,
            lower_bound=lower,
            upper_bound=min(1.0, 2.0 * p - lower),
            score=self.score_one(x),
            trials=round(n),
            successes=round(k),
            excess_failures=n * p - k,
            drop=p - k / n,
            warm=self.warm,
            dispersion=d,
        )

    # --------------------------------------------------------------- learning

    def learn_one(self, x: Mapping[Any, Any]) -> None:
        """Add one window to the recent level and the open batch (closing it into Page-Hinkley
        when full); to the reference unless shifted. Windows without counts or trials: no-op."""
        counts = _counts(x)
        if counts is None or counts[1] == 0:
            return
        k, n = counts
        self._rec_a = self._rec_decay * self._rec_a + k
        self._rec_b = self._rec_decay * self._rec_b + (n - k)
        self._batch_k += k
        self._batch_n += n
        self._batch_windows += 1
        p, _ = self._reference()
        expected = self._batch_n * (1.0 - p)
        if expected >= self.batch_failures or self._batch_windows >= self.max_batch:
            f = self._batch_n - self._batch_k
            r = (f - expected) / math.sqrt(expected * p * self.dispersion)
            r = max(-self.R_CAP, min(self.R_CAP, r))
            self._ph.update(r)
            self._batches += 1
            if self._ph.drift_detected:
                self.shifted = True
            elif r < 0.0 and not self.shifted:
                # D from the batches that fell short of the reference only: a drift's own
                # residuals, positive, would otherwise inflate D until it hid the drift
                # (measured: D from 1.0 to 4.7 in the first hour of a slow rise at 8 trials
                # per window, and the rise was never flagged). Symmetric noise shows its
                # width on either side.
                self._dispersion.update(r * r)
                self._dispersion_seen = True
            self._batch_k = self._batch_n = self._batch_windows = 0
        if self.shifted and self._recent_z(self._rec_a, self._rec_a + self._rec_b) < 1.0:
            self.shifted = False
        if not self.shifted:
            self._ref_a = self._ref_decay * self._ref_a + k
            self._ref_b = self._ref_decay * self._ref_b + (n - k)
