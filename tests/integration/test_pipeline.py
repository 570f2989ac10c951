"""Transactions in Kafka -> worker -> River detector -> incidents on the incidents topic."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import jsonschema

from streams.broker import EmbeddedBroker
from streams.demo import Collapse, DemoPlan, traffic
from streams.schemas import load_schema
from tests.integration.conftest import Worker, consume, consume_windows, produce

WINDOW_MS = 10_000


def _actions(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["data"]["event_action"], e["subject"]) for e in events]


def _ms(iso: str) -> int:
    from datetime import datetime

    return round(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def test_bank_collapse_opens_one_incident_at_the_bank_and_resolves(
    broker: EmbeddedBroker, start_worker: Callable[..., Worker]
) -> None:
    plan = DemoPlan(
        seed=1234, minutes=12, rate=60, collapse=Collapse(bank="VCB", start_minute=5, minutes=3)
    )
    worker = start_worker()
    topics = worker.settings.topics
    records = [(key, json.dumps(value).encode(), ts) for key, ts, value in traffic(plan)]
    produce(broker.bootstrap, topics.transactions, records)

    def resolved(values: list[dict[str, Any]]) -> bool:
        return any(v["data"]["event_action"] == "resolve" for v in values)

    events = consume(broker.bootstrap, topics.incidents, resolved, timeout=120)
    assert worker.alive, worker.log()[-3000:]
    assert _actions(events) == [
        ("trigger", "wallet/partner_bank=VCB"),
        ("resolve", "wallet/partner_bank=VCB"),
    ], worker.log()[-3000:]

    schema = load_schema("incident")
    for e in events:
        jsonschema.validate(e, schema)
    trigger, resolve = events
    assert trigger["data"]["dedup_key"] == resolve["data"]["dedup_key"]
    assert trigger["id"] != resolve["id"]
    assert trigger["data"]["payload"]["class"] == "partner_bank_failure"
    details = trigger["data"]["payload"]["custom_details"]
    assert details["segment"] == {"service": "wallet", "partner_bank": "VCB"}
    assert details["observed"] < 0.5 < details["expected"]
    # Opened within two windows of the onset, resolved after the recovery.
    opened = _ms(details["window_end"])
    assert plan.collapse_start_ms < opened <= plan.collapse_start_ms + 2 * WINDOW_MS
    resolved_at = _ms(resolve["data"]["payload"]["custom_details"]["window_end"])
    assert resolved_at > plan.collapse_end_ms


def test_worker_without_incident_stays_quiet(
    broker: EmbeddedBroker, start_worker: Callable[..., Worker]
) -> None:
    """Normal traffic only: windows are completed (seen on the windows topic), no incident."""
    plan = DemoPlan(seed=99, minutes=6, rate=60, collapse=Collapse(minutes=0))
    worker = start_worker()
    topics = worker.settings.topics
    records = [(k, json.dumps(v).encode(), ts) for k, ts, v in traffic(plan)]
    produce(broker.bootstrap, topics.transactions, records)

    def all_counted(values: list[dict[str, Any]]) -> bool:
        return _counted(values) >= len(records)

    partials = consume_windows(broker.bootstrap, topics.windows, all_counted, timeout=90)
    assert _counted(partials) == len(records)
    incidents = consume(broker.bootstrap, topics.incidents, lambda v: False, timeout=3)
    assert incidents == []


def _counted(values: list[dict[str, Any]]) -> int:
    return sum(
        sum(sum(c) for c in v["segments"].values()) for v in values if v["kind"] == "partial"
    )
