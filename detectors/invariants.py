"""Bursts of invariant violations: checks that must never fail, however rare the failure.

Some checks are invariants, not statistics: a funded account whose balance reads 0 with no
explaining debit, a bank link removed without a user action. One such violation can be a stray
race; a burst of them is an incident, however rare the base rate (the MoMo outage showed both).
`InvariantBurst` watches one (check, segment) through the number of violations in each closed
tumbling window and flags when the last few windows together hold enough of them. No baseline is
needed: it can flag from the first window.

Like `detectors.rates.SuccessRateDrop`, it is a River anomaly detector (`score_one` /
`learn_one`) with the decision (`is_anomalous`) and the evidence (`explain`) kept apart from the
score.

"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from river import base

from detectors.counts import _time
from detectors.state import check_version

__all__ = ["InvariantBurst", "InvariantEvidence"]

_STATE_VERSION = 1
_DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class InvariantEvidence:
    """What the last `span_windows` windows looked like, as an incident reports it.

    Attributes
    ----------
    observed
        Violations in the span ending with this window, or None when the window carried no
        violation count.
    expected
        Violations the learned background rate expects in a span.
    lower_bound
        Always 0.0: fewer violations are never anomalous.
    upper_bound
        The most violations in a span that are still not an incident: `bar - 1`.
    score
        `score_one`: `4 * observed / bar`, capped at `SCORE_CAP`; 4.0 or more is an incident.
    volume
        Reads or changes checked in the window (`checked`), else its violations (0.0 missing).
    warm
        True once the sliding sum covers a full span (`span_windows - 1` windows learned).
        The decision does not need it.
    direction
        "up" when the span holds violations, else "none".
    violations
        Violations in this window (0 when missing).
    bar
        Violations in a span from which it is an incident (see `InvariantBurst`).
    background_rate
        Learned background violations per window.
    checked
        Reads or changes checked in this window, or None when not reported.
    violation_rate
        `violations / checked`, or None.

    """

    observed: float | None
    expected: float
    lower_bound: float
    upper_bound: float
    score: float
    volume: float
    warm: bool
    direction: str
    violations: int
    bar: int
    background_rate: float
    checked: float | None
    violation_rate: float | None


class _Judgement(NamedTuple):
    violations: int
    checked: float | None
    in_span: int
    bar: int
    score: float


class InvariantBurst(base.AnomalyDetector):
    """Detector of a burst of invariant violations: a sliding count against a fixed bar.

    Each window brings `{"t": window start (epoch ms), "violations": v, "checked": n
    (optional)}`. The detector keeps the violations of the last `span_windows` windows in a ring
    buffer (bounded state) and sums those whose window starts within `span_windows * window_ms`
    of this one (so a gap in the stream does not stretch the span; without `t`, the last
    `span_windows - 1` windows count). A window is an incident when that sum reaches the bar:

        bar = min(max_bar_factor * min_violations,
                  max(min_violations, ceil(E + 3 * sqrt(E))))

    where `E = background_rate * span_windows` is what the learned background rate of
    violations expects in a span. So the bar is `min_violations` unless a steady trickle makes
    that many in a span a 3-sigma Poisson event, and it never rises above `max_bar_factor *
    min_violations`: a trickle cannot make a burst invisible (a trickle that reaches the capped
    bar by itself is flagged all along, rightly: the invariant is broken). The background rate
    is a forgetting mean over windows (half-life `half_life`), starting from a prior of
    `PRIOR_WINDOWS` (100) windows without violations, and learning is protected: flagged
    windows do not feed it (they do enter the sliding sum, always).

    `score_one` is `4 * sum / bar` (0.0 without violations, capped at `SCORE_CAP`): 4.0, the
    project's "clearly anomalous", exactly at the bar, so `is_anomalous` is `score >= 4`. With
    the defaults one stray violation scores 1.3, three in a minute score 4.0.

    When it works: checks that should never fail, counted per window and per segment, where a
    burst means something broke (a migration zeroing balances, a job removing bank links). No
    warm-up: the first window can be an incident.

    When it fails:

    * A slow trickle below `min_violations` per span is never flagged, whatever it adds up to
      over a day: alert on the daily total elsewhere if that matters.
    * After a burst the sliding sum stays above the bar for up to `span_windows - 1` windows
      without new violations: the incident's end is known that much later.
    * A check that is not an invariant (violations are normal in numbers) raises the bar only up
      to `max_bar_factor * min_violations`, then is flagged all the time: use a rate detector.
    * The same window fed twice (same `t`) counts once: the later count replaces the earlier.

    Missing `violations` (or None) is not an error: the window is neutral (score 0.0, not
    anomalous) and not learned. Violations or `checked` that are present but impossible
    (negative, not whole, NaN, `violations > checked`) raise ValueError.

    Parameters
    ----------
    min_violations
        Violations within a span from which it is an incident (the bar without a background).
    span_windows
        Windows in the sliding span (6 ten-second windows: a minute).
    window_ms
        Length of the tumbling windows, in milliseconds.
    max_bar_factor
        The background rate can raise the bar to at most this multiple of `min_violations`.
    half_life
        Windows after which a window's weight in the background rate has halved. None: one day
        of windows (8640 at 10 s).
    protect
        If True, flagged windows do not feed the background rate.

    Examples
    --------

    Balance reads of funded accounts that return 0 with no explaining debit: a stray one now
    and then, then a burst.

    >>> import random
    >>> from detectors.invariants import InvariantBurst

    >>> rng = random.Random(19)
    >>> detector = InvariantBurst()
    >>> flags, total = [], 0
    >>> for i in range(8640):  # a day of 10-second windows, a stray violation now and then
    ...     x = {"t": i * 10_000, "violations": int(rng.random() < 0.01), "checked": 500}
    ...     flags.append(detector.is_anomalous(x))
    ...     detector.learn_one(x)
    ...     total += x["violations"]
    >>> total, sum(flags), detector.bar
    (69, 0, 3)
    >>> round(detector.background_rate, 4)
    0.0081

    One stray violation is not an incident; three within a minute are:

    >>> t = 8640 * 10_000
    >>> round(detector.score_one({"t": t, "violations": 1}), 1)
    1.3
    >>> for i, v in enumerate([1, 0, 1]):
    ...     detector.learn_one({"t": t + i * 10_000, "violations": v})
    >>> burst = {"t": t + 30_000, "violations": 1, "checked": 480}
    >>> detector.is_anomalous(burst)
    True
    >>> evidence = detector.explain(burst)
    >>> evidence.observed, evidence.bar, evidence.score, evidence.direction
    (3.0, 3, 4.0, 'up')

    A missing count is neutral:

    >>> detector.score_one({"t": t + 40_000})
    0.0

    """

    #: The score at the bar: the project's "clearly anomalous", in standard deviations.
    SCORE_AT_BAR = 4.0
    #: Scores are capped here (a burst of hundreds is not more "certain" than one of tens).
    SCORE_CAP = 40.0
    #: The background raises the bar to `ceil(E + BAR_SIGMAS * sqrt(E))` (capped).
    BAR_SIGMAS = 3.0
    #: Prior of the background rate: this many windows without violations (forgotten like any
    #: window), so that a first window with 2 violations does not raise the bar.
    PRIOR_WINDOWS = 100.0

    def __init__(
        self,
        min_violations: int = 3,
        span_windows: int = 6,
        window_ms: int = 10_000,
        max_bar_factor: float = 2.0,
        half_life: float | None = None,
        protect: bool = True,
    ) -> None:
        if isinstance(min_violations, bool) or not (
            isinstance(min_violations, int) and min_violations >= 1
        ):
            raise ValueError(f"min_violations must be a whole number >= 1, got {min_violations!r}")
        if isinstance(span_windows, bool) or not (
            isinstance(span_windows, int) and span_windows >= 1
        ):
            raise ValueError(f"span_windows must be a whole number >= 1, got {span_windows!r}")
        if not window_ms > 0:
            raise ValueError(f"window_ms must be > 0 milliseconds, got {window_ms!r}")
        if not max_bar_factor >= 1.0:
            raise ValueError(f"max_bar_factor must be >= 1, got {max_bar_factor!r}")
        if half_life is not None and not half_life > 0.0:
            raise ValueError(f"half_life must be > 0 windows (or None), got {half_life!r}")
        self.min_violations = min_violations
        self.span_windows = span_windows
        self.window_ms = window_ms
        self.max_bar_factor = max_bar_factor
        self.half_life = half_life
        self.protect = protect

        self._decay = 0.5 ** (1.0 / self.half_life_windows)
        self._max_bar = math.floor(max_bar_factor * min_violations)
        self._memo: tuple[Any, Any, Any, _Judgement | None] | None = None
        self._ring: deque[tuple[int | None, int]] = deque(maxlen=span_windows)
        self.reset()

    @classmethod
    def _unit_test_params(cls) -> Iterator[dict[str, Any]]:
        yield {}
        yield {"min_violations": 1, "span_windows": 1, "half_life": 10.0, "protect": False}

    # ------------------------------------------------------------------ state

    def reset(self) -> None:
        """Forget the recent windows and the background rate."""
        self._memo = None
        self._ring.clear()
        self._background_sum = 0.0  # forgetting sum of violations
        self._background_weight = self.PRIOR_WINDOWS  # prior: windows without violations
        self._n_windows = 0

    @property
    def half_life_windows(self) -> float:
        """The background rate's half-life in windows (`half_life`, or a day of windows)."""
        if self.half_life is not None:
            return float(self.half_life)
        return max(1.0, _DAY_MS / self.window_ms)

    @property
    def background_rate(self) -> float:
        """Learned background violations per window (0.0 before any are seen)."""
        return self._background_sum / self._background_weight

    @property
    def bar(self) -> int:
        """Violations within a span from which it is an incident, given the background."""
        expected = self.background_rate * self.span_windows
        raised = math.ceil(expected + self.BAR_SIGMAS * math.sqrt(expected) - 1e-9)
        return min(self._max_bar, max(self.min_violations, raised))

    @property
    def n_windows(self) -> int:
        """Windows learned since construction or the last `reset`."""
        return self._n_windows

    @property
    def warm(self) -> bool:
        """True once the sliding sum covers a full span (`span_windows - 1` windows learned)."""
        return self._n_windows >= self.span_windows - 1

    def state_dict(self) -> dict[str, Any]:
        """Parameters and learned state as plain JSON types, for checkpoints.

        `InvariantBurst.from_state(d)` rebuilds an identical detector.

        """
        return {
            "version": _STATE_VERSION,
            "params": self._get_params(),
            "ring": [[t, v] for t, v in self._ring],
            "background": [self._background_sum, self._background_weight],
            "n_windows": self._n_windows,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> InvariantBurst:
        """Rebuild a detector from `state_dict()` output (possibly through JSON)."""
        check_version(cls.__name__, state, _STATE_VERSION)
        detector = cls(**state["params"])
        detector._ring.extend((None if t is None else int(t), int(v)) for t, v in state["ring"])
        detector._background_sum, detector._background_weight = map(float, state["background"])
        detector._n_windows = int(state["n_windows"])
        return detector

    # ---------------------------------------------------------------- scoring

    def score_one(self, x: Mapping[Any, Any]) -> float:
        """`4 * violations in the span / bar`, capped at `SCORE_CAP` (0.0 without a count)."""
        j = self._judge(x)
        return 0.0 if j is None else j.score

    def is_anomalous(self, x: Mapping[Any, Any]) -> bool:
        """True iff the violations in the span ending with this window reach the bar."""
        j = self._judge(x)
        return j is not None and j.in_span >= j.bar

    def explain(self, x: Mapping[Any, Any]) -> InvariantEvidence:
        """The span against the bar, as an incident reports it."""
        j = self._judge(x)
        bar = self.bar
        rate = self.background_rate
        if j is None:
            observed: float | None = None
            violations, checked, score, in_span = 0, None, 0.0, 0
        else:
            observed, violations, checked = float(j.in_span), j.violations, j.checked
            score, in_span = j.score, j.in_span
        volume = checked if checked is not None else float(violations)
        return InvariantEvidence(
            observed=observed,
            expected=rate * self.span_windows,
            lower_bound=0.0,
            upper_bound=float(bar - 1),
            score=score,
            volume=volume,
            warm=self.warm,
            direction="up" if in_span > 0 else "none",
            violations=violations,
            bar=bar,
            background_rate=rate,
            checked=checked,
            violation_rate=violations / checked if checked else None,
        )

    # --------------------------------------------------------------- learning

    def learn_one(self, x: Mapping[Any, Any]) -> None:
        """Push the window into the sliding span; feed the background rate unless flagged.

        No-op when `violations` is missing. A window with the same `t` as the last one learned
        replaces it.

        """
        j = self._judge(x)
        if j is None:
            return
        self._memo = None
        t = _time(x)
        if self._ring and t is not None and self._ring[-1][0] == t:
            self._ring.pop()
        else:
            self._n_windows += 1
        self._ring.append((t, j.violations))
        if self.protect and j.in_span >= j.bar:
            return
        d = self._decay
        self._background_sum = d * self._background_sum + j.violations
        self._background_weight = d * self._background_weight + 1.0

    # ---------------------------------------------------------------- helpers

    def _judge(self, x: Mapping[Any, Any]) -> _Judgement | None:
        key = (x.get("violations"), x.get("checked"), x.get("t"))
        memo = self._memo
        if memo is not None and memo[:3] == key:
            return memo[3]
        j = self._judge_new(x)
        self._memo = (*key, j)
        return j

    def _judge_new(self, x: Mapping[Any, Any]) -> _Judgement | None:
        v = _whole(x, "violations")
        checked = x.get("checked")
        if checked is not None:
            try:
                checked = float(checked)
            except (TypeError, ValueError):
                raise ValueError(f"checked must be a number, got checked={checked!r}") from None
            if not 0.0 <= checked < math.inf:
                raise ValueError(f"checked must be a finite number >= 0, got {checked!r}")
            if v is not None and v > checked:
                raise ValueError(
                    f"violations cannot exceed checked, got violations={v!r}, checked={checked!r}"
                )
        t = _time(x)
        if v is None:
            return None
        in_span = v
        if t is None:
            recent = list(self._ring)[-(self.span_windows - 1) :] if self.span_windows > 1 else []
            in_span += sum(count for _, count in recent)
        else:
            start = t - self.span_windows * self.window_ms
            for window_t, count in self._ring:
                # Windows of this span other than this one; without t, a window counts.
                if window_t is None or start < window_t < t:
                    in_span += count
        bar = self.bar
        score = min(self.SCORE_CAP, self.SCORE_AT_BAR * in_span / bar)
        return _Judgement(v, checked, in_span, bar, score)


def _whole(x: Mapping[Any, Any], key: str) -> int | None:
    """A whole count >= 0 from a window, None if missing; ValueError if impossible."""
    value = x.get(key)
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be a whole number, got {key}={value!r}") from None
    if not (0.0 <= number < math.inf and number.is_integer()):
        raise ValueError(f"{key} must be a whole number >= 0, got {key}={value!r}")
    return int(number)
