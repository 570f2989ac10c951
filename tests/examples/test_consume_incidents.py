"""``examples/consume_incidents.py`` against the embedded broker: routes, skips bad records,
commits what it handled (and only that)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from streams.broker import EmbeddedBroker, create_topics
from tests.integration.conftest import produce
from tests.streams.test_tail import make_event

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "consume_incidents.py"


def run_example(broker: EmbeddedBroker, topic: str, group: str, *args: str) -> tuple[str, str]:
    done = subprocess.run(
        [
            sys.executable,
            str(EXAMPLE),
            "--bootstrap",
            broker.bootstrap,
            "--topic",
            topic,
            "--group",
            group,
            "--start",
            "earliest",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout, done.stderr


def committed(broker: EmbeddedBroker, topic: str, group: str) -> dict[int, int | None]:
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group)
    try:
        return {p: consumer.committed(TopicPartition(topic, p)) for p in range(2)}
    finally:
        consumer.close()


def test_consume_incidents_routes_commits_and_skips_bad_records(broker: EmbeddedBroker) -> None:
    topic = f"incidents-example-{time.time_ns() % 10**10}"
    create_topics(broker.bootstrap, [topic], partitions=2)
    events = [
        make_event("open", severity="critical", key="k-crit"),
        make_event("open", severity="warning", key="k-warn"),
        make_event("update", severity="error", key="k-crit"),
        make_event("resolve", key="k-crit"),
    ]
    t0 = 1_760_861_290_000
    records: list[tuple[bytes | None, bytes, int]] = [
        (e["data"]["dedup_key"].encode(), json.dumps(e).encode(), t0 + i)
        for i, e in enumerate(events)
    ]
    records.insert(1, (b"k-crit", b"this is not json", t0))
    produce(broker.bootstrap, topic, records)

    out, err = run_example(broker, topic, "ops", "--max-events", "4", "--idle-timeout", "20")
    lines = out.splitlines()
    routes = [(line.split()[0], line.split()[3]) for line in lines]
    # per dedup key in order (one key, one partition); keys may interleave across partitions
    assert sorted(routes) == sorted(
        [("page", "k-crit"), ("ticket", "k-warn"), ("page", "k-crit"), ("close", "k-crit")]
    )
    assert [r for r in routes if r[1] == "k-crit"] == [
        ("page", "k-crit"),
        ("page", "k-crit"),
        ("close", "k-crit"),
    ]
    assert "not an incident event (JSONDecodeError" in err and "@1" in err
    assert "handled 4 incident events" in err

    # everything handled (and the bad record) is committed: a restart has nothing to redo
    offsets = committed(broker, topic, "ops")
    assert sum(o or 0 for o in offsets.values()) == len(records)
