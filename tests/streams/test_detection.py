"""Stage 2's wiring: which services a completed window speaks for, and a rebalance's catch-up."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from detectors.engine import DetectionEngine, EngineWindow
from detectors.incidents import IncidentManager
from detectors.signals import FAMILIES, SEP
from streams.agents import detection
from streams.restore import LogRecord, Marker, TopicLog


def _stage2(monkeypatch: pytest.MonkeyPatch, mine: list[int]) -> list[EngineWindow]:
    """Fresh stage-2 state holding windows partitions ``mine``; the windows judged."""
    judged: list[EngineWindow] = []
    engine = DetectionEngine(10_000)
    real_process = engine.process

    def process(window: EngineWindow) -> Any:
        judged.append(window)
        return real_process(window)

    monkeypatch.setattr(engine, "process", process)
    monkeypatch.setattr(detection, "engine", engine)
    monkeypatch.setattr(detection, "manager", IncidentManager())
    for name in ("assemblers", "released", "service_partition", "rebuilt_until", "markers"):
        monkeypatch.setattr(detection, name, {})
    monkeypatch.setattr(detection, "judged_until", 0)
    monkeypatch.setattr(detection, "all_sources", lambda: ["transactions:0"])
    monkeypatch.setattr(detection, "windows_partitions", lambda: mine)
    return judged


def _partial(service: str, window: int) -> dict[str, Any]:
    counts = [0] * len(FAMILIES["transactions"].counters)
    counts[FAMILIES["transactions"].index("success")] = 5
    cell = SEP.join((service, "-", "north", "app"))
    return {"kind": "partial", "topic": "transactions", "src": 0, "n": 1, "window": window,
            "group": service, "segments": {cell: counts}}  # fmt: skip


def _closed(until: int, nxt: int = 0) -> dict[str, Any]:
    return {"kind": "closed", "topic": "transactions", "src": 0, "n": 1, "until": until,
            "next": nxt}  # fmt: skip


def test_a_window_covers_the_services_of_this_worker_s_windows_partitions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # After a rebalance this worker holds windows partition 1 ("pay"); "wallet" (partition 0)
    # went to another worker. Its engine must not read wallet's absence as a silence.
    judged = _stage2(monkeypatch, mine=[1])
    detection.handle(0, _partial("wallet", 0))
    detection.handle(1, _partial("pay", 0))
    for partition in (0, 1):  # markers go to every windows partition
        detection.handle(partition, _closed(10_000))
    assert [w.services for w in judged] == [frozenset({"pay"})]
    assert detection.service_partition == {"wallet": 0, "pay": 1}


def test_a_bundle_is_folded_as_its_messages_one_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    messages = [_partial("pay", 0), _partial("pay", 10_000), _closed(20_000)]
    one_by_one = _stage2(monkeypatch, mine=[0])
    for m in messages:
        detection.handle(0, m)
    bundled = _stage2(monkeypatch, mine=[0])
    detection.handle(0, {"kind": "bundle", "items": messages})
    assert [w.start_ms for w in bundled] == [w.start_ms for w in one_by_one] == [0, 10_000]
    assert [w.families for w in bundled] == [w.families for w in one_by_one]


def test_a_window_judged_without_a_partition_is_judged_again_for_its_services_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    judged = _stage2(monkeypatch, mine=[1])
    detection.service_partition["wallet"] = 0  # seen before the rebalance
    for window in (0, 10_000):
        detection.handle(1, _partial("pay", window))
    detection.handle(1, _closed(20_000))
    assert [(w.start_ms, w.services) for w in judged] == [
        (0, frozenset({"pay"})), (10_000, frozenset({"pay"}))
    ]  # fmt: skip
    # Partition 0 comes back (a rebalance) and its first window is completed now: pay's part
    # of it is judged already, so it is judged for wallet alone (the services of partition
    # 0); the next window is judged once, with both services.
    monkeypatch.setattr(detection, "windows_partitions", lambda: [0, 1])
    for window in (10_000, 20_000):
        detection.handle(0, _partial("wallet", window))
    detection.handle(1, _partial("pay", 20_000))
    detection.handle(0, _closed(30_000))
    detection.handle(1, _closed(30_000))
    late, last = judged[2:]
    assert (late.start_ms, late.services, set(late.families["transactions"])) == (
        10_000, frozenset({"wallet"}), {"wallet"}
    )  # fmt: skip
    assert (last.start_ms, last.services) == (20_000, frozenset({"wallet", "pay"}))
    assert set(last.families["transactions"]) == {"wallet", "pay"}


def test_a_catch_up_folds_what_another_worker_consumed_and_lets_the_stages_go(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    judged = _stage2(monkeypatch, mine=[0])
    # This worker's state of partition 0 stops at offset 2; the other worker consumed 2..4.
    detection.handle(0, _partial("wallet", 0))
    detection.rebuilt_until[0] = 2
    detection.markers[("transactions", 0)] = Marker(until_ms=0, next_offset=0)
    gap = [LogRecord(0, 2, _partial("wallet", 10_000)), LogRecord(0, 3, _closed(20_000, 57))]
    asked: list[Any] = []

    async def read_topic(bootstrap: Any, topic: str, **kw: Any) -> TopicLog:
        asked.append(kw["from_offsets"])
        return TopicLog(gap, {0: 4})

    monkeypatch.setattr(detection, "read_topic", read_topic)

    monkeypatch.setattr(detection, "restored", asyncio.Event())  # cleared by the rebalance
    monkeypatch.setattr(detection, "restore_done", asyncio.Event())
    monkeypatch.setattr(detection, "_catching_up", 1)

    async def rebalance() -> None:
        detection.restore_done.set()
        await detection.catch_up([0])

    asyncio.run(rebalance())

    assert asked == [{0: 2}]
    assert [w.start_ms for w in judged] == [0, 10_000]  # nothing lost: both windows judged
    assert detection.rebuilt_until == {0: 4}  # the agent skips what was folded
    assert detection.markers[("transactions", 0)] == Marker(until_ms=20_000, next_offset=57)
    assert detection.restored.is_set() and detection._catching_up == 0
