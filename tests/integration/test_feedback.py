"""Operator feedback through the worker: a false alarm resolves the incident, and the same
signal then needs more evidence, which the next incident says."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import jsonschema

from streams.broker import EmbeddedBroker
from streams.demo import Collapse, DemoPlan, traffic
from streams.schemas import load_schema
from tests.integration.conftest import Worker, consume, produce


def test_false_alarm_feedback_resolves_and_raises_the_bar(
    broker: EmbeddedBroker, start_worker: Callable[..., Worker]
) -> None:
    plan = DemoPlan(
        seed=4321, minutes=14, rate=60, collapse=Collapse(bank="VCB", start_minute=5, minutes=4)
    )
    worker = start_worker()
    topics = worker.settings.topics
    records = [(key, json.dumps(value).encode(), ts) for key, ts, value in traffic(plan)]
    verdict_at = plan.collapse_start_ms + 60_000
    before = [r for r in records if r[2] < verdict_at - 30_000]
    produce(broker.bootstrap, topics.transactions, before)

    def n_actions(n: int) -> Callable[[list[dict[str, Any]]], bool]:
        return lambda values: len(values) >= n

    [trigger] = consume(broker.bootstrap, topics.incidents, n_actions(1), timeout=90)
    assert trigger["data"]["event_action"] == "trigger", worker.log()[-3000:]
    key = trigger["data"]["dedup_key"]
    verdict = {"event_id": "fb-1", "event_time": verdict_at, "dedup_key": key,
               "verdict": "false_alarm", "author": "ops@example.com"}  # fmt: skip
    produce(broker.bootstrap, topics.feedback, [(None, json.dumps(verdict).encode(), verdict_at)])
    produce(broker.bootstrap, topics.feedback, [(None, json.dumps(verdict).encode(), verdict_at)])
    time.sleep(3)  # the verdict reaches the incident manager before the traffic past it
    produce(broker.bootstrap, topics.transactions, [r for r in records if r not in before])

    events = consume(broker.bootstrap, topics.incidents, n_actions(4), timeout=120)
    assert worker.alive, worker.log()[-3000:]
    # Each dedup key is on one partition, in order; across partitions the read order depends
    # on fetch timing, so the two incidents are compared by their event times instead.
    by_key: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by_key.setdefault(e["data"]["dedup_key"], []).append(e)
    log = worker.log()[-3000:]
    assert [e["data"]["event_action"] for e in by_key.get(key, [])] == ["trigger", "resolve"], log
    [other] = [k for k in by_key if k != key]
    again = by_key[other]
    assert [e["data"]["event_action"] for e in again] == ["trigger", "resolve"], log
    resolve = by_key[key][1]["data"]
    assert resolve["payload"]["custom_details"]["verdict"] == "false_alarm"
    assert "(operator: false alarm)" in resolve["payload"]["summary"]
    # The collapse goes on after the verdict: it opens again, with more evidence, and says so.
    second = again[0]["data"]
    assert again[0]["time"] >= by_key[key][1]["time"]
    assert second["payload"]["custom_details"]["feedback_notes"] == [
        "needs 2 anomalous windows in a row and 1 more standard deviation(s) of evidence to "
        f"open (false alarm on {key.removeprefix('outage-radar/')})"
    ]
    assert len(events) == 4  # the redelivered verdict was applied once
    for e in events:
        jsonschema.validate(e, load_schema("incident"))
