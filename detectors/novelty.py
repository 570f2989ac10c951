"""Novel outcome mixes: a segment's window of outcomes in a combination never seen before.

`MixNovelty` watches the *mix* of a segment's outcomes (login results by failure reason,
transaction statuses, OTP code fates) as one vector, with River's `HalfSpaceTrees`. The rate and
count detectors each judge one number; this one judges the combination, so a window whose shares
are each within their own bounds but never occur together (more "account not registered" *and*
more forced logouts *and* fewer wrong passwords) still stands out.

Scaling (what `HalfSpaceTrees` needs: every feature in [0, 1], spread over that range):

1. share of each category in the window, ``n_c / total``;
2. the variance-stabilising angle ``asin(sqrt(share))``, whose sampling variance is about
   ``1 / (4 total)`` whatever the share (busy and quiet windows become comparable);
3. a z-score against the segment's own forgetting mean and spread of that angle, the spread
   being the sampling variance of *this* window's total plus the learned extra variance between
   windows (overdispersion), so a quiet window's noise is not novelty;
4. a logistic squash ``1 / (1 + exp(-z / 2))`` into (0, 1): z = 0 lands at 0.5, +-6 near the
   ends, and the trees' random splits fall where the data is.

The score is `HalfSpaceTrees.score_one` of that vector: high in regions of the space where the
reference window of learned vectors put little mass. The decision compares it with the
segment's own recent scores: a window is novel when its score is above the `quantile` of the
last `reference` learned scores *and* at least one share is `min_z` standard deviations away
from its baseline. Both, because the trees' score saturates: measured on the example below,
ordinary windows score up to 0.936 and a quarter of logins failing as "not registered" 0.953,
so the score ranks windows by how unusual their combination is, and the share gate keeps a
combination of small, individually ordinary wobbles from paging.

When it fails:

* Needs `window_size` learned windows with at least `min_total` events before it scores (until
  then: score 0.0, never anomalous): quiet segments warm slowly; feed it sums of several windows
  (the engine's ``span_ms``).
* A change of mix that builds up slowly is learned as it comes (forgetting mean, `half_life`).
* Categories are fixed by the first vector learned; a category appearing later is ignored.

Examples
--------

Login outcomes of one service: mostly success, a steady share of wrong passwords.

>>> import random
>>> from detectors.novelty import MixNovelty
>>> rng = random.Random(7)
>>> det = MixNovelty(window_size=100, reference=200)
>>> def logins(n: int, p_wrong: float, p_unregistered: float) -> dict:
...     wrong = sum(rng.random() < p_wrong for _ in range(n))
...     unregistered = sum(rng.random() < p_unregistered for _ in range(n - wrong))
...     counts = {"success": n - wrong - unregistered, "wrong_password": wrong,
...               "account_not_registered": unregistered}
...     return {"counts": counts}
>>> flags = []
>>> for _ in range(600):
...     x = logins(rng.randint(60, 120), 0.05, 0.002)
...     flags.append(det.is_anomalous(x))
...     det.learn_one(x)
>>> det.warm, sum(flags)
(True, 0)

A window where "account not registered" suddenly makes up a quarter of the logins is novel:

>>> outage = logins(100, 0.05, 0.25)
>>> det.is_anomalous(outage)
True
>>> ev = det.explain(outage)
>>> ev.feature, ev.direction, ev.observed > ev.upper_bound
('account_not_registered', 'up', True)

Too few events to judge is neutral:

>>> det.score_one({"counts": {"success": 3, "wrong_password": 1}})
0.0

"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from river import base, stats

__all__ = ["MixEvidence", "MixNovelty"]


@dataclass(frozen=True, slots=True)
class MixEvidence:
    """What a window's mix looked like: the share that moved most, and the novelty score.

    Attributes
    ----------
    feature
        The category whose share is furthest from its baseline (None without a judgement).
    observed, expected
        That category's share in the window, and its baseline share.
    lower_bound, upper_bound
        Shares within `min_z` standard deviations of the baseline for a window of this total.
    z
        How far the share is from its baseline, in standard deviations (signed).
    score
        `MixNovelty.score_one` of the window.
    threshold
        Score above which the window counts as novel (the reference scores' `quantile`).
    volume
        Events in the window.
    shares
        Every category's share in the window.
    warm
        False until the detector scores.
    """

    feature: str | None
    observed: float | None
    expected: float
    lower_bound: float
    upper_bound: float
    z: float
    score: float
    threshold: float
    volume: float
    shares: dict[str, float]
    warm: bool

    @property
    def direction(self) -> str:
        return "up" if self.z >= 0 else "down"


@dataclass(slots=True)
class _View:
    """One window as the detector sees it: shares, their angles, z-scores, squashed vector."""

    shares: dict[str, float]
    total: int
    angles: dict[str, float]
    z: dict[str, float]
    u: dict[str, float]
    score: float | None = None  # the trees' score, once asked


class MixNovelty(base.AnomalyDetector):
    """Windows whose outcome mix is unlike the segment's history (HalfSpaceTrees on shares).

    Each window brings ``{"counts": {category: events}}``; anything else in ``x`` is ignored,
    and an ``x`` without usable counts is neutral (score 0.0, not learned).

    Parameters
    ----------
    min_total
        Fewest events in a window to judge or learn it.
    n_trees, height, window_size, seed
        `river.anomaly.HalfSpaceTrees`' own; `window_size` learned windows make it warm. Height
        6 (River's default: 15) is 64 leaves per tree for mixes of 3 to 9 shares: measured on
        the tests' login mixes, the same ROC AUC (1.0 against 0.9999 at height 8) and the same
        flags (1 in 3,000 ordinary windows), and a tree built 4 times faster (9 ms against 37 ms
        for the 25 trees: every segment builds its own).
    half_life
        Learned windows after which one's weight in the baseline shares and spreads has halved.
    reference
        Recent learned scores the decision compares with.
    quantile
        A novel window scores above this quantile of the reference scores.
    min_z
        And at least one of its shares is this many standard deviations off its baseline.
    """

    def __init__(
        self,
        min_total: int = 30,
        n_trees: int = 25,
        height: int = 6,
        window_size: int = 250,
        half_life: float = 2000.0,
        reference: int = 2000,
        quantile: float = 0.99,
        min_z: float = 4.0,
        seed: int = 42,
    ) -> None:
        self.min_total = min_total
        self.n_trees = n_trees
        self.height = height
        self.window_size = window_size
        self.half_life = half_life
        self.reference = reference
        self.quantile = quantile
        self.min_z = min_z
        self.seed = seed
        # Imported here, not at the top: `river.anomaly` imports scipy.stats (0.5 s), which
        # every `python -m streams` command would pay for, detecting or not.
        from river.anomaly import HalfSpaceTrees

        self._trees = HalfSpaceTrees(
            n_trees=n_trees, height=height, window_size=window_size, seed=seed
        )
        self._alpha = 1.0 - 0.5 ** (1.0 / half_life)
        self._categories: tuple[str, ...] | None = None
        self._mean: dict[str, float] = {}
        self._extra: dict[str, float] = {}  # between-window variance beyond sampling noise
        self._scores = stats.RollingQuantile(quantile, reference)
        self.n_learned = 0
        self._memo: tuple[tuple[Any, ...], _View | None] | None = None

    @classmethod
    def _unit_test_params(cls) -> Iterator[dict[str, Any]]:
        yield {}
        yield {"min_total": 5, "window_size": 20, "reference": 50}

    @property
    def warm(self) -> bool:
        return self.n_learned >= self.window_size

    @property
    def threshold(self) -> float:
        got = self._scores.get()
        return 1.0 if got is None else float(got)

    def _view(self, x: Mapping[Any, Any]) -> _View | None:
        """``x`` seen by this detector's current state (None: not judged), memoised until the
        next learned window: the engine scores, decides and learns each window in turn."""
        counts = x.get("counts")
        if not isinstance(counts, Mapping):
            return None
        cats = self._categories if self._categories is not None else tuple(sorted(counts))
        raw = tuple(counts.get(c, 0) for c in cats)
        key = (self.n_learned, cats, raw)
        if self._memo is not None and self._memo[0] == key:
            return self._memo[1]
        view = None
        valid = all(isinstance(v, int | float) and v >= 0 and v == v for v in raw)
        total = sum(raw) if valid else 0
        if valid and total >= self.min_total and total > 0:
            shares = {c: v / total for c, v in zip(cats, raw, strict=True)}
            angles = {c: math.asin(math.sqrt(min(1.0, p))) for c, p in shares.items()}
            z = {}
            for c, angle in angles.items():
                spread = math.sqrt(1.0 / (4.0 * total) + self._extra.get(c, 0.0))
                z[c] = (angle - self._mean.get(c, angle)) / spread
            u = {c: 1.0 / (1.0 + math.exp(-max(-40.0, min(40.0, v)) / 2.0)) for c, v in z.items()}
            view = _View(shares, int(total), angles, z, u)
        self._memo = (key, view)
        return view

    def _score(self, view: _View) -> float:
        if view.score is None:
            view.score = float(self._trees.score_one(view.u))
        return view.score

    def score_one(self, x: Mapping[Any, Any]) -> float:
        view = self._view(x)
        if view is None or not self.warm:
            return 0.0
        return self._score(view)

    def is_anomalous(self, x: Mapping[Any, Any]) -> bool:
        view = self._view(x)
        if view is None or not self.warm:
            return False
        if max(abs(v) for v in view.z.values()) < self.min_z:
            return False
        return self._score(view) > self.threshold

    def explain(self, x: Mapping[Any, Any]) -> MixEvidence:
        view = self._view(x)
        score = self.score_one(x)
        if view is None:
            return MixEvidence(None, None, 0.0, 0.0, 1.0, 0.0, score, self.threshold, 0.0, {},
                               self.warm)  # fmt: skip
        z = view.z
        feature = max(z, key=lambda c: abs(z[c]))
        mean = self._mean.get(feature, view.angles[feature])
        spread = math.sqrt(1.0 / (4.0 * view.total) + self._extra.get(feature, 0.0))

        def share(angle: float) -> float:
            return math.sin(max(0.0, min(math.pi / 2, angle))) ** 2

        return MixEvidence(
            feature, view.shares[feature], share(mean),
            share(mean - self.min_z * spread), share(mean + self.min_z * spread),
            z[feature], score, self.threshold, float(view.total), dict(view.shares), self.warm,
        )  # fmt: skip

    def learn_one(self, x: Mapping[Any, Any]) -> None:
        view = self._view(x)
        if view is None:
            return
        if self._categories is None:
            self._categories = tuple(view.shares)
        if self.warm:
            self._scores.update(self._score(view))
        self._trees.learn_one(view.u)
        # Early on the baseline moves fast (plain mean), then it forgets at `half_life`.
        a = max(self._alpha, 1.0 / (self.n_learned + 1))
        for c, angle in view.angles.items():
            mean = self._mean.get(c, angle)
            d = angle - mean
            self._mean[c] = mean + a * d
            extra = d * d - 1.0 / (4.0 * view.total)
            self._extra[c] = max(0.0, (1 - a) * self._extra.get(c, 0.0) + a * extra)
        self.n_learned += 1
