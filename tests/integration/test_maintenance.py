"""Declared maintenance changes an incident's wording and severity, never hides it; a
maintenance that runs past its declared end is news (the severity goes up)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import jsonschema

from streams.broker import EmbeddedBroker
from streams.demo import Collapse, DemoPlan, traffic
from streams.schemas import load_schema
from tests.integration.conftest import Worker, consume, produce


def test_an_outage_inside_declared_maintenance_is_downgraded_then_its_overrun_raised(
    broker: EmbeddedBroker, start_worker: Callable[..., Worker]
) -> None:
    plan = DemoPlan(
        seed=2468, minutes=12, rate=60, collapse=Collapse(bank="ACB", start_minute=5, minutes=3)
    )
    worker = start_worker()
    topics = worker.settings.topics
    # Announced at the start of the traffic: 08:04-08:06, while the bank fails 08:05-08:08.
    declared = {
        "event_id": "mw-1", "event_time": plan.start_ms, "service": "wallet",
        "start_time": plan.collapse_start_ms - 60_000, "end_time": plan.collapse_start_ms + 60_000,
        "status": "scheduled", "description": "partner bank ACB link upgrade",
    }  # fmt: skip
    produce(broker.bootstrap, topics.maintenance, [(b"wallet", json.dumps(declared).encode(),
                                                    plan.start_ms)])  # fmt: skip

    def declared_to_stage_2(values: list[dict[str, Any]]) -> bool:
        return any(v["kind"] == "maintenance" for v in values)

    assert declared_to_stage_2(consume(broker.bootstrap, topics.windows, declared_to_stage_2, 60))
    records = [(key, json.dumps(value).encode(), ts) for key, ts, value in traffic(plan)]
    produce(broker.bootstrap, topics.transactions, records)

    def resolved(values: list[dict[str, Any]]) -> bool:
        return any(v["data"]["event_action"] == "resolve" for v in values)

    events = consume(broker.bootstrap, topics.incidents, resolved, timeout=120)
    log = worker.log()[-3000:]
    kinds = [e["type"].rsplit(".", 1)[1] for e in events]
    assert kinds == ["triggered", "updated", "resolved"], (kinds, log)
    for e in events:
        jsonschema.validate(e, load_schema("incident"))
    assert len({e["data"]["dedup_key"] for e in events}) == 1
    trigger, overrun, _resolve = (e["data"]["payload"] for e in events)

    # Inside the window: said, and one step lower than the collapse would be (critical).
    assert "inside declared maintenance" in trigger["summary"]
    assert trigger["severity"] == "error"
    window = trigger["custom_details"]["maintenance"]
    assert window["end"].startswith("2025-") and window["overran"] is False
    # Past the declared end and still failing: the overrun raises it.
    assert "maintenance overran" in overrun["summary"]
    assert overrun["severity"] == "critical"
    assert overrun["custom_details"]["maintenance"]["overran"] is True
    assert overrun["timestamp"] > window["end"]
