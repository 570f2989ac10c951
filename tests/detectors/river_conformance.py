"""Shared scaffolding for running River's estimator checks against our detectors.

River's dataset checks stream `datasets.CreditCard` (a ~150 MB download) and import
scikit-learn, neither of which this project installs. Every check still runs:
`run_river_checks` replaces River's datasets by the ones a test file supplies (typically the
CreditCard-shaped `credit_card_like` stream, whose features the detector does not read, so it
must stay neutral and not raise, plus that file's own labelled windows), and gives
check_roc_auc, which only needs `sklearn.metrics.roc_auc_score`, an exact stand-in when
scikit-learn is absent.
"""

from __future__ import annotations

import copy
import functools
import gc
import importlib.util
import random
import sys
import types
from collections.abc import Callable, Collection, Iterator
from typing import Any

import pytest
from river import checks


class Dataset:
    """A re-iterable list of (x, y), as River's checks expect of their datasets."""

    def __init__(self, rows: list[tuple[dict[str, Any], int]]) -> None:
        self.rows = rows

    def __iter__(self) -> Iterator[tuple[dict[str, Any], int]]:
        return iter(self.rows)


@functools.cache
def credit_card_like(size: int) -> Dataset:
    """Shaped like River's CreditCard stream: 30 float features, rare positives, nothing else."""
    rng = random.Random(size)
    rows = []
    for t in range(size):
        x = {"Time": float(t), "Amount": rng.expovariate(1 / 80)}
        x.update({f"V{i}": rng.gauss(0, 1) for i in range(1, 29)})
        rows.append((x, int(t % 97 == 50)))
    return Dataset(rows)


def roc_auc_score(labels: list[int], scores: list[float]) -> float:
    """ROC AUC as the Mann-Whitney probability that a positive outscores a negative (ties 1/2)."""
    positives = [s for y, s in zip(labels, scores, strict=True) if y]
    negatives = [s for y, s in zip(labels, scores, strict=True) if not y]
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def run_river_checks(
    model: Any,
    datasets: Callable[..., Iterator[Dataset]],
    monkeypatch: pytest.MonkeyPatch,
    skips: Collection[str] = (),
    *,
    freeze_gc: bool = False,
) -> list[str]:
    """Run every River check on a deep copy of `model` except `skips`; return the names run.

    `datasets` replaces `river.checks._yield_datasets` (called as `datasets(model, scale)`).
    A failing check raises AssertionError naming it. With `freeze_gc`, the objects this test
    process already holds (pytest, numpy, River) are frozen while the checks run, so that
    check_bounded_memory_growth's four gc.collect() calls do not walk them again (0.1 s each).
    """
    monkeypatch.setattr(checks, "_yield_datasets", datasets)
    if importlib.util.find_spec("sklearn") is None:
        metrics = types.ModuleType("sklearn.metrics")
        metrics.roc_auc_score = roc_auc_score  # type: ignore[attr-defined]
        sklearn = types.ModuleType("sklearn")
        sklearn.metrics = metrics  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "sklearn", sklearn)
        monkeypatch.setitem(sys.modules, "sklearn.metrics", metrics)

    ran = []
    if freeze_gc:
        gc.freeze()
    try:
        for check in checks.yield_checks(model):
            if check.__name__ in skips:
                continue
            try:
                check(copy.deepcopy(model))
            except Exception as error:
                raise AssertionError(f"River check {check.__name__} failed") from error
            ran.append(check.__name__)
    finally:
        if freeze_gc:
            gc.unfreeze()
    return ran
