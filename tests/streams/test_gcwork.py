"""streams.gcwork: fewer collections during batch work, the thresholds restored after."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import pytest

from streams import evaluate, fastload
from streams.gcwork import GEN0, fewer_collections


def test_the_threshold_is_raised_inside_and_restored_after_an_error() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError, match="inside"), fewer_collections(gen0=123_456):
        assert gc.get_threshold() == (123_456, *before[1:])
        raise RuntimeError("inside")
    assert gc.get_threshold() == before


def test_a_higher_threshold_already_in_force_is_kept() -> None:
    before = gc.get_threshold()
    gc.set_threshold(200_000, *before[1:])
    try:
        with fewer_collections(gen0=50_000):
            assert gc.get_threshold()[0] == 200_000
        assert gc.get_threshold()[0] == 200_000
    finally:
        gc.set_threshold(*before)


def test_zero_is_refused_with_the_value() -> None:
    with pytest.raises(ValueError, match="got 0"), fewer_collections(gen0=0):
        pass  # pragma: no cover - never entered


def test_evaluate_runs_its_detection_with_fewer_collections(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: list[tuple[int, int, int]] = []

    def fake_run_fast(*args: Any, **kwargs: Any) -> str:
        seen.append(gc.get_threshold())
        return "result"

    monkeypatch.setattr(fastload, "run_fast", fake_run_fast)
    before = gc.get_threshold()
    assert evaluate.run(tmp_path, 10_000, 5_000, progress=False) == "result"
    assert seen == [(max(GEN0, before[0]), *before[1:])]
    assert gc.get_threshold() == before
