"""1,000 mixed good and bad records: every bad one is dead-lettered with its reason, every
good one is counted, and the worker keeps going."""

from __future__ import annotations

import base64
import json
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import jsonschema

from streams.broker import EmbeddedBroker
from streams.schemas import load_schema
from tests.integration.conftest import Worker, consume, consume_windows, produce

T0 = 1_760_860_800_000


def good(i: int, rng: random.Random) -> dict[str, Any]:
    return {
        "event_id": f"good-{i}",
        "event_time": T0 + i * 50,
        "service": "wallet",
        "type": "payment",
        "status": rng.choice(["success"] * 9 + ["failed", "pending", "completed_late"]),
        "region": rng.choice(["north", "south"]),
        "channel": "app",
        "partner_bank": rng.choice(["ACB", "VCB", None]),
        "amount": 12.5,
    }


def bad(i: int, rng: random.Random) -> tuple[str, bytes | None]:
    """A bad record of one of the kinds the issue lists, with the error class expected."""
    base = good(i, rng)
    choice = i % 11
    if choice == 0:
        return "not_json", b'{"event_id": "x", "status": '
    if choice == 1:
        return "not_utf8", json.dumps({**base, "region": "São Paulo"}, ensure_ascii=False).encode(
            "latin-1"
        )
    if choice == 2:
        return "schema", json.dumps({**base, "event_time": "yesterday"}).encode()
    if choice == 3:
        return "schema", json.dumps({**base, "amount": "12.50"}).encode()
    if choice == 4:
        return "schema", json.dumps({k: v for k, v in base.items() if k != "status"}).encode()
    if choice == 5:
        return "schema", json.dumps({**base, "status": "ok"}).encode()
    if choice == 6:
        return "schema", json.dumps({**base, "amount": 1e20}).encode()
    if choice == 7:
        return "schema", json.dumps({**base, "region": "x" * 5000}).encode()
    if choice == 8:
        return "too_large", json.dumps({**base, "note": "y" * 30_000}).encode()
    if choice == 9:
        return "not_object", json.dumps([base]).encode()
    return "empty", None  # a tombstone


def test_bad_records_are_dead_lettered_and_good_ones_counted(
    broker: EmbeddedBroker, start_worker: Callable[..., Worker]
) -> None:
    rng = random.Random(2024)
    worker = start_worker(RADAR_MAX_RECORD_BYTES="20000")
    topics = worker.settings.topics
    records: list[tuple[bytes | None, bytes | None, int]] = []
    expected_bad: Counter[str] = Counter()
    bad_values: Counter[bytes] = Counter()
    n_good = 0
    for i in range(1000):
        key = f"k{i % 13}".encode()
        if rng.random() < 0.3:
            kind, value = bad(i, rng)
            expected_bad[kind] += 1
            bad_values[value or b""] += 1
        else:
            value = json.dumps(good(i, rng)).encode()
            n_good += 1
        records.append((key, value, T0 + i * 50))
    assert sum(expected_bad.values()) > 250 and len(expected_bad) == 6
    produce(broker.bootstrap, topics.transactions, records)  # type: ignore[arg-type]

    n_bad = sum(expected_bad.values())
    letters = consume(broker.bootstrap, topics.deadletter, lambda v: len(v) >= n_bad, timeout=60)
    assert len(letters) == n_bad, worker.log()[-3000:]
    schema = load_schema("deadletter")
    for letter in letters:
        jsonschema.validate(letter, schema)
        assert letter["source_topic"] == topics.transactions
        assert len(letter["reason"]) > 10
    assert Counter(x["error_kind"] for x in letters) == expected_bad
    assert Counter(base64.b64decode(x["value_b64"]) for x in letters) == bad_values
    enum_letter = next(x for x in letters if b'"status": "ok"' in base64.b64decode(x["value_b64"]))
    assert "'ok'" in enum_letter["reason"] and "status" in enum_letter["reason"]

    def counted(values: list[dict[str, Any]]) -> int:
        return sum(
            sum(sum(c) for c in v["segments"].values()) for v in values if v["kind"] == "partial"
        )

    partials = consume_windows(broker.bootstrap, topics.windows, lambda v: counted(v) >= n_good, 60)
    assert counted(partials) == n_good
    assert worker.alive

    # The worker is still working: a later batch of good records is counted too.
    later = [
        (b"k", json.dumps({**good(2000 + j, rng), "event_time": T0 + 100_000 + j}).encode(), 0)
        for j in range(50)
    ]
    produce(broker.bootstrap, topics.transactions, later)
    partials = consume_windows(
        broker.bootstrap, topics.windows, lambda v: counted(v) >= n_good + 50, 60
    )
    assert counted(partials) == n_good + 50
    assert worker.alive
