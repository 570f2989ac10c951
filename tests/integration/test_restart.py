"""Killing the worker mid-incident: the incident is neither lost nor duplicated, and resolves."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from typing import Any

import jsonschema

from streams.broker import EmbeddedBroker
from streams.demo import Collapse, DemoPlan, traffic
from streams.schemas import load_schema
from tests.integration.conftest import Worker, consume, consume_windows, produce


def _has(action: str) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda values: any(v["data"]["event_action"] == action for v in values)


def test_a_worker_killed_mid_incident_restarts_without_losing_or_repeating_it(
    broker: EmbeddedBroker, start_worker: Callable[..., Worker]
) -> None:
    plan = DemoPlan(
        seed=4321, minutes=12, rate=60, collapse=Collapse(bank="BIDV", start_minute=5, minutes=3)
    )
    records = [(key, json.dumps(value).encode(), ts) for key, ts, value in traffic(plan)]
    # Up to the middle of the collapse, then the kill, then the rest.
    cut = plan.collapse_start_ms + 90_000
    before = [r for r in records if r[2] < cut]
    after = [r for r in records if r[2] >= cut]

    # RADAR_IDLE_SECONDS=15: the wall-clock rule must not fire while this test is producing.
    # With the fixtures' 2 s, a stall of the test's own producer under load (it happened in 2
    # of 4 full runs) let the input look stopped: every open window was closed, and the rest
    # of its records were rightly dead-lettered as late. Reproduced by a 4 s pause between two
    # produce calls; with 15 s the same pause counts every record.
    idle = {"RADAR_IDLE_SECONDS": "15"}
    first = start_worker(**idle)
    topics = first.settings.topics
    produce(broker.bootstrap, topics.transactions, before)
    opened = consume(broker.bootstrap, topics.incidents, _has("trigger"), timeout=120)
    assert [e["data"]["event_action"] for e in opened] == ["trigger"], first.log()[-3000:]

    # SIGKILL: no shutdown, no final commit; open windows and the open incident are in memory.
    assert first.process is not None
    os.killpg(first.process.pid, signal.SIGKILL)
    first.process.wait(10)
    produce(broker.bootstrap, topics.transactions, after)

    second = start_worker(**idle)  # same app id and topics: the same consumer group
    events = consume(broker.bootstrap, topics.incidents, _has("resolve"), timeout=120)
    log = second.log()
    assert second.alive, log[-3000:]
    assert "restored from" in log, log[-3000:]

    # One trigger (the first worker's, not published again) and one resolve, one dedup key.
    assert [(e["data"]["event_action"], e["subject"]) for e in events] == [
        ("trigger", "wallet/partner_bank=BIDV"),
        ("resolve", "wallet/partner_bank=BIDV"),
    ], log[-3000:]
    trigger, resolve = events
    assert trigger["id"] == opened[0]["id"]
    assert trigger["data"]["dedup_key"] == resolve["data"]["dedup_key"]
    schema = load_schema("incident")
    for e in events:
        jsonschema.validate(e, schema)

    # Every record counted exactly once: the last partial sent for each (source, window,
    # service) is what stage 2 keeps (a re-sent one replaces the first copy).
    def all_counted(values: list[dict[str, Any]]) -> bool:
        return _kept_count(values) >= len(records)

    partials = consume_windows(broker.bootstrap, topics.windows, all_counted, timeout=60)
    dead = consume(broker.bootstrap, topics.deadletter, lambda v: False, timeout=2)
    kinds = sorted({str(d.get("error_kind")) for d in dead})
    why = f"{len(dead)} dead-lettered ({kinds}); {_missing(partials, records)}"
    assert _kept_count(partials) == len(records), why + second.log()[-4000:]
    assert dead == []


def _kept_count(values: list[dict[str, Any]]) -> int:
    kept: dict[tuple[Any, ...], int] = {}
    for v in values:
        if v["kind"] == "partial":
            key = (v["topic"], v["src"], v["window"], v["group"])
            kept[key] = sum(sum(c) for c in v["segments"].values())
    return sum(kept.values())


def _missing(values: list[dict[str, Any]], records: list[tuple[Any, bytes, int]]) -> str:
    """Where counted and sent records differ, per 10-second window: for the failure message."""
    kept: dict[tuple[Any, ...], int] = {}
    for v in values:
        if v["kind"] == "partial":
            kept[(v["topic"], v["src"], v["window"], v["group"])] = sum(
                sum(c) for c in v["segments"].values()
            )
    counted: dict[int, int] = {}
    for (_, _, window, _), n in kept.items():
        counted[window] = counted.get(window, 0) + n
    sent: dict[int, int] = {}
    for _, _, ts in records:
        sent[ts - ts % 10_000] = sent.get(ts - ts % 10_000, 0) + 1
    diff = {w: (sent.get(w, 0), counted.get(w, 0)) for w in sorted(set(sent) | set(counted))
            if sent.get(w, 0) != counted.get(w, 0)}  # fmt: skip
    markers = [v for v in values if v["kind"] != "partial"][-8:]
    return f"windows (sent, counted) that differ: {diff}; last markers: {markers}\n"
