"""A worker taking over balances and OTP partitions reads back their accounts' funded status
(RADAR_ACCOUNT_STATE) and replays their recent history into its per-account and per-code state
(RADAR_STATE_HISTORY_SECONDS), so it counts what one worker reading the whole stream counts: a
funded account reading 0 after the restart is a violation, even when its funding is older
than the history; a code requested before it and delivered after is delivered in time."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from detectors.signals import BALANCE_COUNTERS, FAMILIES, SEP, Extractor
from streams.broker import PRODUCER_SETTINGS, EmbeddedBroker
from tests.integration.conftest import Worker, consume, consume_windows

T0 = 1_760_860_800_000  # 2025-10-19T08:00:00Z
CUT = T0 + 180_000  # the first worker is killed once it has committed the records before this
END = CUT + 60_000
#: Windows up to here are compared; a record per partition after it closes them (no idle wait).
CLOSE = END + 10_000
PARTS = 4
FUNDED = 40  # accounts funded in the first 40 s, reading 0 after the restart
PENDING = 8  # codes requested 25 s before the cut, delivered 2 s after it
Rec = tuple[str, int, str, dict[str, Any]]  # (kind, partition, key, value)


def _traffic() -> list[Rec]:
    """Balances and OTP records, each account and code on one partition, in time order."""
    out: list[tuple[int, Rec]] = []

    def bal(ts: int, account: str, part: int, balance: float) -> None:
        value = {"event_id": f"b-{account}-{ts}", "event_time": ts, "service": "wallet",
                 "kind": "read", "account_id": account, "balance": balance,
                 "region": "south"}  # fmt: skip
        out.append((ts, ("balances", part, account, value)))

    def otp(ts: int, code: str, part: int, stage: str) -> None:
        value = {"event_id": f"o-{code}-{stage}", "event_time": ts, "service": "wallet",
                 "stage": stage, "otp_id": code, "operator": "viettel",
                 "provider": "infobip"}  # fmt: skip
        out.append((ts, ("otp", part, code, value)))

    for i in range(FUNDED):
        bal(T0 + i * 1000, f"f{i}", i % PARTS, 5000.0)
        bal(CUT + 1000 + i * 500, f"f{i}", i % PARTS, 0.0)
    for j, ts in enumerate(range(T0 + 250, END, 500)):  # busy accounts: every partition moves
        bal(ts, f"b{j % 8}", j % PARTS, 100.0 + j % 3)
    for k, ts in enumerate(range(T0 + 700, END, 2000)):  # codes delivered within 1.5 s
        otp(ts, f"c{k}", k % PARTS, "requested")
        otp(ts + 1500, f"c{k}", k % PARTS, "delivered")
    for i in range(PENDING):
        # 25 s before the cut: a window that closes without waiting for the idle rule (the
        # partition's records are 8 s apart); delivered 27 s later, within the 30 s deadline.
        otp(CUT - 25_000 + i, f"p{i}", i % PARTS, "requested")
        otp(CUT + 2000 + i, f"p{i}", i % PARTS, "delivered")
    for part in range(PARTS):  # the partitions' watermarks pass CLOSE: its windows close
        bal(CLOSE + 10_000 + part, f"b{part}", part, 100.0)
        otp(CLOSE + 10_000 + part, f"t{part}", part, "requested")
    out.sort(key=lambda item: item[0])
    return [rec for _, rec in out]


def _reference(records: list[Rec]) -> Counter[tuple[str, str, int]]:
    """What one worker counts in the windows before CLOSE reading every partition whole: an
    extractor per partition fed in offset order (the worker's own code)."""
    extractors: dict[tuple[str, int], Extractor] = {}
    totals: Counter[tuple[str, str, int]] = Counter()
    for kind, part, _, value in records:
        if value["event_time"] >= CLOSE:
            continue
        ex = extractors.setdefault((kind, part), Extractor())
        for _service, key, index, amount in ex.updates(kind, value):
            totals[(kind, key, index)] += amount
    return totals


def _produce(bootstrap: str, topics: dict[str, str], records: list[Rec]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, **PRODUCER_SETTINGS)
    try:
        for kind, part, key, value in records:
            producer.send(topics[kind], key=key.encode(), value=json.dumps(value).encode(),
                          partition=part, timestamp_ms=value["event_time"])  # fmt: skip
        producer.flush()
    finally:
        producer.close()


def _wait_committed(bootstrap: str, group: str, needed: dict[tuple[str, int], int]) -> None:
    """Until the group's committed offset of each (topic, partition) reaches its figure."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        deadline = time.monotonic() + 90
        while True:
            have = {tp: consumer.committed(TopicPartition(*tp)) or 0 for tp in needed}
            if all(have[tp] >= n for tp, n in needed.items()):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"committed offsets {have}, needed {needed}")
            time.sleep(0.5)
    finally:
        consumer.close()


def _kept(values: list[dict[str, Any]]) -> Counter[tuple[str, str, int]]:
    """Counts per (kind, cell, counter) of the partials stage 2 keeps (the last per source,
    window and service: a re-sent one replaces the first)."""
    last: dict[tuple[Any, ...], dict[str, list[int]]] = {}
    for v in values:
        if v["kind"] == "partial" and v["window"] < CLOSE:
            last[(v["topic"], v["src"], v["window"], v["group"])] = v["segments"]
    totals: Counter[tuple[str, str, int]] = Counter()
    for (kind, *_), segments in last.items():
        for key, counts in segments.items():
            for index, n in enumerate(counts):
                if n:
                    totals[(kind, key, index)] += n
    return totals


def _closed_until(values: list[dict[str, Any]]) -> dict[tuple[str, int], int]:
    """Per input (kind, partition): where its newest "closed" marker says it is closed."""
    until: dict[tuple[str, int], int] = {}
    for v in values:
        if v["kind"] == "closed":
            source = (v["topic"], v["src"])
            until[source] = max(until.get(source, 0), v["until"])
    return until


def _closed_to_end(values: list[dict[str, Any]]) -> bool:
    until = _closed_until(values)
    ours = [(kind, p) for kind in ("balances", "otp") for p in range(PARTS)]
    return all(until.get(source, 0) >= CLOSE for source in ours)


#: how -> (RADAR_STATE_HISTORY_SECONDS, RADAR_ACCOUNT_STATE) of the worker that takes over.
#: A minute of history reaches back past the pending codes' requests (25 s before the cut) but
#: not to the funding reads (140 s and more before it): only the account state knows those.
#: The default history (900 s) is the joining worker's here, and test_restart's on a restart.
HOW = {
    "restart, no history nor account state": ("0", "false"),
    "restart, a minute of history": ("60", "true"),
    "restart, a minute of history, no account state": ("60", "false"),
    "second worker joins": ("900", "true"),
}


@pytest.mark.parametrize("how", list(HOW))
def test_a_worker_taking_partitions_over_counts_what_one_uninterrupted_worker_counts(
    broker: EmbeddedBroker, start_worker: Callable[..., Worker], how: str
) -> None:
    """Once the first worker has committed past the funding reads and the pending codes'
    requests, it is killed and a new one started (restart), or a second one joins (the
    partitions move in a rebalance), and the rest is produced. With the account state, the
    counts are the uninterrupted worker's, with a minute of history or the default.
    Without either (the behaviour before they existed), the control: the zero reads and
    in-time deliveries that need the earlier records are missing, so this data does test
    that state; with a minute of history and no account state, the zero reads alone are
    missing, so the funding reads are older than that minute."""
    history, account_state = HOW[how]
    records = _traffic()
    before = [r for r in records if r[3]["event_time"] < CUT]
    after = [r for r in records if r[3]["event_time"] >= CUT]
    idle = {"RADAR_IDLE_SECONDS": "15"}  # as in test_restart: no idle closing mid-produce
    first = start_worker(**idle)
    topics = first.settings.topics.inputs()
    _produce(broker.bootstrap, topics, before)
    needed: dict[tuple[str, int], int] = {}
    position: Counter[tuple[str, int]] = Counter()
    for kind, part, key, value in before:
        position[(kind, part)] += 1
        if (key.startswith("f") and value["balance"]) or key.startswith("p"):
            needed[(topics[kind], part)] = position[(kind, part)]
    _wait_committed(broker.bootstrap, first.settings.app_id, needed)
    if how.startswith("restart"):
        assert first.process is not None
        os.killpg(first.process.pid, signal.SIGKILL)  # no shutdown, no final commit
        first.process.wait(10)
    second = start_worker(
        RADAR_STATE_HISTORY_SECONDS=history, RADAR_ACCOUNT_STATE=account_state, **idle
    )
    _produce(broker.bootstrap, topics, after)
    values = consume_windows(broker.bootstrap, first.settings.topics.windows, _closed_to_end, 120)
    log = second.log()
    assert _closed_to_end(values), f"closed until {_closed_until(values)}\n{log[-3000:]}"
    dead = consume(broker.bootstrap, first.settings.topics.deadletter, lambda v: False, timeout=2)
    assert dead == [], dead[:3]

    got, want = _kept(values), _reference(records)
    zero = ("balances", f"wallet{SEP}south", BALANCE_COUNTERS.index("zero_unexplained"))
    in_time_counter = FAMILIES["otp"].counters.index("in_time")
    in_time = ("otp", SEP.join(("wallet", "viettel", "infobip")), in_time_counter)
    assert want[zero] == FUNDED and want[in_time] > PENDING  # the reference sees them
    if account_state == "false":
        assert " accounts of balances[" not in log
        assert got[zero] == 0, log[-3000:]
        if history == "0":
            assert " state from " not in log
            assert got[in_time] <= want[in_time] - PENDING, log[-3000:]
        else:
            assert got[in_time] == want[in_time], log[-3000:]
        return
    if how.startswith("restart"):
        assert log.count(" state from ") >= 2 * PARTS, log[-3000:]  # every partition
        recalled = re.findall(r"recalled (\d+) accounts of balances\[(\d)\]", log)
        assert {int(p) for _, p in recalled} == set(range(PARTS)), log[-3000:]
        # The funded accounts and the busy ones, each sent once when first seen.
        assert sum(int(n) for n, _ in recalled) >= FUNDED + 8, recalled
    else:  # each worker rebuilt the partitions it was given
        assert " state from " in log and " state from " in first.log(), log[-3000:]
    diff = {k: (want[k], got[k]) for k in set(want) | set(got) if want[k] != got[k]}
    assert diff == {}, f"(uninterrupted, now) counts that differ: {diff}\n{log[-3000:]}"
