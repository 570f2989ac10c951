"""A stale input topic raises a "detector blind" incident, resolved when records flow again."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import jsonschema

from streams.broker import EmbeddedBroker
from streams.schemas import load_schema
from tests.integration.conftest import Worker, consume, produce


def _logins(start_ms: int, n: int) -> list[tuple[bytes | None, bytes, int]]:
    out = []
    for i in range(n):
        ts = start_ms + i * 100
        rec = {"event_id": f"l{start_ms}-{i}", "event_time": ts, "service": "wallet",
               "outcome": "success", "region": "north"}  # fmt: skip
        out.append((b"wallet|north", json.dumps(rec).encode(), ts))
    return out


def test_a_stale_topic_is_a_blind_incident_until_it_flows_again(
    broker: EmbeddedBroker, start_worker: Callable[..., Worker]
) -> None:
    worker = start_worker(RADAR_STALE_SECONDS="3")
    topics = worker.settings.topics
    now = int(time.time() * 1000)
    produce(broker.bootstrap, topics.logins, _logins(now - 60_000, 50))

    def blind(action: str) -> Callable[[list[dict[str, Any]]], bool]:
        def done(values: list[dict[str, Any]]) -> bool:
            return any(
                v["data"]["event_action"] == action
                and v["data"]["payload"]["custom_details"]["segment"].get("topic") == "logins"
                for v in values
            )

        return done

    t0 = time.monotonic()
    events = consume(broker.bootstrap, topics.incidents, blind("trigger"), timeout=60)
    waited = time.monotonic() - t0
    assert blind("trigger")(events), worker.log()[-3000:]
    assert waited >= 2.0  # not before the topic had been silent for RADAR_STALE_SECONDS
    trigger = next(e for e in events if e["data"]["event_action"] == "trigger")
    assert trigger["data"]["payload"]["class"] == "detector_blind"
    assert trigger["data"]["payload"]["severity"] == "error"
    assert "input topic logins stopped delivering records" in trigger["data"]["payload"]["summary"]

    produce(broker.bootstrap, topics.logins, _logins(now, 20))
    events = consume(broker.bootstrap, topics.incidents, blind("resolve"), timeout=60)
    assert blind("resolve")(events), worker.log()[-3000:]
    resolve = next(e for e in events if e["data"]["event_action"] == "resolve")
    assert resolve["data"]["dedup_key"] == trigger["data"]["dedup_key"]
    for e in events:
        jsonschema.validate(e, load_schema("incident"))
    assert worker.alive


def test_a_blind_incident_open_at_a_restart_is_resolved_by_the_next_worker(
    broker: EmbeddedBroker, start_worker: Callable[..., Worker]
) -> None:
    first = start_worker(RADAR_STALE_SECONDS="3")
    topics = first.settings.topics
    now = int(time.time() * 1000)
    produce(broker.bootstrap, topics.logins, _logins(now - 60_000, 50))

    def has(action: str) -> Callable[[list[dict[str, Any]]], bool]:
        return lambda values: any(v["data"]["event_action"] == action for v in values)

    events = consume(broker.bootstrap, topics.incidents, has("trigger"), timeout=60)
    assert has("trigger")(events), first.log()[-3000:]
    first.stop()

    second = start_worker(RADAR_STALE_SECONDS="3")
    produce(broker.bootstrap, topics.logins, _logins(now, 20))
    events = consume(broker.bootstrap, topics.incidents, has("resolve"), timeout=60)
    log = second.log()
    # The first worker's incident (its key's partition, in order): triggered, then resolved
    # by the second worker. (A new silence after the last records may open another key.)
    key = next(e["data"]["dedup_key"] for e in events if e["data"]["event_action"] == "resolve")
    mine = [e for e in events if e["data"]["dedup_key"] == key]
    assert [e["data"]["event_action"] for e in mine] == ["trigger", "resolve"], log[-3000:]
    assert "adopted outage-radar/worker/stale-logins/" in log
    jsonschema.validate(mine[1], load_schema("incident"))
