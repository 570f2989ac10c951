"""Seasonal event-count surges, drops and silences, judged against the window's volume.

`SeasonalCount` watches one (signal, segment) through the number of events in each closed
tumbling window: forced logouts, complaints, requests to an app section, transfers from one
partner bank. It learns the segment's usual count for the time of day (and, optionally, the day
of week) online, and says how strongly a window's count rose above or fell below it, in standard
deviations of a negative-binomial count model that is right at 2 events a window and at 20,000.
`SilenceDetector` is its preset for "this partner / topic stopped sending".

Like `detectors.rates.SuccessRateDrop`, each is a River anomaly detector (`score_one` /
`learn_one`) with the decision (`is_anomalous`) and the evidence (`explain`) kept apart from the
score.

"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from river import base

from detectors.state import check_version

__all__ = ["CountEvidence", "SeasonalCount", "SilenceDetector"]

_STATE_VERSION = 1
_MINUTE_MS = 60_000
_DAY_MINUTES = 1_440
_HOUR_MS = 3_600_000

Direction = Literal["up", "down", "both"]
Season = Literal["day", "week", "none"]


@dataclass(frozen=True, slots=True)
class CountEvidence:
    """What one window's count looked like against the segment's seasonal baseline.

    Attributes
    ----------
    observed
        Events in the window, or None when the window carried no count.
    expected
        The count the window was judged against (0.0 before any window has been learned).
    lower_bound
        Lowest count still expected for this window: below it the drop evidence exceeds
        `BOUND_SIGMAS` (3) standard deviations. (A silence run is judged on its total.)
    upper_bound
        Highest count still expected: above it the rise evidence exceeds 3 standard deviations.
    score
        `score_one` of the window: evidence in the watched direction(s), 0.0 while warming up.
    volume
        How much data the window had: its count (0.0 when missing).
    warm
        False while the detector is still warming up (the score is then neutral).
    direction
        "up" or "down": the way the count moved from the expected one, when the detector watches
        that direction; "none" otherwise (no count, no move, or a move it does not watch).
    excess
        `observed - expected` (negative for a drop; 0.0 without a count).
    ratio
        `observed / expected`, or None without a count or a baseline.
    seasonal_expected
        What this time of day (and week) usually sees, from earlier visits of its bucket, or None
        while the bucket has no data (the recent level then stands in).
    recent_level
        Events per window over about the last `half_life` windows.
    correction
        How busy the last `half_life` windows were against their seasonal expectation (1.0 =
        as usual): `expected` is about `seasonal_expected * correction`.
    dispersion
        The learned overdispersion `phi` of the variance `expected + phi * expected**2`
        (0.0 = Poisson).
    silent_windows
        Consecutive windows with a count of 0, this one included (`silence_run` only, else 0).
    silent_expected
        Events expected over those silent windows (`silence_run` only, else 0.0).

    """

    observed: float | None
    expected: float
    lower_bound: float
    upper_bound: float
    score: float
    volume: float
    warm: bool
    direction: str
    excess: float
    ratio: float | None
    seasonal_expected: float | None
    recent_level: float
    correction: float
    dispersion: float
    silent_windows: int
    silent_expected: float


class _Expectation(NamedTuple):
    """The baseline for one window start: what is expected, and how surely."""

    mu: float  # expected count (0.0 without any baseline)
    seasonal: float | None  # the bucket's usual count, None while it has no data
    inflation: float  # variance factor for the baseline's own uncertainty (>= 1)


class _Judgement(NamedTuple):
    """Everything score, decision, evidence and learning need about one window."""

    y: float
    e: _Expectation
    phi: float
    z_up: float
    z_down: float
    silent_windows: int
    silent_expected: float
    flag_up: bool
    flag_down: bool


class SeasonalCount(base.AnomalyDetector):
    """Volume-aware detector of surges, drops and silences in a seasonal count (online).

    Each window brings `{"t": window start in epoch ms, "count": events}`. The baseline has three
    parts, all forgetting exponentially:

    * the **seasonal** count of the window's bucket (`bucket_minutes` of the day; with
      `season="week"` of the week, falling back on the time of day): the mean count of earlier
      visits of the bucket, with a half-life of `season_half_life` seasons. A visit is folded in
      when the next bucket starts, so a bucket's seasonal count only holds earlier days, as
      Holt-Winters uses last season's factor;
    * the **correction**: how busy the last `half_life` windows were against their seasonal
      counts (a ratio of sums, 1.0 = as usual), so a busier day or a holiday lull is followed
      within the hour;
    * the **recent level**: the mean count of the last `half_life` windows.

    The expected count blends `seasonal * correction` with the recent level geometrically,
    `(seasonal * correction)**a * recent**(1 - a)`, where `a` is the bucket's effective number
    of windows over the windows of one visit, capped at 1: the recent level alone until a bucket
    has data (the first day), the seasonal prediction once a full visit has been seen, a blend in
    between (a bucket seen only in part, or not for many seasons). With `season="week"` the
    day-of-week bucket is blended the same way with its time-of-day bucket. Times are bucketed on
    UTC epoch milliseconds; no time zone is needed, since each bucket is learned.

    A window is judged under a negative-binomial model, variance `mu + phi * mu**2`, where `phi`
    (overdispersion: relative window-to-window wobble beyond Poisson noise, plus model error) is
    learned online by the method of moments from prequential residuals. Poisson noise dominates
    at low volume and `phi` at high volume, so the same detector is right for 2 events a window
    and for 20,000. The evidence is the signed root of the negative-binomial deviance with a
    continuity correction of 1/2 event (the likelihood-ratio z: a silence where 20 events were
    expected is z = 5.9, as the exact Poisson tail says, where `(y - mu) / sd` says 4.5), divided
    by the square root of the baseline's own uncertainty, `1 + 1/w_recent + 1/(w_bucket + 1)`.
    `score_one` is the evidence in the watched `direction`, >= 0.

    Scoring and deciding are separate. `is_anomalous` also requires an effect that matters:

    * up: `count - expected >= min_excess` and `count >= min_ratio * expected`;
    * down: `expected >= min_expected` and `count <= expected / min_ratio`.

    With `silence_run=True`, consecutive windows with a count of 0 are judged together as one
    silence (their expected counts add up, their variances too): a partner that sends 2 events a
    window and stops is flagged in its 6th silent window, when about 12 events were expected,
    where no single window is evidence enough. `min_expected` then applies to the run's total.

    Learning is protected and robust: with `protect=True`, `learn_one` skips a window that
    `is_anomalous` would flag in *either* direction (an "up" detector does not learn an outage's
    silence as normal either), and every learned count is winsorised to `expected +- 3 sd` once
    warm, so that a spike below the decision guards moves the baseline little.

    When it works: counts whose daily (weekly) shape repeats, fed once per window, in window
    order, *including windows with 0 events* (the pipeline must emit them: a window that is never
    fed cannot be seen to be silent), with sudden changes to detect: a surge (forced logouts,
    complaints, a request storm), a collapse, a silence. Any window length works (`window_ms`).

    When it fails:

    * Cold start: the score is neutral (0.0) and nothing is flagged for the first `warmup`
      windows. The cold-start rule is that there is none, silence included: without a baseline
      there is nothing for a count to fall short of, and a new segment's first quiet minutes are
      not an outage.
    * The first day, before each bucket has been seen, is predicted by the recent level: a steep
      daily ramp then shows up as model error, which `phi` absorbs, so day 1 is less sensitive.
      With `season="week"` each weekday's first occurrence leans on the time of day.
    * A lasting shift that is flagged window after window (a 5x surge, a silence) is never
      learned (protected): call `rebaseline` once it is the new normal; likewise a new daily
      shape (a campaign every evening) is flagged each day until `rebaseline(keep_season=False)`.
      A shift that is flagged only now and then (3x on a count of 30 with 14 % wobble) creeps in
      through the windows that pass, winsorised, within hours; a slow drift is learned.
    * Holidays and one-off events (a sale, a payday) look like surges or drops: they are, as far
      as a seasonal baseline can tell.
    * `phi` is one number for all hours: if the night wobbles relatively more than the day, night
      windows are judged a little too strictly; `min_excess`, `min_expected` and `min_ratio` are
      what keep that from paging.

    A missing `count` (or None), or a missing `t` while `season` is not "none", is not an error:
    the window is neutral (score 0.0, not anomalous) and is not learned. A count or `t` that is
    present but impossible (negative, NaN, not a number) raises ValueError.

    Parameters
    ----------
    direction
        "up" (surges: forced logouts, complaints, request storms), "down" (drops and silences)
        or "both".
    threshold
        Score (standard deviations) from which `is_anomalous` may say True.
    min_excess
        Up: minimum number of events above the expected count.
    min_expected
        Down: minimum expected count (over the silent run with `silence_run`) for a drop to be
        an incident, so that quiet segments do not page when they go quiet.
    min_ratio
        Relative effect size (>= 1): up needs `count >= min_ratio * expected`, down needs
        `count <= expected / min_ratio`.
    window_ms
        Length of the tumbling windows fed to the detector, in milliseconds.
    bucket_minutes
        Width of a seasonal bucket, in minutes; it must divide a day (1440).
    season
        "day" (time-of-day buckets), "week" (day-of-week x time-of-day buckets, falling back on
        the time of day) or "none" (recent level only; `t` is then not needed).
    half_life
        Windows after which a window's weight in the recent level and the correction has halved
        (in `phi`: 4 times as many). None: one hour of windows (360 at 10 s, 6 at 10 min).
    season_half_life
        Seasons (days; weeks for day-of-week buckets) after which a visit's weight in its
        bucket's seasonal count has halved.
    warmup
        Windows to learn before `score_one` stops being neutral.
    silence_run
        Judge consecutive zero-count windows together as one silence (down only).
    protect
        If True, `learn_one` skips windows that `is_anomalous` would flag in either direction,
        so that an outage is not learned as normal (River's `protect_anomaly_detector`).

    Examples
    --------

    Ten-minute windows; a day/night pattern from 4 events a window at midnight (7 at 03:00) to
    200 at noon.

    >>> import math, random
    >>> from detectors.counts import SeasonalCount

    >>> rng = random.Random(7)
    >>> def usual(t):
    ...     hour = t / 3_600_000 % 24
    ...     return 4 * 50 ** ((1 - math.cos(2 * math.pi * hour / 24)) / 2)
    >>> def poisson(mu):
    ...     k, p, u = 0, math.exp(-mu), rng.random()
    ...     while u > p:
    ...         u -= p
    ...         k += 1
    ...         p *= mu / k
    ...     return k

    >>> detector = SeasonalCount(window_ms=600_000)
    >>> for i in range(4 * 144 + 72):  # four and a half days
    ...     x = {"t": i * 600_000, "count": poisson(usual(i * 600_000))}
    ...     _ = detector.score_one(x)  # score first, then learn
    ...     detector.learn_one(x)

    It is noon on day 5. The daily shape has been learned (03:00 usually sees about 7 events):

    >>> noon = (4 * 144 + 72) * 600_000
    >>> round(detector.seasonal_count(noon - 9 * 3_600_000)), round(detector.seasonal_count(noon))
    (8, 197)

    A surge of forced logouts now is flagged, with evidence:

    >>> surge = {"t": noon, "count": 600}
    >>> detector.is_anomalous(surge)
    True
    >>> evidence = detector.explain(surge)
    >>> evidence.direction, round(evidence.expected), round(evidence.upper_bound)
    ('up', 195, 267)
    >>> round(evidence.score, 1)
    13.2

    A silence where about 200 events are expected is flagged too; the same silence at 03:00,
    where 8 are, is not (below `min_expected`, and within Poisson noise):

    >>> detector.is_anomalous({"t": noon, "count": 0})
    True
    >>> detector.is_anomalous({"t": noon + 15 * 3_600_000, "count": 0})
    False

    Protected, the surge is not learned; a missing count is neutral:

    >>> detector.learn_one(surge)
    >>> round(detector.expected_count(noon))
    195
    >>> detector.score_one({"t": noon})
    0.0

    """

    #: Width of `CountEvidence.lower_bound` / `upper_bound`, in standard deviations.
    BOUND_SIGMAS = 3.0
    #: Once warm, learned counts are winsorised to `expected +- WINSOR_SIGMAS * sd`.
    WINSOR_SIGMAS = 3.0
    #: Squared standardised residuals are capped here before they update `phi`.
    Z2_CAP = 25.0
    #: `phi` forgets this many times more slowly than the recent level.
    DISPERSION_HALF_LIFE_FACTOR = 4.0
    #: Prior weight of the correction, in windows of the recent level at ratio 1.0.
    CORRECTION_PRIOR_WINDOWS = 2.0
    #: The short level forgets this many times faster than the recent level (10 minutes for
    #: the default hour); with `silence_run`, the lower of the two levels is expected.
    SHORT_LEVEL_FACTOR = 6.0

    def __init__(
        self,
        direction: Direction = "both",
        threshold: float = 4.0,
        min_excess: float = 5.0,
        min_expected: float = 5.0,
        min_ratio: float = 2.0,
        window_ms: int = 10_000,
        bucket_minutes: int = 30,
        season: Season = "day",
        half_life: float | None = None,
        season_half_life: float = 3.0,
        warmup: int = 30,
        silence_run: bool = False,
        protect: bool = True,
    ) -> None:
        if direction not in ("up", "down", "both"):
            raise ValueError(f"direction must be 'up', 'down' or 'both', got {direction!r}")
        if season not in ("day", "week", "none"):
            raise ValueError(f"season must be 'day', 'week' or 'none', got {season!r}")
        if not threshold > 0.0:
            raise ValueError(f"threshold must be > 0 standard deviations, got {threshold!r}")
        if not min_ratio >= 1.0:
            raise ValueError(f"min_ratio must be >= 1, got {min_ratio!r}")
        if not window_ms > 0:
            raise ValueError(f"window_ms must be > 0 milliseconds, got {window_ms!r}")
        if (
            isinstance(bucket_minutes, bool)
            or not isinstance(bucket_minutes, int)
            or bucket_minutes <= 0
            or _DAY_MINUTES % bucket_minutes
        ):
            raise ValueError(
                "bucket_minutes must be a whole number of minutes dividing a day (1440), "
                f"got {bucket_minutes!r}"
            )
        if half_life is not None and not half_life > 0.0:
            raise ValueError(f"half_life must be > 0 windows (or None), got {half_life!r}")
        if not season_half_life > 0.0:
            raise ValueError(f"season_half_life must be > 0 seasons, got {season_half_life!r}")
        if warmup < 0:
            raise ValueError(f"warmup must be >= 0 windows, got {warmup!r}")
        self.direction = direction
        self.threshold = threshold
        self.min_excess = min_excess
        self.min_expected = min_expected
        self.min_ratio = min_ratio
        self.window_ms = window_ms
        self.bucket_minutes = bucket_minutes
        self.season = season
        self.half_life = half_life
        self.season_half_life = season_half_life
        self.warmup = warmup
        self.silence_run = silence_run
        self.protect = protect

        self._bucket_ms = bucket_minutes * _MINUTE_MS
        self._day_buckets = _DAY_MINUTES // bucket_minutes
        self._decay = 0.5 ** (1.0 / self.half_life_windows)
        self._short_decay = 0.5 ** (self.SHORT_LEVEL_FACTOR / self.half_life_windows)
        self._dispersion_decay = 0.5 ** (
            1.0 / (self.DISPERSION_HALF_LIFE_FACTOR * self.half_life_windows)
        )
        # A bucket is visited once a season, for bucket_ms / window_ms windows (at least one).
        self._windows_per_visit = max(1.0, self._bucket_ms / window_ms)
        self._season_decay = 0.5 ** (1.0 / (season_half_life * self._windows_per_visit))
        self._watch_up = direction in ("up", "both")
        self._watch_down = direction in ("down", "both")
        self._day_y: list[float] = []
        self._day_w: list[float] = []
        self._week_y: list[float] = []
        self._week_w: list[float] = []
        # The last window judged, (count, t, judgement): score_one, is_anomalous, explain and
        # learn_one of one window judge it once. Cleared whenever the state changes.
        self._memo: tuple[Any, Any, _Judgement] | None = None
        self.rebaseline(keep_season=False)

    @classmethod
    def _unit_test_params(cls) -> Iterator[dict[str, Any]]:
        yield {}
        yield {
            "direction": "up",
            "season": "week",
            "bucket_minutes": 60,
            "half_life": 20.0,
            "warmup": 0,
            "protect": False,
        }
        yield {"direction": "down", "season": "none", "silence_run": True, "warmup": 5}

    # ------------------------------------------------------------------ state

    def rebaseline(self, keep_season: bool = True) -> None:
        """Forget the recent level, the correction, `phi` and any silence run; warm up again.

        The incident manager calls this when it learns that a level is the "new normal": with
        `protect=True` a lasting shift is never learned on its own.

        Parameters
        ----------
        keep_season
            Keep the seasonal counts (the daily shape), so that only the level is re-learned:
            right when the whole day moved (a new partner's traffic, a migration). False forgets
            them too: right when the shape itself changed.

        """
        self._memo = None
        self._recent_sum = 0.0  # forgetting sum of (winsorised) counts
        self._recent_weight = 0.0  # forgetting number of windows behind it
        self._short_sum = 0.0  # the same, forgetting SHORT_LEVEL_FACTOR times faster
        self._short_weight = 0.0
        self._correction_num = 0.0  # forgetting sum of counts in buckets with data
        self._correction_den = 0.0  # ... and of their seasonal counts
        self._phi_num = 0.0
        self._phi_den = 0.0
        self._n_windows = 0
        self._silent_windows = 0
        self._silent_mu = 0.0
        self._silent_mu2 = 0.0
        if keep_season and self._day_y:
            return
        # The bucket visit in progress: absolute bucket index, count sum, windows. Folded into
        # the tables when a window of another bucket is learned.
        self._visit = -1
        self._visit_y = 0.0
        self._visit_n = 0
        self._day_y = [0.0] * self._day_buckets  # per bucket: forgetting sum of counts
        self._day_w = [0.0] * self._day_buckets  # ... and of windows
        week_buckets = 7 * self._day_buckets if self.season == "week" else 0
        self._week_y = [0.0] * week_buckets
        self._week_w = [0.0] * week_buckets

    @property
    def half_life_windows(self) -> float:
        """The recent level's half-life in windows (`half_life`, or one hour of windows)."""
        if self.half_life is not None:
            return float(self.half_life)
        return max(1.0, _HOUR_MS / self.window_ms)

    @property
    def recent_level(self) -> float:
        """Events per window over about the last `half_life` windows (0.0 before any)."""
        return self._recent_sum / self._recent_weight if self._recent_weight > 0.0 else 0.0

    @property
    def short_level(self) -> float:
        """Events per window over about the last `half_life / SHORT_LEVEL_FACTOR` windows."""
        return self._short_sum / self._short_weight if self._short_weight > 0.0 else 0.0

    @property
    def correction(self) -> float:
        """Recent counts over their seasonal counts (1.0 = as usual, or no seasonal data).

        A ratio of forgetting sums with a prior of `CORRECTION_PRIOR_WINDOWS` windows of the
        recent level at ratio 1, so that one odd window cannot scale the whole baseline.

        """
        prior = self.CORRECTION_PRIOR_WINDOWS * self.recent_level
        if prior <= 0.0:
            return 1.0
        return (self._correction_num + prior) / (self._correction_den + prior)

    @property
    def dispersion(self) -> float:
        """Overdispersion `phi` >= 0 of the variance `mu + phi * mu**2` (0 = Poisson)."""
        return self._phi_num / self._phi_den if self._phi_num > 0.0 else 0.0

    @property
    def n_windows(self) -> int:
        """Windows learned since construction or the last `rebaseline`."""
        return self._n_windows

    @property
    def warm(self) -> bool:
        """True once `warmup` windows have been learned."""
        return self._n_windows >= self.warmup

    def expected_count(self, t: int | None = None) -> float:
        """Events expected in the window starting at `t` (epoch ms), as of now.

        Without `t` (or with `season="none"`), the recent level.

        """
        return self._expect(t).mu

    def seasonal_count(self, t: int) -> float | None:
        """The usual count of `t`'s bucket from earlier visits (None while it has no data)."""
        return self._expect(t).seasonal

    def state_dict(self) -> dict[str, Any]:
        """Parameters and learned state as plain JSON types, for checkpoints.

        `SeasonalCount.from_state(d)` (or `SilenceDetector.from_state(d)`) rebuilds an
        identical detector.

        """
        return {
            "version": _STATE_VERSION,
            "params": self._get_params(),
            "recent": [self._recent_sum, self._recent_weight],
            "short": [self._short_sum, self._short_weight],
            "correction": [self._correction_num, self._correction_den],
            "phi": [self._phi_num, self._phi_den],
            "n_windows": self._n_windows,
            "silence": [self._silent_windows, self._silent_mu, self._silent_mu2],
            "visit": [self._visit, self._visit_y, self._visit_n],
            "day": [list(self._day_y), list(self._day_w)],
            "week": [list(self._week_y), list(self._week_w)],
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> SeasonalCount:
        """Rebuild a detector from `state_dict()` output (possibly through JSON)."""
        check_version(cls.__name__, state, _STATE_VERSION)
        detector = cls(**state["params"])
        detector._recent_sum, detector._recent_weight = map(float, state["recent"])
        # A state saved before the short level existed: the recent level stands in for it.
        short = state.get("short", state["recent"])
        detector._short_sum, detector._short_weight = map(float, short)
        detector._correction_num, detector._correction_den = map(float, state["correction"])
        detector._phi_num, detector._phi_den = map(float, state["phi"])
        detector._n_windows = int(state["n_windows"])
        silent_windows, silent_mu, silent_mu2 = state["silence"]
        detector._silent_windows = int(silent_windows)
        detector._silent_mu, detector._silent_mu2 = float(silent_mu), float(silent_mu2)
        visit, visit_y, visit_n = state["visit"]
        detector._visit, detector._visit_n = int(visit), int(visit_n)
        detector._visit_y = float(visit_y)
        day, week = state["day"], state["week"]
        if len(day[0]) != len(detector._day_y) or len(week[0]) != len(detector._week_y):
            raise ValueError("seasonal tables do not match the bucket_minutes / season params")
        detector._day_y, detector._day_w = ([float(v) for v in a] for a in day)
        detector._week_y, detector._week_w = ([float(v) for v in a] for a in week)
        return detector

    # ---------------------------------------------------------------- scoring

    def score_one(self, x: Mapping[Any, Any]) -> float:
        """Evidence of a change in the watched direction(s), in standard deviations (>= 0).

        Neutral (0.0) when the count (or a needed `t`) is missing and while warming up.

        """
        j = self._judge(x)
        if j is None or self._n_windows < self.warmup:
            return 0.0
        return self._directed(j)

    def is_anomalous(self, x: Mapping[Any, Any]) -> bool:
        """Decide whether the window's count is a surge, drop or silence worth an incident.

        True iff the detector is warm and, in a watched direction, the evidence reaches
        `threshold` and the effect guards hold (up: `min_excess` and `min_ratio`; down:
        `min_expected` and `min_ratio`). There is no cold-start rule: False while warming up.

        """
        j = self._judge(x)
        if j is None:
            return False
        return (self._watch_up and j.flag_up) or (self._watch_down and j.flag_down)

    def explain(self, x: Mapping[Any, Any]) -> CountEvidence:
        """The window against the baseline, as an incident reports it.

        Works during warm-up too (`warm` is False and `score` is 0.0). A window without a count
        is reported with `observed=None` against what its `t` would expect.

        """
        warm = self.warm
        j = self._judge(x)
        e = self._expect(_time(x)) if j is None else j.e
        lower = upper = 0.0
        if self._recent_weight > 0.0:
            lower, upper = _count_bounds(e.mu, self.dispersion, e.inflation, self.BOUND_SIGMAS)
        if j is None:
            y = None
            score = excess = silent_expected = 0.0
            direction, ratio, silent_windows = "none", None, 0
        else:
            y = j.y
            score = self._directed(j) if warm else 0.0
            direction = "none"
            if y > e.mu and self._watch_up:
                direction = "up"
            elif y < e.mu and self._watch_down:
                direction = "down"
            excess = y - e.mu
            ratio = y / e.mu if self._recent_weight > 0.0 else None
            silent_windows, silent_expected = j.silent_windows, j.silent_expected
        return CountEvidence(
            observed=y,
            expected=e.mu,
            lower_bound=lower,
            upper_bound=upper,
            score=score,
            volume=0.0 if y is None else y,
            warm=warm,
            direction=direction,
            excess=excess,
            ratio=ratio,
            seasonal_expected=e.seasonal,
            recent_level=self.recent_level,
            correction=self.correction,
            dispersion=self.dispersion,
            silent_windows=silent_windows,
            silent_expected=silent_expected,
        )

    # --------------------------------------------------------------- learning

    def learn_one(self, x: Mapping[Any, Any]) -> None:
        """Update the recent level, the correction, `phi` and the window's bucket.

        No-op when the count (or a needed `t`) is missing, and (with `protect`) when the window
        would be flagged in either direction. The silence run is tracked in any case.

        """
        j = self._judge(x)
        if j is None:
            return
        self._memo = None
        has_baseline = self._recent_weight > 0.0
        if self.silence_run and has_baseline and self.warm:
            if j.y == 0.0:
                self._silent_windows = j.silent_windows
                self._silent_mu = j.silent_expected
                self._silent_mu2 += j.e.mu * j.e.mu
            else:
                self._silent_windows = 0
                self._silent_mu = self._silent_mu2 = 0.0
        if self.protect and (j.flag_up or j.flag_down):
            return

        y, mu, g = j.y, j.e.mu, j.e.inflation
        if has_baseline:
            var = mu + j.phi * mu * mu
            # Prequential residual: E[(y - mu)**2 / g - mu] = phi * mu**2.
            r2 = (y - mu) ** 2
            cap = self.Z2_CAP * var * g
            dd = self._dispersion_decay
            self._phi_num = dd * self._phi_num + (r2 if r2 < cap else cap) / g - mu
            self._phi_den = dd * self._phi_den + mu * mu
            if self.warm:
                half_width = self.WINSOR_SIGMAS * math.sqrt(var * g)
                y = min(max(y, mu - half_width), mu + half_width)

        d = self._decay
        self._recent_sum = d * self._recent_sum + y
        self._recent_weight = d * self._recent_weight + 1.0
        ds = self._short_decay
        self._short_sum = ds * self._short_sum + y
        self._short_weight = ds * self._short_weight + 1.0
        if j.e.seasonal is not None:
            self._correction_num = d * self._correction_num + y
            self._correction_den = d * self._correction_den + j.e.seasonal
        self._n_windows += 1

        if self.season != "none":
            t = _time(x)
            assert t is not None  # _judge returned None otherwise
            index = t // self._bucket_ms
            if index != self._visit:
                self._commit_visit()
                self._visit = index
            self._visit_y += y
            self._visit_n += 1

    # ---------------------------------------------------------------- helpers

    def _commit_visit(self) -> None:
        """Fold the finished bucket visit into the seasonal table(s)."""
        n = self._visit_n
        if n:
            for ys, ws, b in self._visit_buckets():
                decay = self._season_decay**n
                ys[b] = decay * ys[b] + self._visit_y
                ws[b] = decay * ws[b] + n
        self._visit = -1
        self._visit_y = 0.0
        self._visit_n = 0

    def _visit_buckets(self) -> list[tuple[list[float], list[float], int]]:
        tables = [(self._day_y, self._day_w, self._visit % self._day_buckets)]
        if self.season == "week":
            tables.append((self._week_y, self._week_w, self._visit % len(self._week_y)))
        return tables

    def _bucket(self, ys: list[float], ws: list[float], index: int) -> tuple[float, float]:
        """(forgetting sum of counts, of windows) of the bucket holding absolute bucket `index`.

        A finished visit not yet folded in (no window of a later bucket was learned yet) is
        included, unless it is `index`'s own visit: a bucket never predicts itself.

        """
        b = index % len(ys)
        y, w = ys[b], ws[b]
        n = self._visit_n
        if n and self._visit != index and self._visit % len(ys) == b:
            decay = self._season_decay**n
            y, w = decay * y + self._visit_y, decay * w + n
        return y, w

    def _expect(self, t: int | None) -> _Expectation:
        """The expected count of the window starting at `t`, and the variance inflation."""
        lw = self._recent_weight
        if lw == 0.0:
            return _Expectation(0.0, None, 1.0)
        # A segment that has only ever been silent still expects a little: half an event over
        # the windows behind the recent level.
        floor = 0.5 / (lw + 1.0)
        recent = self.recent_level
        if self.silence_run:
            # A silence is judged against what was just being sent: on a bucket's first visit
            # the expected count is the recent level alone, and an hour's level lags a falling
            # trend. Measured on simulated calm first days at --rate 20, where an evening's
            # traffic roughly halves in 1.5 hours: chance 20-second gaps opened false silences
            # on 4 of 7 days, the hour's level at 11.5 events a window, the last 10 minutes'
            # at 6.8.
            recent = min(recent, self.short_level)
        recent = max(recent, floor)
        inflation = 1.0 + 1.0 / lw
        if self.season == "none" or t is None:
            return _Expectation(recent, None, inflation)
        index = t // self._bucket_ms
        y, w = self._bucket(self._day_y, self._day_w, index)
        if w <= 0.0:
            return _Expectation(recent, None, inflation + 1.0)
        seasonal = max(y, 0.5) / w  # a bucket that only ever saw 0 counts half an event
        if self.season == "week":
            wy, ww = self._bucket(self._week_y, self._week_w, index)
            if ww > 0.0:
                seasonal = _blend(max(wy, 0.5) / ww, seasonal, ww / self._windows_per_visit)
        predicted = max(seasonal * self.correction, floor)
        mu = _blend(predicted, recent, w / self._windows_per_visit)
        return _Expectation(mu, seasonal, inflation + 1.0 / (w + 1.0))

    def _judge(self, x: Mapping[Any, Any]) -> _Judgement | None:
        raw_y, raw_t = x.get("count"), x.get("t")
        memo = self._memo
        if memo is not None and memo[0] == raw_y and memo[1] == raw_t:
            return memo[2]
        y = _count(x)
        if y is None:
            return None
        t = _time(x)
        if t is None and self.season != "none":
            return None
        j = self._judge_new(y, t)
        self._memo = (raw_y, raw_t, j)
        return j

    def _judge_new(self, y: float, t: int | None) -> _Judgement:
        e = self._expect(t)
        if self._recent_weight == 0.0:
            return _Judgement(y, e, 0.0, 0.0, 0.0, 0, 0.0, False, False)
        mu, g = e.mu, e.inflation
        phi = self.dispersion
        z_up = _z_up(y, mu, phi, g)
        z_down = _z_down(y, mu, phi, g)
        warm = self._n_windows >= self.warmup
        silent_windows, silent_expected, run_mu = 0, 0.0, mu
        if self.silence_run and y == 0.0 and warm:
            silent_windows = self._silent_windows + 1
            silent_expected = run_mu = self._silent_mu + mu
            mu2 = self._silent_mu2 + mu * mu
            # The run's total is a sum of independent windows: means and variances add, so its
            # phi is phi * sum(mu_i**2) / (sum mu_i)**2.
            z_down = max(z_down, _z_down(0.0, run_mu, phi * mu2 / (run_mu * run_mu), g))
        flag_up = flag_down = False
        if warm:
            flag_up = (
                z_up >= self.threshold and y - mu >= self.min_excess and y >= self.min_ratio * mu
            )
            flag_down = (
                z_down >= self.threshold
                and run_mu >= self.min_expected
                and y * self.min_ratio <= mu
            )
        return _Judgement(
            y, e, phi, z_up, z_down, silent_windows, silent_expected, flag_up, flag_down
        )

    def _directed(self, j: _Judgement) -> float:
        up = j.z_up if self._watch_up else 0.0
        down = j.z_down if self._watch_down else 0.0
        return up if up > down else down


class SilenceDetector(SeasonalCount):
    """`SeasonalCount` preset for silence: a partner, topic or segment that stops sending.

    Watches the "down" direction only and judges consecutive zero-count windows together
    (`silence_run=True`): a partner sending 2 events a window is flagged once about 12 events
    were expected and none came, while a quiet segment expecting 1 event is not flagged for one
    empty window. `min_ratio` defaults to 10: a drop to a tenth of the expected count (or less)
    counts; a mere halving is `SeasonalCount`'s business. Where the recent level enters the
    expected count (a bucket's first visits), the lower of it and the short level (the last
    `half_life / SHORT_LEVEL_FACTOR` windows, 10 minutes by default) is used: a silence is
    judged against what was just being sent, not against an hour's level that lags a fall.

    When it works and when it fails: as `SeasonalCount` (in particular there is no cold-start
    rule: a silence needs a baseline; and the pipeline must feed windows with a count of 0, since
    a window that is never fed cannot be seen to be silent).

    Parameters
    ----------
    threshold
        Score (standard deviations) from which `is_anomalous` may say True.
    min_expected
        Events that must have been expected over the silent windows for an incident.
    min_ratio
        A window counts as a drop when `count <= expected / min_ratio`.
    window_ms
        Length of the tumbling windows, in milliseconds.
    bucket_minutes
        Width of a seasonal bucket, in minutes; it must divide a day (1440).
    season
        "day", "week" or "none", as for `SeasonalCount`.
    half_life
        The recent level's half-life in windows (None: one hour of windows).
    season_half_life
        Seasons after which a visit's weight in its bucket has halved.
    warmup
        Windows to learn before anything is flagged.
    protect
        If True, flagged windows (either direction) are not learned.

    Examples
    --------

    >>> import random
    >>> from detectors.counts import SilenceDetector

    >>> rng = random.Random(3)
    >>> detector = SilenceDetector(season="none")
    >>> for i in range(200):
    ...     detector.learn_one({"t": i * 10_000, "count": rng.choice([1, 2, 2, 3])})
    >>> round(detector.expected_count(), 1)
    2.0

    The partner stops sending: no single empty window is an incident, six in a row are (about
    12 events expected, none came):

    >>> flags = []
    >>> for i in range(200, 206):
    ...     x = {"t": i * 10_000, "count": 0}
    ...     flags.append(detector.is_anomalous(x))
    ...     detector.learn_one(x)
    >>> flags
    [False, False, False, False, False, True]
    >>> evidence = detector.explain({"t": 206 * 10_000, "count": 0})
    >>> evidence.silent_windows, round(evidence.silent_expected, 1), evidence.direction
    (7, 13.3, 'down')

    """

    def __init__(
        self,
        threshold: float = 4.0,
        min_expected: float = 5.0,
        min_ratio: float = 10.0,
        window_ms: int = 10_000,
        bucket_minutes: int = 30,
        season: Season = "day",
        half_life: float | None = None,
        season_half_life: float = 3.0,
        warmup: int = 30,
        protect: bool = True,
    ) -> None:
        super().__init__(
            direction="down",
            threshold=threshold,
            min_expected=min_expected,
            min_ratio=min_ratio,
            window_ms=window_ms,
            bucket_minutes=bucket_minutes,
            season=season,
            half_life=half_life,
            season_half_life=season_half_life,
            warmup=warmup,
            silence_run=True,
            protect=protect,
        )

    @classmethod
    def _unit_test_params(cls) -> Iterator[dict[str, Any]]:
        yield {}
        yield {"season": "none", "warmup": 0, "protect": False}


# -------------------------------------------------------------- count model


def _blend(estimate: float, fallback: float, weight: float) -> float:
    """Geometric blend: `estimate**weight * fallback**(1 - weight)`, weight clipped to [0, 1].

    Geometric, because an arithmetic blend of a night count of 4 with a recent level of 200
    would be a poor night count of 100 for most of a visit.

    """
    if weight >= 1.0:
        return estimate
    if weight <= 0.0:
        return fallback
    return math.exp(weight * math.log(estimate) + (1.0 - weight) * math.log(fallback))


def _nb_deviance(y: float, mu: float, phi: float) -> float:
    """Negative-binomial unit deviance of count `y` against mean `mu` (Poisson when phi = 0).

    `2 [y ln(y/mu) - (y + k) ln((y + k)/(mu + k))]` with `k = 1/phi`, written with `log1p` so
    that a tiny `phi` tends smoothly to the Poisson deviance `2 [y ln(y/mu) - (y - mu)]`.

    """
    first = y * math.log(y / mu) if y > 0.0 else 0.0
    if phi <= 1e-12:
        return 2.0 * (first - (y - mu))
    k = 1.0 / phi
    return 2.0 * (first - (y + k) * math.log1p((y - mu) / (mu + k)))


def _z_up(y: float, mu: float, phi: float, inflation: float) -> float:
    """Evidence that `y` is above `mu`: continuity-corrected signed root deviance (>= 0)."""
    yc = y - 0.5
    if yc <= mu:
        return 0.0
    return math.sqrt(max(0.0, _nb_deviance(yc, mu, phi)) / inflation)


def _z_down(y: float, mu: float, phi: float, inflation: float) -> float:
    """Evidence that `y` is below `mu`: continuity-corrected signed root deviance (>= 0)."""
    yc = y + 0.5
    if yc >= mu:
        return 0.0
    return math.sqrt(max(0.0, _nb_deviance(yc, mu, phi)) / inflation)


def _count_bounds(mu: float, phi: float, inflation: float, sigmas: float) -> tuple[float, float]:
    """(lower, upper) counts where the down / up evidence crosses `sigmas` (by bisection)."""
    lower = 0.0
    if _z_down(0.0, mu, phi, inflation) > sigmas:
        lo, hi = 0.0, mu  # z_down(lo) > sigmas >= z_down(hi)
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            if _z_down(mid, mu, phi, inflation) > sigmas:
                lo = mid
            else:
                hi = mid
        lower = lo
    lo, hi = mu, mu + 1.0  # z_up(lo) <= sigmas < z_up(hi)
    while _z_up(hi, mu, phi, inflation) <= sigmas:
        lo, hi = hi, mu + 2.0 * (hi - mu)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if _z_up(mid, mu, phi, inflation) > sigmas:
            hi = mid
        else:
            lo = mid
    return lower, lo


def _count(x: Mapping[Any, Any], key: str = "count") -> float | None:
    """A count or sum (`x[key]`) from a window, None if missing; ValueError if impossible."""
    y = x.get(key)
    if y is None:
        return None
    try:
        value = float(y)
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be a number, got {key}={y!r}") from None
    if not 0.0 <= value < math.inf:
        raise ValueError(f"{key} must be a finite number >= 0, got {key}={y!r}")
    return value


def _time(x: Mapping[Any, Any]) -> int | None:
    """The window start `t` in epoch ms, None if missing; ValueError if not a number."""
    t = x.get("t")
    if t is None:
        return None
    try:
        value = float(t)
    except (TypeError, ValueError):
        raise ValueError(f"t must be the window start in epoch ms, got t={t!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"t must be the window start in epoch ms, got t={t!r}")
    return int(value)
