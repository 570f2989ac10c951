"""MixNovelty: outcome mixes unlike the segment's history (HalfSpaceTrees on scaled shares)."""

from __future__ import annotations

import doctest
import functools
import random
from collections.abc import Iterator
from typing import Any

import pytest

import detectors.novelty
from detectors.engine import DetectionEngine, EngineWindow, Segment
from detectors.novelty import MixNovelty
from detectors.signals import FAMILIES
from tests.detectors.river_conformance import (
    Dataset,
    credit_card_like,
    roc_auc_score,
    run_river_checks,
)

COMMON_EVIDENCE = {"observed", "expected", "lower_bound", "upper_bound", "score", "volume",
                   "warm", "direction"}  # fmt: skip


def mix(rng: random.Random, n: int, shares: dict[str, float]) -> dict[str, Any]:
    """``n`` events drawn with ``shares`` (the rest: "success")."""
    counts = dict.fromkeys(["success", *shares], 0)
    for _ in range(n):
        u, acc = rng.random(), 0.0
        for name, p in shares.items():
            acc += p
            if u < acc:
                counts[name] += 1
                break
        else:
            counts["success"] += 1
    return {"counts": counts}


NORMAL = {"wrong_password": 0.05, "network": 0.01, "account_not_registered": 0.002}


def trained(seed: int = 3, windows: int = 800, **params: Any) -> tuple[MixNovelty, list[bool]]:
    rng = random.Random(seed)
    det = MixNovelty(**params)
    flags = []
    for _ in range(windows):
        x = mix(rng, rng.randint(40, 400), NORMAL)  # quiet and busy windows alike
        flags.append(det.is_anomalous(x))
        det.learn_one(x)
    return det, flags


def test_ordinary_windows_of_any_volume_are_not_novel() -> None:
    det, flags = trained(windows=3000)
    assert det.warm and sum(flags) <= 3  # 3000 windows of the same mix, 40 to 400 events


def test_a_new_combination_is_novel_and_explained() -> None:
    det, _ = trained()
    rng = random.Random(9)
    # Registration failures at 15 % (against 0.2 %) with network errors at 8 %: never seen.
    x = mix(rng, 300, {"wrong_password": 0.05, "network": 0.08, "account_not_registered": 0.15})
    assert det.is_anomalous(x)
    ev = det.explain(x)
    assert ev.feature == "account_not_registered" and ev.direction == "up"
    assert ev.observed is not None and ev.observed > ev.upper_bound > ev.expected
    assert ev.score > ev.threshold and ev.volume == 300.0
    assert {n for n in dir(ev) if not n.startswith("_")} >= COMMON_EVIDENCE


def test_a_small_shift_of_one_share_is_not_novel() -> None:
    det, _ = trained()
    rng = random.Random(10)
    x = mix(rng, 200, {"wrong_password": 0.06, "network": 0.01, "account_not_registered": 0.002})
    assert not det.is_anomalous(x)


def test_quiet_or_missing_counts_are_neutral_and_not_learned() -> None:
    det, _ = trained(windows=300)
    before = det.n_learned
    for x in ({"counts": {"success": 5, "network": 1}}, {"t": 1}, {"counts": {"success": -1}},
              {"counts": "nope"}):  # fmt: skip
        assert det.score_one(x) == 0.0 and not det.is_anomalous(x)
        det.learn_one(x)
    assert det.n_learned == before


def test_cold_detector_never_flags() -> None:
    det = MixNovelty(window_size=250)
    rng = random.Random(4)
    x = mix(rng, 300, {"account_not_registered": 0.5})
    assert det.score_one(x) == 0.0 and not det.is_anomalous(x) and not det.warm


def test_engine_judges_the_mix_over_a_minute_as_context() -> None:
    # The engine sums a minute of windows (span_ms) before the detector sees them; the signal
    # is context: its anomaly carries evidence and never opens an incident alone.
    engine = DetectionEngine(10_000)
    signal = next(s for s in engine.signals if s.name == "logins.mix")
    assert signal.span_ms == 60_000 and not signal.primary
    family = FAMILIES["logins"]
    counts = [0] * len(family.counters)
    counts[family.index("success")] = 5
    counts[family.index("failure")] = counts[family.index("fail_wrong_password")] = 1
    seen = []
    engine.observer = lambda sig, seg, t, x, *_: seen.append(x) if sig is signal else None
    for i in range(8):
        engine.process(
            EngineWindow(i * 10_000, {"logins": {"wallet": {"wallet\x1fnorth": counts}}})
        )
    # 6 events a window: the sum reaches min_total (30) at the 5th window, then holds 6 windows.
    totals = [sum(x["counts"].values()) for x in seen]
    assert totals == [6, 12, 18, 24, 30, 36, 36, 36]
    assert seen[-1]["counts"]["fail_wrong_password"] == 6
    assert engine.detectors[("logins.mix", Segment("wallet"))].n_learned == 4


def test_doctest_example_runs() -> None:
    failures, tried = doctest.testmod(detectors.novelty)
    assert tried > 5 and failures == 0


# --------------------------------------------------------------- River conformance


@functools.cache
def _mix_windows(size: int) -> Dataset:
    """Ordinary login mixes; every 100 windows 3 windows of a new combination (label 1)."""
    rng = random.Random(size + 5)
    rows = []
    for i in range(size):
        novel = i % 100 >= 97
        shares = {"wrong_password": 0.05, "network": 0.2, "account_not_registered": 0.2}
        rows.append((mix(rng, rng.randint(60, 200), shares if novel else NORMAL), int(novel)))
    return Dataset(rows)


def _datasets(model: Any, scale: int = 1) -> Iterator[Dataset]:
    scale = min(scale, 4)
    yield credit_card_like(200 * scale)
    yield _mix_windows(500 * scale)


@pytest.mark.parametrize("params", list(MixNovelty._unit_test_params()), ids=str)
def test_river_checks(params: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    model = MixNovelty(**params)
    ran = run_river_checks(model, _datasets, monkeypatch, freeze_gc=True)
    assert {"check_roc_auc", "check_emerging_features", "check_bounded_memory_growth"} <= set(ran)
    assert len(ran) >= 30


def test_scores_rank_new_combinations_above_ordinary_windows() -> None:
    det = MixNovelty(window_size=100)
    scores, labels = [], []
    for x, y in _mix_windows(3000):
        scores.append(det.score_one(x))
        if not y:  # as the engine does: what is flagged is not learned
            det.learn_one(x)
        labels.append(y)
    assert roc_auc_score(labels[200:], scores[200:]) > 0.95
