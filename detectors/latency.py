"""Slow completions and growing backlogs: "pending too long is an outage even if nothing fails".

`LatencyShift` watches one (signal, segment), e.g. bank-to-wallet transfers from one partner bank
or OTP deliveries through one mobile operator, through what each closed tumbling window saw
complete (how many, and the sum and sum of squares of their latencies) and how many items were
still pending at its end. It says how strongly the window's mean latency rose above the segment's
baseline, judged against its volume (a mean of 2 completions counts little), and how strongly the
backlog grew beyond its normal level: M-PESA's bank transfers were not failing, they were
completing hours late.

Like `detectors.rates.SuccessRateDrop`, it is a River anomaly detector (`score_one` /
`learn_one`) with the decision (`is_anomalous`) and the evidence (`explain`) kept apart from the
score.

"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from river import base

from detectors.counts import _count, _count_bounds, _z_up
from detectors.state import check_version

__all__ = ["LatencyEvidence", "LatencyShift"]

_STATE_VERSION = 1
_HOUR_MS = 3_600_000
#: Mean latencies are floored here (ms) before their logarithm is taken.
_LATENCY_FLOOR_MS = 1e-3


@dataclass(frozen=True, slots=True)
class LatencyEvidence:
    """What one window's completions and backlog looked like against the baseline.

    `observed`, `expected` and the bounds describe the component that carries the score (the
    mean latency in ms, or the backlog in pending items: see `component`); the latency and
    backlog fields describe both.

    Attributes
    ----------
    observed
        Mean latency (ms) or backlog, per `component`; None when the window had neither.
    expected
        Its baseline: the expected mean latency (ms) or backlog.
    lower_bound
        Lowest value still expected for this window (3 standard deviations; for latency, for a
        mean of this many completions).
    upper_bound
        Highest value still expected: above it the evidence exceeds 3 standard deviations.
    score
        `score_one` of the window: the larger of `latency_score` and `backlog_score`.
    volume
        Completions in the window (0.0 without a count).
    warm
        False while a component that has been seen is still warming up.
    direction
        "up" when the scored component is above its baseline, else "none".
    component
        "latency", "backlog" or "none" (the window had neither).
    mean_latency_ms
        `sum / count`, or None without completions.
    expected_latency_ms
        Baseline mean latency per completion, in ms (0.0 before any completions were learned).
    backlog
        Items pending at the end of the window, or None when not reported.
    expected_backlog
        Baseline backlog (0.0 before any backlog was learned).
    latency_score
        Evidence that completions got slower, in standard deviations (0.0 while warming up).
    backlog_score
        Evidence that the backlog grew, in standard deviations (0.0 while warming up).
    latency_ratio
        `mean_latency_ms / expected_latency_ms`, or None.
    backlog_ratio
        `backlog / expected_backlog`, or None.

    """

    observed: float | None
    expected: float
    lower_bound: float
    upper_bound: float
    score: float
    volume: float
    warm: bool
    direction: str
    component: str
    mean_latency_ms: float | None
    expected_latency_ms: float
    backlog: float | None
    expected_backlog: float
    latency_score: float
    backlog_score: float
    latency_ratio: float | None
    backlog_ratio: float | None


class _Latency(NamedTuple):
    """One window's completions against the latency baseline."""

    n: float
    mean: float  # mean latency, ms
    level: float  # bias-corrected log mean latency, comparable with the baseline
    var: float  # its variance: sampling (log(1 + cv2/n)), between windows (tau2), baseline
    cv2: float | None  # this window's own squared coefficient of variation, if sum_sq given
    z: float  # evidence of a rise (>= 0)
    flag: bool


class _Backlog(NamedTuple):
    """One window's backlog against the backlog baseline."""

    b: float
    expected: float
    phi: float
    inflation: float
    z: float
    flag: bool


class _Judgement(NamedTuple):
    latency: _Latency | None
    backlog: _Backlog | None


class LatencyShift(base.AnomalyDetector):
    """Volume-aware detector of slower completions and a growing backlog in one segment.

    Each window brings `{"t": window start (epoch ms), "count": n completions, "sum": total
    latency (ms), "sum_sq": total squared latency (optional), "backlog": items pending
    (optional)}`. Two components are judged, and the score is the larger of the two:

    **Latency.** The mean `m = sum / count` is judged on the log scale, where a heavy right tail
    matters less and a slowdown is a ratio. Under a lognormal approximation, the log of a mean of
    `n` completions has variance `log(1 + cv2 / n)` and sits `log(1 + cv2 / n) / 2` below the log
    of the true mean, where `cv2` is the per-completion squared coefficient of variation: learned
    from `sum_sq` when given (an exponentially forgetting mean over windows, with a prior of 20
    completions at `event_cv`), `event_cv**2` otherwise. The baseline `mu` is a forgetting,
    precision-weighted mean of the bias-corrected `log m` (so small windows count little), and
    the window-to-window wobble beyond sampling noise, `tau2`, is learned from prequential
    residuals. The evidence is

        z_latency = (log m + log(1 + cv2/n) / 2 - mu) / sqrt(log(1 + cv2/n) + tau2 + var(mu))

    so a mean of 2 completions is weak evidence and a mean of 200 strong: with `cv = 1`, one
    completion 3x slower than usual is z = 1.7, fifty completions 3x slower are z = 7.9.

    **Backlog.** Items pending at the window's end: for independent items pending a while (an
    M/G/infinity queue) a Poisson count, here with a learned overdispersion `phi` (variance
    `b + phi b**2`), judged like `detectors.counts.SeasonalCount` judges a surge (continuity-
    corrected signed root of the negative-binomial deviance) against a forgetting mean.

    Scoring and deciding are separate. `is_anomalous` requires, besides `score >= threshold` for
    a component, that its effect matters: latency needs `count >= min_count` and
    `mean >= min_ratio * expected`; the backlog needs `backlog >= min_ratio * expected` and
    `backlog - expected >= min_backlog_excess`. Learning is protected: with `protect=True` a
    window that `is_anomalous` flags is not learned (neither component), and learned values are
    winsorised to 3 standard deviations once warm.

    When it works: latencies whose typical level is stable at the scale of the half-life and
    whose failure mode is a step (a partner bank that stops settling, an SMS route that queues),
    backlogs that normally hover around a level. Completions stopping altogether leave the
    latency unobserved, but the backlog then grows: feed it whenever the source can count it.

    When it fails:

    * Cold start: both components are neutral (score 0.0, nothing flagged) until each has
      learned `warmup` windows. There is no cold-start rule: a latency or a backlog is only
      "too high" against the segment's own normal.
    * Latency and backlog have no daily seasonality here: a backlog that doubles every evening
      is followed with the half-life, and a ramp that doubles it within a half-life may be
      flagged; give such a signal a shorter half-life, or pass a backlog normalised by traffic.
    * Completions of items that were stuck arrive late and slow: the latency evidence lags the
      backlog's; the backlog is the early signal.
    * The mean is not robust to extreme completions in a small window: the volume-aware
      variance, the learned `cv2` and `min_count` keep most from paging, but the lognormal
      approximation's tail is too light there (at 5 completions a window with a lognormal spread
      of 0.6, one completion 12x the median flags about 7e-5 of windows).
    * A lasting slowdown is never learned (protected): call `rebaseline` once it is normal.

    Missing or None `count`/`sum`, or a count of 0, leaves the latency unobserved; a missing
    `backlog` leaves the backlog unobserved; a window with neither is neutral and not learned.
    Values that are present but impossible (negative, NaN, not numbers, `sum_sq` below
    `sum**2 / count`) raise ValueError.

    Parameters
    ----------
    threshold
        Score (standard deviations) from which `is_anomalous` may say True.
    min_ratio
        Minimum mean latency (and backlog) relative to its baseline for an incident.
    min_count
        Minimum completions in the window for its latency to make an incident.
    min_backlog_excess
        Minimum pending items above the expected backlog for an incident.
    window_ms
        Length of the tumbling windows, in milliseconds (used for the default half-life).
    half_life
        Windows after which a window's weight in the baselines has halved (4 times as many for
        `tau2` and `phi`). None: one hour of windows (360 at 10 s).
    warmup
        Windows each component learns before its score stops being neutral.
    event_cv
        Coefficient of variation of one completion's latency, assumed without `sum_sq` and used
        as the prior with it (1.0: an exponential-like spread).
    protect
        If True, `learn_one` skips windows that `is_anomalous` flags, so that an outage is not
        learned as normal (River's `protect_anomaly_detector`).

    Examples
    --------

    OTP deliveries through one mobile operator: about 40 a window, lognormal latencies around
    2 s, and about 30 messages pending.

    >>> import math, random
    >>> from detectors.latency import LatencyShift

    >>> rng = random.Random(1)
    >>> def window(i, n, scale=1.0, backlog=30):
    ...     latencies = [scale * rng.lognormvariate(math.log(2000), 0.5) for _ in range(n)]
    ...     return {"t": i * 10_000, "count": n, "sum": sum(latencies),
    ...             "sum_sq": sum(v * v for v in latencies), "backlog": backlog}

    >>> detector = LatencyShift()
    >>> for i in range(200):
    ...     x = window(i, rng.randint(30, 50), backlog=rng.randint(20, 40))
    ...     _ = detector.score_one(x)  # score first, then learn
    ...     detector.learn_one(x)
    >>> round(detector.expected_latency_ms), round(detector.expected_backlog)
    (2243, 30)

    The operator's SMS route slows down three-fold: flagged in its first window.

    >>> slow = window(200, 40, scale=3.0)
    >>> detector.is_anomalous(slow)
    True
    >>> evidence = detector.explain(slow)
    >>> evidence.component, evidence.direction, round(evidence.score, 1)
    ('latency', 'up', 14.9)
    >>> round(evidence.mean_latency_ms), round(evidence.upper_bound)
    (7782, 2876)

    One completion that took three times as long is not evidence enough:

    >>> one = window(200, 1, scale=3.0)
    >>> round(detector.score_one(one), 1), detector.is_anomalous(one)
    (2.9, False)

    Messages pile up unsent, with no completion to time: the backlog says it.

    >>> stuck = {"t": 2_010_000, "count": 0, "sum": 0.0, "backlog": 90}
    >>> detector.is_anomalous(stuck), detector.explain(stuck).component
    (True, 'backlog')

    """

    #: Width of `LatencyEvidence.lower_bound` / `upper_bound`, in standard deviations.
    BOUND_SIGMAS = 3.0
    #: Once warm, learned values are winsorised to `expected +- WINSOR_SIGMAS * sd`.
    WINSOR_SIGMAS = 3.0
    #: Squared standardised residuals are capped here before they update `tau2` and `phi`.
    Z2_CAP = 25.0
    #: `tau2` and the backlog's `phi` forget this many times more slowly than the baselines.
    DISPERSION_HALF_LIFE_FACTOR = 4.0
    #: Weight of the `event_cv` prior in the learned `cv2`, in completions.
    CV_PRIOR_COMPLETIONS = 20.0
    #: A window's own `cv2` is capped here before it is learned.
    CV2_CAP = 100.0

    def __init__(
        self,
        threshold: float = 4.0,
        min_ratio: float = 2.0,
        min_count: int = 5,
        min_backlog_excess: float = 10.0,
        window_ms: int = 10_000,
        half_life: float | None = None,
        warmup: int = 30,
        event_cv: float = 1.0,
        protect: bool = True,
    ) -> None:
        if not threshold > 0.0:
            raise ValueError(f"threshold must be > 0 standard deviations, got {threshold!r}")
        if not min_ratio >= 1.0:
            raise ValueError(f"min_ratio must be >= 1, got {min_ratio!r}")
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1 completion, got {min_count!r}")
        if not window_ms > 0:
            raise ValueError(f"window_ms must be > 0 milliseconds, got {window_ms!r}")
        if half_life is not None and not half_life > 0.0:
            raise ValueError(f"half_life must be > 0 windows (or None), got {half_life!r}")
        if warmup < 0:
            raise ValueError(f"warmup must be >= 0 windows, got {warmup!r}")
        if not event_cv > 0.0:
            raise ValueError(f"event_cv must be > 0, got {event_cv!r}")
        self.threshold = threshold
        self.min_ratio = min_ratio
        self.min_count = min_count
        self.min_backlog_excess = min_backlog_excess
        self.window_ms = window_ms
        self.half_life = half_life
        self.warmup = warmup
        self.event_cv = event_cv
        self.protect = protect

        self._decay = 0.5 ** (1.0 / self.half_life_windows)
        self._dispersion_decay = 0.5 ** (
            1.0 / (self.DISPERSION_HALF_LIFE_FACTOR * self.half_life_windows)
        )
        self._log_ratio = math.log(min_ratio)
        # The last window judged (its raw values, judgement): score_one, is_anomalous, explain
        # and learn_one of one window judge it once. Cleared whenever the state changes.
        self._memo: tuple[tuple[Any, ...], _Judgement] | None = None
        self.rebaseline()

    @classmethod
    def _unit_test_params(cls) -> Iterator[dict[str, Any]]:
        yield {}
        yield {"half_life": 10.0, "warmup": 0, "min_count": 1, "protect": False}

    # ------------------------------------------------------------------ state

    def rebaseline(self) -> None:
        """Forget both baselines and their noise estimates, and warm up again.

        The incident manager calls this when it learns that a latency or backlog level is the
        "new normal": with `protect=True` a lasting shift is never learned on its own.

        """
        self._memo = None
        self._level_sum = 0.0  # forgetting sum of precision * log mean latency
        self._level_weight = 0.0  # forgetting sum of precisions
        self._level_weight2 = 0.0  # ... with squared decay: var(mu) = weight2 / weight**2
        self._cv2_sum = 0.0  # forgetting sum of (n - 1) * window cv2
        self._cv2_weight = 0.0  # forgetting sum of (n - 1)
        self._tau2_sum = 0.0
        self._tau2_weight = 0.0
        self._backlog_sum = 0.0
        self._backlog_weight = 0.0
        self._phi_num = 0.0
        self._phi_den = 0.0
        self._latency_windows = 0
        self._backlog_windows = 0

    @property
    def half_life_windows(self) -> float:
        """The baselines' half-life in windows (`half_life`, or one hour of windows)."""
        if self.half_life is not None:
            return float(self.half_life)
        return max(1.0, _HOUR_MS / self.window_ms)

    @property
    def expected_latency_ms(self) -> float:
        """Baseline mean latency per completion, ms (0.0 before any completion is learned)."""
        if self._level_weight <= 0.0:
            return 0.0
        return math.exp(self._level_sum / self._level_weight)

    @property
    def cv2(self) -> float:
        """Squared coefficient of variation of one completion's latency (learned or assumed)."""
        prior = self.CV_PRIOR_COMPLETIONS
        return (self._cv2_sum + prior * self.event_cv**2) / (self._cv2_weight + prior)

    @property
    def tau2(self) -> float:
        """Window-to-window variance of the log mean latency beyond sampling noise (>= 0)."""
        if self._tau2_weight <= 0.0 or self._tau2_sum <= 0.0:
            return 0.0
        return self._tau2_sum / self._tau2_weight

    @property
    def expected_backlog(self) -> float:
        """Baseline backlog (0.0 before any backlog is learned)."""
        if self._backlog_weight <= 0.0:
            return 0.0
        return self._backlog_sum / self._backlog_weight

    @property
    def backlog_dispersion(self) -> float:
        """Overdispersion `phi` >= 0 of the backlog's variance `b + phi * b**2`."""
        return self._phi_num / self._phi_den if self._phi_num > 0.0 else 0.0

    @property
    def warm(self) -> bool:
        """True once every component seen so far has learned `warmup` windows (and one has)."""
        lat, back = self._latency_windows, self._backlog_windows
        if lat == 0 and back == 0:
            return self.warmup == 0
        return (lat == 0 or lat >= self.warmup) and (back == 0 or back >= self.warmup)

    def state_dict(self) -> dict[str, Any]:
        """Parameters and learned state as plain JSON types, for checkpoints.

        `LatencyShift.from_state(d)` rebuilds an identical detector.

        """
        return {
            "version": _STATE_VERSION,
            "params": self._get_params(),
            "level": [self._level_sum, self._level_weight, self._level_weight2],
            "cv2": [self._cv2_sum, self._cv2_weight],
            "tau2": [self._tau2_sum, self._tau2_weight],
            "backlog": [self._backlog_sum, self._backlog_weight],
            "phi": [self._phi_num, self._phi_den],
            "windows": [self._latency_windows, self._backlog_windows],
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> LatencyShift:
        """Rebuild a detector from `state_dict()` output (possibly through JSON)."""
        check_version(cls.__name__, state, _STATE_VERSION)
        detector = cls(**state["params"])
        detector._level_sum, detector._level_weight, detector._level_weight2 = map(
            float, state["level"]
        )
        detector._cv2_sum, detector._cv2_weight = map(float, state["cv2"])
        detector._tau2_sum, detector._tau2_weight = map(float, state["tau2"])
        detector._backlog_sum, detector._backlog_weight = map(float, state["backlog"])
        detector._phi_num, detector._phi_den = map(float, state["phi"])
        detector._latency_windows, detector._backlog_windows = map(int, state["windows"])
        return detector

    # ---------------------------------------------------------------- scoring

    def score_one(self, x: Mapping[Any, Any]) -> float:
        """Evidence of slower completions or a growing backlog, in standard deviations (>= 0).

        The larger of the two components' evidence; a component is neutral (0.0) while it is
        warming up or when the window does not report it.

        """
        lat, back = self._scores(self._judge(x))
        return lat if lat > back else back

    def is_anomalous(self, x: Mapping[Any, Any]) -> bool:
        """Decide whether the window is a slowdown or a backlog worth an incident.

        True iff a warm component reaches `threshold` with its guards: latency needs
        `count >= min_count` and `mean >= min_ratio * expected`; the backlog needs
        `backlog >= min_ratio * expected` and `min_backlog_excess` extra items. No cold-start
        rule: False while the components are warming up.

        """
        j = self._judge(x)
        return bool(
            (j.latency is not None and j.latency.flag) or (j.backlog is not None and j.backlog.flag)
        )

    def explain(self, x: Mapping[Any, Any]) -> LatencyEvidence:
        """The window against the baselines, as an incident reports it.

        Works during warm-up too (`warm` is False and the scores are 0.0).

        """
        j = self._judge(x)
        lat_score, back_score = self._scores(j)
        lat, back = j.latency, j.backlog
        expected_latency = self.expected_latency_ms
        expected_backlog = self.expected_backlog
        component = "none"
        observed: float | None = None
        expected, lower, upper = 0.0, 0.0, 0.0
        if lat is not None and (back is None or lat_score >= back_score):
            component = "latency"
            observed, expected = lat.mean, expected_latency
            if self._level_weight > 0.0:
                # Where the evidence equals BOUND_SIGMAS, for a mean of this many completions.
                centre = math.log(expected_latency) - 0.5 * math.log1p(self.cv2 / lat.n)
                half_width = self.BOUND_SIGMAS * math.sqrt(lat.var)
                lower, upper = math.exp(centre - half_width), math.exp(centre + half_width)
        elif back is not None:
            component = "backlog"
            observed, expected = back.b, back.expected
            if self._backlog_weight > 0.0:
                lower, upper = _count_bounds(
                    back.expected, back.phi, back.inflation, self.BOUND_SIGMAS
                )
        score = lat_score if lat_score > back_score else back_score
        up = observed is not None and observed > expected and self._has_baseline(component)
        return LatencyEvidence(
            observed=observed,
            expected=expected,
            lower_bound=lower,
            upper_bound=upper,
            score=score,
            volume=0.0 if lat is None else lat.n,
            warm=self.warm,
            direction="up" if up else "none",
            component=component,
            mean_latency_ms=None if lat is None else lat.mean,
            expected_latency_ms=expected_latency,
            backlog=None if back is None else back.b,
            expected_backlog=expected_backlog,
            latency_score=lat_score,
            backlog_score=back_score,
            latency_ratio=(
                lat.mean / expected_latency if lat is not None and expected_latency > 0 else None
            ),
            backlog_ratio=(
                back.b / back.expected if back is not None and self._backlog_weight > 0 else None
            ),
        )

    # --------------------------------------------------------------- learning

    def learn_one(self, x: Mapping[Any, Any]) -> None:
        """Update the latency and backlog baselines with one window.

        No-op for a window with neither completions nor a backlog, and (with `protect`) for a
        window that `is_anomalous` flags.

        """
        j = self._judge(x)
        lat, back = j.latency, j.backlog
        if lat is None and back is None:
            return
        if self.protect and ((lat is not None and lat.flag) or (back is not None and back.flag)):
            return
        self._memo = None
        d, dd = self._decay, self._dispersion_decay
        if lat is not None:
            level = lat.level
            if self._level_weight > 0.0:
                mu = self._level_sum / self._level_weight
                sampling = math.log1p(self.cv2 / lat.n)
                var_mu = self._level_weight2 / self._level_weight**2
                r2 = (level - mu) ** 2
                cap = self.Z2_CAP * lat.var
                self._tau2_sum = dd * self._tau2_sum + (r2 if r2 < cap else cap) - sampling - var_mu
                self._tau2_weight = dd * self._tau2_weight + 1.0
                if self._latency_windows >= self.warmup:
                    half_width = self.WINSOR_SIGMAS * math.sqrt(lat.var)
                    level = min(max(level, mu - half_width), mu + half_width)
            precision = 1.0 / (math.log1p(self.cv2 / lat.n) + self.tau2)
            self._level_sum = d * self._level_sum + precision * level
            self._level_weight = d * self._level_weight + precision
            self._level_weight2 = d * d * self._level_weight2 + precision
            if lat.cv2 is not None:
                self._cv2_sum = d * self._cv2_sum + (lat.n - 1.0) * lat.cv2
                self._cv2_weight = d * self._cv2_weight + (lat.n - 1.0)
            self._latency_windows += 1
        if back is not None:
            b = back.b
            if self._backlog_weight > 0.0:
                mu, g = back.expected, back.inflation
                var = mu + back.phi * mu * mu
                r2 = (b - mu) ** 2
                cap = self.Z2_CAP * var * g
                self._phi_num = dd * self._phi_num + (r2 if r2 < cap else cap) / g - mu
                self._phi_den = dd * self._phi_den + mu * mu
                if self._backlog_windows >= self.warmup:
                    half_width = self.WINSOR_SIGMAS * math.sqrt(var * g)
                    b = min(max(b, mu - half_width), mu + half_width)
            self._backlog_sum = d * self._backlog_sum + b
            self._backlog_weight = d * self._backlog_weight + 1.0
            self._backlog_windows += 1

    # ---------------------------------------------------------------- helpers

    def _has_baseline(self, component: str) -> bool:
        if component == "latency":
            return self._level_weight > 0.0
        return component == "backlog" and self._backlog_weight > 0.0

    def _scores(self, j: _Judgement) -> tuple[float, float]:
        lat = 0.0
        if j.latency is not None and self._latency_windows >= self.warmup:
            lat = j.latency.z
        back = 0.0
        if j.backlog is not None and self._backlog_windows >= self.warmup:
            back = j.backlog.z
        return lat, back

    def _judge(self, x: Mapping[Any, Any]) -> _Judgement:
        key = (x.get("count"), x.get("sum"), x.get("sum_sq"), x.get("backlog"))
        memo = self._memo
        if memo is not None and memo[0] == key:
            return memo[1]
        n = _count(x, "count")
        total = _count(x, "sum")
        sum_sq = _count(x, "sum_sq")
        b = _count(x, "backlog")
        lat = None
        if n is not None and total is not None and n > 0.0:
            lat = self._judge_latency(n, total, sum_sq)
        back = None if b is None else self._judge_backlog(b)
        j = _Judgement(lat, back)
        self._memo = (key, j)
        return j

    def _judge_latency(self, n: float, total: float, sum_sq: float | None) -> _Latency:
        mean = total / n
        cv2_window = None
        if sum_sq is not None and n >= 2.0:
            spread = sum_sq - total * total / n
            if spread < -1e-9 * sum_sq:
                raise ValueError(
                    "sum_sq must be at least sum**2 / count (a sum of squares), got "
                    f"sum_sq={sum_sq!r} with sum={total!r}, count={n!r}"
                )
            if mean > 0.0:
                cv2_window = min(self.CV2_CAP, max(0.0, spread) / (n - 1.0) / (mean * mean))
        sampling = math.log1p(self.cv2 / n)
        level = math.log(max(mean, _LATENCY_FLOOR_MS)) + 0.5 * sampling
        if self._level_weight <= 0.0:
            return _Latency(n, mean, level, sampling, cv2_window, 0.0, False)
        mu = self._level_sum / self._level_weight
        var = sampling + self.tau2 + self._level_weight2 / self._level_weight**2
        z = (level - mu) / math.sqrt(var)
        z = z if z > 0.0 else 0.0
        flag = (
            self._latency_windows >= self.warmup
            and z >= self.threshold
            and n >= self.min_count
            and math.log(max(mean, _LATENCY_FLOOR_MS)) - mu >= self._log_ratio
        )
        return _Latency(n, mean, level, var, cv2_window, z, flag)

    def _judge_backlog(self, b: float) -> _Backlog:
        w = self._backlog_weight
        if w <= 0.0:
            return _Backlog(b, 0.0, 0.0, 1.0, 0.0, False)
        # A backlog that was always empty still expects a little: half an item over the windows.
        expected = max(self._backlog_sum / w, 0.5 / (w + 1.0))
        phi = self.backlog_dispersion
        inflation = 1.0 + 1.0 / w
        z = _z_up(b, expected, phi, inflation)
        flag = (
            self._backlog_windows >= self.warmup
            and z >= self.threshold
            and b >= self.min_ratio * expected
            and b - expected >= self.min_backlog_excess
        )
        return _Backlog(b, expected, phi, inflation, z, flag)
