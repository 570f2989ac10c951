"""Success-rate collapse detection, judged against the window's volume.

`SuccessRateDrop` watches one segment (a service, region, partner bank, mobile operator, app
section) through the success/trial counts of its tumbling windows, and says how strongly a window's
success rate has *dropped* below the segment's own baseline. It is a River anomaly detector
(`learn_one` / `score_one`), with the decision (`is_anomalous`) and the evidence (`explain`) kept
apart from the score, as River keeps `ThresholdFilter` apart from the scorer it wraps.

"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from river import base, stats

from detectors.state import check_version

__all__ = ["RateEvidence", "SuccessRateDrop", "practical_floor"]

_STATE_VERSION = 1


@dataclass(frozen=True, slots=True)
class RateEvidence:
    """What one window looked like against the segment's baseline: what an incident reports.

    Attributes
    ----------
    observed_rate
        `successes / trials`, or None when the window had no trials.
    expected_rate
        The baseline success probability the window was judged against.
    lower_bound
        Lowest success rate still expected for a window of this many trials: 3 standard
        deviations (overdispersion and baseline uncertainty included) plus the continuity
        correction `1 / (2 trials)`, clipped to [0, 1]. Below it, the score exceeds 3.
    upper_bound
        Highest success rate expected for this many trials, clipped to [0, 1].
    score
        `SuccessRateDrop.score_one` of the window (0.0 while warming up).
    trials
        Trials in the window.
    successes
        Successes in the window.
    excess_failures
        Failures beyond what the baseline expects: `trials * expected_rate - successes`
        (negative when the window did better than expected).
    drop
        `expected_rate - observed_rate`, in absolute success-rate points (0.0 without trials).
    warm
        False while the detector is still warming up: the expected rate then leans on the prior.
    dispersion
        The overdispersion factor D >= 1 the window was judged with.

    """

    observed_rate: float | None
    expected_rate: float
    lower_bound: float
    upper_bound: float
    score: float
    trials: int
    successes: int
    excess_failures: float
    drop: float
    warm: bool
    dispersion: float

    # The names every detector's evidence shares (see detectors/counts.py).
    @property
    def observed(self) -> float | None:
        return self.observed_rate

    @property
    def expected(self) -> float:
        return self.expected_rate

    @property
    def volume(self) -> float:
        return float(self.trials)

    @property
    def direction(self) -> str:
        return "down" if self.drop > 0 else "none"


class SuccessRateDrop(base.AnomalyDetector):
    """Volume-aware detector of a success-rate drop in one segment (quasi-binomial, online).

    Each window brings `{"successes": k, "trials": n}`. The detector keeps the segment's baseline
    success probability `p` as exponentially forgetting Beta counts (`alpha = decay * alpha + k`,
    `beta = decay * beta + (n - k)`, starting from a prior of `prior_strength` pseudo-trials at
    `prior_rate`), and the window-to-window overdispersion `D >= 1` as an exponentially weighted
    mean (`river.stats.EWMean`) of the squared standardised residual. A window is then judged by
    the likelihood-ratio z of its failures `f = n - k - 1/2` against the `n (1 - p)` expected,

        z_drop = sqrt(2 [f log(f / (n (1 - p))) + (n - f) log((n - f) / (n p))] / (D (1 + n / N)))

    (when `f` exceeds the expected failures; 0 otherwise), the signed root of the binomial
    deviance, scaled by the quasi-likelihood dispersion. `N = alpha + beta` is the baseline's
    effective number of trials; the `(1 + n / N)` factor is the uncertainty of `p` itself (the
    beta-binomial predictive variance): it tends to 1 once the baseline has seen many more
    trials than the window, and it keeps a first big window from being judged against a
    still-weak prior. The `1/2` is the continuity correction for counts. The deviance, not the
    Wald `(n p - k) / sd`, because with only a few failures expected the binomial tail is far
    from normal: on a simulated calm week at low volume, the Wald z raised 8 false incidents,
    mostly quiet segments judged on 5-minute pools with 1-2 failures expected (7 failures where
    1.2 were expected is 4.8 by Wald, 3.4 by the deviance, 3.5 by the exact tail). `score_one`
    is `z_drop`, in standard deviations: a rate that rose scores 0.

    Scoring and deciding are separate. `is_anomalous` requires, besides `score >= threshold`, that
    the drop matters in practice: `drop >= min_drop` success-rate points (or a failure rate at
    least `min_failure_ratio` times the baseline's) **and** `excess_failures >= min_excess`. That
    is the volume-awareness: 3 failures out of 4 trials at night against a 98 % baseline are not
    a 75 % failure rate that pages someone (under 3 failures beyond the 0.08 expected), whereas
    400 failures out of 4000 against a 99 % baseline are. The ratio is for rates that normally
    fail very rarely: requests failing at 4 % instead of 0.3 % is a drop of under 4 points, yet
    13 times the usual failure rate (the idea of SRE burn-rate alerts, which page when an error
    budget burns about 14 times as fast as it may). Only where the baseline expects at least
    one failure in the window: below that, "ten times" is a handful of failures, which chance
    gives some segment of a fleet every day (measured: 6 request errors where 0.48 were
    expected, z = 4.1, on one app section of a calm simulated morning).

    When it works: rates that are stable at the scale of the half-life, fed one window at a time
    in event-time order, with sudden drops (a collapse, a level shift down) to detect. It is fast
    (a few microseconds per window, no arrays) and its state is a handful of floats.

    When it fails:

    * A slow decline, over many half-lives, is learned as the new baseline and never flagged.
    * A lasting level shift down stays anomalous (with `protect=True` it is never learned): the
      incident manager must call `rebaseline` once it is told the level is the new normal.
    * Overdispersion is modelled by one factor `D`, whereas real rates often wobble more, in
      relative terms, in big windows than in small ones: across day/night volume swings `D` is a
      compromise. `min_drop` and `min_excess` are what keep this from paging.
    * Warm-up: `score_one` is neutral (0.0) for the first `warmup` windows with trials. The prior
      still covers cold start: `explain` reports the expected rate and bounds from the prior, and
      `is_anomalous` applies a cold-start rule (observed rate below 0.5 with at least `min_excess`
      excess failures and `min_drop`), so a collapse in the first minute is caught. A segment
      whose *normal* rate is far below `prior_rate` (below 0.5 in particular) needs a fitting
      `prior_rate` (or `rebaseline(rate=...)`), otherwise its first windows are flagged and,
      protected, never learned.
    * Windows must be counts of one segment; mixing segments in one detector mixes baselines.

    Missing `successes` or `trials` (or None) is not an error: the window is neutral (score 0.0)
    and is not learned, as is a window with no trials. Counts that are present but impossible
    (negative, non-integral, `successes > trials`) raise ValueError.

    Parameters
    ----------
    prior_rate
        Success probability assumed before any window is seen, in (0, 1).
    prior_strength
        Weight of the prior, in pseudo-trials (> 0).
    half_life
        Windows after which a window's weight in the baseline (and in `D`) has halved (> 0).
        Only windows with trials count: an idle night does not erase the baseline.
    warmup
        Windows with trials to learn before `score_one` stops being neutral.
    threshold
        Score (standard deviations of drop) from which `is_anomalous` may say True.
    min_drop
        Minimum drop, in absolute success-rate points, for `is_anomalous` to say True, unless
        the failure rate reached `min_failure_ratio` times the baseline's.
    min_failure_ratio
        A failure rate this many times the baseline's matters whatever the drop in points, in
        a window where the baseline expects at least one failure (None: only `min_drop`
        counts).
    min_excess
        Minimum number of failures beyond the baseline's expectation for `is_anomalous`.
    protect
        If True, `learn_one` skips windows that `is_anomalous` flags, so an outage is not learned
        as normal (River's `protect_anomaly_detector`), and, once warm, windows whose drop is,
        at `learn_below` standard deviations, `min_drop` points or more (or `min_failure_ratio`
        times the failure rate), even under `min_excess`: the first windows of a slow-building
        outage at a quiet segment are too weak to flag, but learning them drags the baseline
        down until the outage never is (measured: a mobile operator's delivery ratio learned
        from 0.90 to 0.70 in 13 minutes of codes not delivered, and the outage was missed).
        Other windows scoring `learn_below` or more are learned winsorised, as if they had only
        the failures that score `learn_below`.
    learn_below
        See `protect`. Surprising windows whose drop is not surely a large one are winsorised,
        not left out: left out, they bias the baseline up, and at a few failures per window that
        runs away, since a baseline too high makes every window with a failure score high
        (measured: a region's transaction success rate learned 99.96 % at night, where 50
        successes out of 56 then opened a false incident).

    Examples
    --------

    >>> import random
    >>> from detectors.rates import SuccessRateDrop

    >>> rng = random.Random(42)
    >>> detector = SuccessRateDrop()
    >>> for _ in range(30):
    ...     n = rng.randint(180, 220)
    ...     k = sum(rng.random() < 0.97 for _ in range(n))
    ...     x = {"successes": k, "trials": n}
    ...     _ = detector.score_one(x)  # score first, then learn
    ...     detector.learn_one(x)

    A collapse to 30 % is flagged, with evidence:

    >>> collapse = {"successes": 60, "trials": 200}
    >>> detector.is_anomalous(collapse)
    True
    >>> round(detector.score_one(collapse), 1)
    26.5
    >>> evidence = detector.explain(collapse)
    >>> round(evidence.expected_rate, 3), round(evidence.lower_bound, 3)
    (0.969, 0.922)
    >>> round(evidence.excess_failures, 1)
    133.8

    Three failures out of four is a 75 % failure rate, but only about three failures more than
    expected, and weak evidence for it: the decision says no.

    >>> night = {"successes": 1, "trials": 4}
    >>> round(detector.score_one(night), 1)
    3.5
    >>> detector.is_anomalous(night)
    False

    A rate that normally fails very rarely: 4 % of requests failing instead of 0.3 % is a drop
    of under 4 points, but 13 times the usual failure rate:

    >>> api = SuccessRateDrop()
    >>> for _ in range(30):
    ...     api.learn_one({"successes": 997, "trials": 1000})
    >>> api.is_anomalous({"successes": 432, "trials": 450})
    True

    Protected, the collapse is not learned:

    >>> detector.learn_one(collapse)
    >>> round(detector.expected_rate, 3)
    0.969

    Missing counts are neutral:

    >>> detector.score_one({"latency_ms": 120.0})
    0.0

    """

    #: Cold-start rule: during warm-up, only a window below this success rate can be anomalous.
    COLD_START_MAX_RATE = 0.5
    #: Squared residuals are capped here before they update D, so that one freak window (a single
    #: failure in a one-trial window against a 99.999 % baseline) cannot inflate D for hours.
    Z2_CAP = 25.0
    #: Width of `RateEvidence.lower_bound` / `upper_bound`, in standard deviations.
    BOUND_SIGMAS = 3.0

    def __init__(
        self,
        prior_rate: float = 0.95,
        prior_strength: float = 20.0,
        half_life: float = 60.0,
        warmup: int = 6,
        threshold: float = 4.0,
        min_drop: float = 0.05,
        min_excess: float = 5.0,
        protect: bool = True,
        learn_below: float = 3.0,
        min_failure_ratio: float | None = 10.0,
    ) -> None:
        if not 0.0 < prior_rate < 1.0:
            raise ValueError(f"prior_rate must be in (0, 1), got {prior_rate!r}")
        if not prior_strength > 0.0:
            raise ValueError(f"prior_strength must be > 0 pseudo-trials, got {prior_strength!r}")
        if not half_life > 0.0:
            raise ValueError(f"half_life must be > 0 windows, got {half_life!r}")
        if warmup < 0:
            raise ValueError(f"warmup must be >= 0 windows, got {warmup!r}")
        self.prior_rate = prior_rate
        self.prior_strength = prior_strength
        self.half_life = half_life
        self.warmup = warmup
        self.threshold = threshold
        self.min_drop = min_drop
        self.min_excess = min_excess
        self.protect = protect
        if not learn_below > 0.0:
            raise ValueError(f"learn_below must be > 0 standard deviations, got {learn_below!r}")
        self.learn_below = learn_below
        if min_failure_ratio is not None and not min_failure_ratio > 1.0:
            raise ValueError(
                f"min_failure_ratio must be > 1 (or None), got {min_failure_ratio!r}: it is how "
                "many times the baseline's failure rate a window's must reach"
            )
        self.min_failure_ratio = min_failure_ratio

        self._decay = 0.5 ** (1.0 / half_life)
        self._alpha = 0.0
        self._beta = 0.0
        self._dispersion = stats.EWMean(fading_factor=1.0 - self._decay)
        self._dispersion_seen = False
        self._n_windows = 0
        #: Judge with this detector's overdispersion instead of one learned here (set by the
        #: owner; not a parameter, not in `state_dict`): for a detector of running sums of
        #: that detector's windows. Summed windows share all but one window with the previous
        #: sum, so their residuals are far from independent: the dispersion learned from them
        #: is noisy, and the first minutes of an outage, too weak to flag, enter it again and
        #: again (measured on a mobile operator that stopped delivering codes: its pooled
        #: dispersion went from 1.0 at the onset to 5.4 nine minutes on, its windows' from 1.05
        #: to 2.2; judged with the windows', the outage was found after 370 s, not 560 s).
        #: Under the quasi-binomial model a sum of windows has the windows' `D`.
        self.dispersion_source: SuccessRateDrop | None = None
        self.rebaseline()

    @classmethod
    def _unit_test_params(cls) -> Iterator[dict[str, Any]]:
        yield {}
        yield {"half_life": 10.0, "warmup": 0, "protect": False}

    # ------------------------------------------------------------------ state

    def rebaseline(self, rate: float | None = None, strength: float | None = None) -> None:
        """Forget the baseline and the overdispersion, and start warming up again.

        The incident manager calls this when it learns that a level is the "new normal": with
        `protect=True` a lasting drop is never learned on its own.

        Parameters
        ----------
        rate
            Success probability to restart from (default: `prior_rate`). Pass the new level when
            it is far below `prior_rate`, or the cold-start rule would flag it again.
        strength
            Its weight in pseudo-trials (default: `prior_strength`).

        """
        rate = self.prior_rate if rate is None else rate
        strength = self.prior_strength if strength is None else strength
        if not 0.0 < rate < 1.0:
            raise ValueError(f"rate must be in (0, 1), got {rate!r}")
        if not strength > 0.0:
            raise ValueError(f"strength must be > 0 pseudo-trials, got {strength!r}")
        self._alpha = rate * strength
        self._beta = (1.0 - rate) * strength
        self._dispersion = stats.EWMean(fading_factor=1.0 - self._decay)
        self._dispersion_seen = False
        self._n_windows = 0

    @property
    def expected_rate(self) -> float:
        """Baseline success probability, clipped away from 0 and 1."""
        return self._baseline()[0]

    @property
    def dispersion(self) -> float:
        """Overdispersion factor D >= 1 (1 = binomial noise only)."""
        if self.dispersion_source is not None:
            return self.dispersion_source.dispersion
        return max(1.0, self._dispersion.get())

    @property
    def n_windows(self) -> int:
        """Windows with trials learned since construction or the last `rebaseline`."""
        return self._n_windows

    @property
    def warm(self) -> bool:
        """True once `warmup` windows with trials have been learned."""
        return self._n_windows >= self.warmup

    def state_dict(self) -> dict[str, Any]:
        """Parameters and learned state as plain JSON types, for checkpoints.

        `SuccessRateDrop.from_state(d)` rebuilds an identical detector.

        """
        return {
            "version": _STATE_VERSION,
            "params": self._get_params(),
            "alpha": self._alpha,
            "beta": self._beta,
            "dispersion_mean": self._dispersion.get() if self._dispersion_seen else None,
            "n_windows": self._n_windows,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> SuccessRateDrop:
        """Rebuild a detector from `state_dict()` output (possibly through JSON)."""
        check_version(cls.__name__, state, _STATE_VERSION)
        detector = cls(**state["params"])
        detector._alpha = float(state["alpha"])
        detector._beta = float(state["beta"])
        mean = state["dispersion_mean"]
        if mean is not None:
            # River's EWMean takes its first value as the mean: this restores it exactly.
            detector._dispersion.update(float(mean))
            detector._dispersion_seen = True
        detector._n_windows = int(state["n_windows"])
        return detector

    # ---------------------------------------------------------------- scoring

    def score_one(self, x: Mapping[Any, Any]) -> float:
        """Evidence of a drop, in standard deviations (>= 0; 0.0 when neutral).

        Neutral (0.0) when a count is missing, when the window has no trials, and while warming
        up. A window whose rate rose scores 0.0.

        """
        counts = _counts(x)
        if counts is None or counts[1] == 0 or self._n_windows < self.warmup:
            return 0.0
        k, n = counts
        p, big_n = self._baseline()
        return _drop_z(k, n, p, self.dispersion * (1.0 + n / big_n))

    def is_anomalous(self, x: Mapping[Any, Any]) -> bool:
        """Decide whether the window is a success-rate drop worth an incident.

        True iff `drop >= min_drop` (or the failure rate is `min_failure_ratio` times the
        baseline's, at least one failure expected), `excess_failures >= min_excess` and either
        the detector is warm and `score >= threshold`, or it is warming up and the observed rate
        is below `COLD_START_MAX_RATE` (the cold-start rule). Missing counts or no trials: False.

        """
        counts = _counts(x)
        if counts is None or counts[1] == 0:
            return False
        k, n = counts
        p, big_n = self._baseline()
        excess = n * p - k
        if excess < self.min_excess or k / n > self._floor(n, p):
            return False
        if self._n_windows < self.warmup:
            return k / n < self.COLD_START_MAX_RATE
        return _drop_z(k, n, p, self.dispersion * (1.0 + n / big_n)) >= self.threshold

    def _floor(self, n: int, p: float) -> float:
        return practical_floor(n, p, self.min_drop, self.min_failure_ratio)

    def _surely_matters(self, k: float, n: int, p: float, scale: float) -> bool:
        """Whether `k` successes in `n` trials are, at `learn_below` standard deviations, below
        `_floor`: the window is not only surprising, its drop surely matters. One failure out
        of 3 is a drop of 33 points, but weak evidence of one over 5 points; none out of 5
        against 0.88 is strong evidence of one.
        """
        floor = self._floor(n, p)
        return floor > 0.0 and _drop_z(k, n, floor, scale) >= self.learn_below

    def explain(self, x: Mapping[Any, Any]) -> RateEvidence:
        """The window against the baseline, as an incident reports it.

        Works during warm-up too: the expected rate and the bounds then come mostly from the
        prior (`warm` is False and `score` is 0.0). Missing counts are reported as an empty
        window (no trials, bounds [0, 1]).

        """
        counts = _counts(x)
        k, n = counts if counts is not None else (0, 0)
        p, big_n = self._baseline()
        d = self.dispersion
        if n == 0:
            return RateEvidence(
                observed_rate=None,
                expected_rate=p,
                lower_bound=0.0,
                upper_bound=1.0,
                score=0.0,
                trials=0,
                successes=0,
                excess_failures=0.0,
                drop=0.0,
                warm=self.warm,
                dispersion=d,
            )
        # The same z as the score: observed < lower_bound exactly when the score exceeds
        # BOUND_SIGMAS (the upper bound mirrors the lower one).
        scale = d * (1.0 + n / big_n)
        lower = _rate_at_z(n, p, scale, self.BOUND_SIGMAS)
        observed = k / n
        return RateEvidence(
            observed_rate=observed,
            expected_rate=p,
            lower_bound=lower,
            upper_bound=min(1.0, 2.0 * p - lower),
            score=self.score_one(x),
            trials=n,
            successes=k,
            excess_failures=n * p - k,
            drop=p - observed,
            warm=self.warm,
            dispersion=d,
        )

    # --------------------------------------------------------------- learning

    def learn_one(self, x: Mapping[Any, Any]) -> None:
        """Update the baseline and the overdispersion with one window.

        No-op when a count is missing, when the window has no trials, and (with `protect`) when
        `is_anomalous` flags the window or, warm, the window's drop is surely a large one (see
        `protect`); a warm, protected detector learns any other window scoring `learn_below` or
        more as if it had the successes that score `learn_below`.

        """
        counts = _counts(x)
        if counts is None or counts[1] == 0:
            return
        if self.protect and self.is_anomalous(x):
            return
        k_seen, n = counts
        k: float = k_seen
        p, big_n = self._baseline()
        if self.protect and self.warm:
            scale = self.dispersion * (1.0 + n / big_n)
            if _drop_z(k, n, p, scale) >= self.learn_below:
                if self._surely_matters(k, n, p, scale):
                    return  # the start of an outage, maybe: not learned
                k = max(k, _rate_at_z(n, p, scale, self.learn_below) * n)  # winsorised
        # Prequential residual, standardised without D: its mean square *is* D.
        z2 = (k - n * p) ** 2 / (n * p * (1.0 - p) * (1.0 + n / big_n))
        self._dispersion.update(z2 if z2 < self.Z2_CAP else self.Z2_CAP)
        self._dispersion_seen = True
        self._alpha = self._decay * self._alpha + k
        self._beta = self._decay * self._beta + (n - k)
        self._n_windows += 1

    def _baseline(self) -> tuple[float, float]:
        """(p, N): baseline success probability, clipped, and effective trials behind it."""
        big_n = self._alpha + self._beta
        p = self._alpha / big_n
        eps = 1.0 / (2.0 * big_n)
        eps = min(0.5, eps if eps > 1e-6 else 1e-6)
        if p < eps:
            p = eps
        elif p > 1.0 - eps:
            p = 1.0 - eps
        return p, big_n


def practical_floor(n: float, p: float, min_drop: float, min_failure_ratio: float | None) -> float:
    """The highest success rate of `n` trials whose drop from `p` matters in practice:
    `min_drop` points below it, or `min_failure_ratio` times its failure rate where `p` expects
    at least one failure ("ten times" one expected failure at least, see `SuccessRateDrop`).
    May be 0 or below: then no rate of `n` trials is such a drop.

    >>> round(practical_floor(100, 0.99, 0.05, 10.0), 2)  # 10 % failing, not 6 %
    0.9
    >>> round(practical_floor(50, 0.99, 0.05, 10.0), 2)  # under 1 failure expected: 5 points
    0.94
    """
    floor = p - min_drop
    if min_failure_ratio is not None and n * (1.0 - p) >= 1.0:
        floor = max(floor, 1.0 - min_failure_ratio * (1.0 - p))
    return floor


def _drop_z(k: float, n: float, p: float, scale: float) -> float:
    """Evidence of a drop in standard deviations, >= 0: the signed root of the binomial
    deviance (likelihood-ratio z) of `k` successes in `n` trials against `p`, with a continuity
    correction of 1/2 and the variance scaled by `scale` (overdispersion x baseline
    uncertainty).

    With few failures expected the binomial tail is far from normal: 7 failures where 1.2 were
    expected is 4.8 standard deviations by `(y - mu) / sd` but 3.4 by the deviance, close to
    the exact binomial tail (P = 2.2e-4, 3.5 standard deviations). With many failures expected,
    the two agree near the threshold.

    >>> round(_drop_z(54, 61, 0.98, 1.0), 1)
    3.4
    >>> round(_drop_z(3780, 4000, 0.98, 1.0), 1)  # 220 failures where 80 were expected
    13.0
    """
    f = n - k - 0.5  # failures, continuity-corrected
    mu_f = n * (1.0 - p)
    if f <= mu_f:
        return 0.0
    s = n - f
    dev = f * math.log(f / mu_f)
    if s > 0.0:
        dev += s * math.log(s / (n * p))
    return math.sqrt(max(0.0, 2.0 * dev) / scale)


def _rate_at_z(n: int, p: float, scale: float, z: float) -> float:
    """The success rate of `n` trials that scores exactly `z` against `p` (bisection)."""
    lo, hi = 0.0, float(n)  # successes
    if _drop_z(lo, n, p, scale) < z:
        return 0.0
    for _ in range(50):
        mid = (lo + hi) / 2.0
        if _drop_z(mid, n, p, scale) >= z:
            lo = mid
        else:
            hi = mid
    return min(1.0, max(0.0, lo / n))


def _counts(x: Mapping[Any, Any]) -> tuple[int, int] | None:
    """(successes, trials) from a window, None if either is missing; ValueError if impossible."""
    k = x.get("successes")
    n = x.get("trials")
    if type(k) is int and type(n) is int and 0 <= k <= n:  # the engine's case: no conversion
        return k, n
    if k is None or n is None:
        return None
    try:
        kf = float(k)
        nf = float(n)
    except (TypeError, ValueError):
        raise ValueError(
            f"successes and trials must be numbers, got successes={k!r}, trials={n!r}"
        ) from None
    if not (0.0 <= kf <= nf and kf.is_integer() and nf.is_integer()):
        raise ValueError(
            "successes and trials must be whole counts with 0 <= successes <= trials, "
            f"got successes={k!r}, trials={n!r}"
        )
    return int(kf), int(nf)
