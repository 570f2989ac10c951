"""``replay`` and ``record`` against the embedded broker: round trip, event-time determinism
through a real worker, bad lines, and Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from streams.broker import EmbeddedBroker, create_topics, free_port
from streams.demo import Collapse, DemoPlan, traffic
from streams.replay import ErrorLog, file_records
from streams.settings import Settings
from streams.traffic import TrafficRecord, TrafficWriter, encode_value, to_line
from tests.integration.conftest import ROOT, Worker, consume

T0 = DemoPlan().start_ms


def cli_env(broker: EmbeddedBroker) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADAR_")}
    env.update(broker.env())
    return env


def cli_args(*args: str) -> list[str]:
    return [sys.executable, "-m", "streams", *args]


def run_cli(
    broker: EmbeddedBroker, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli_args(*args),
        cwd=ROOT,
        env=cli_env(broker),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def fresh_topics(broker: EmbeddedBroker, tag: str, names: Iterable[str]) -> dict[str, str]:
    """Unique topic names (4 partitions each, created now) for ``names``."""
    prefix = f"{tag}-{time.time_ns() % 10**10}"
    mapping = {n: f"{prefix}-{n}" for n in names}
    create_topics(broker.bootstrap, mapping.values(), partitions=4)
    return mapping


def topic_map_option(mapping: dict[str, str]) -> str:
    return ",".join(f"{old}={new}" for old, new in mapping.items())


def demo_records(plan: DemoPlan, topic: str = "transactions") -> list[TrafficRecord]:
    return [TrafficRecord(topic, k, ts, encode_value(v)) for k, ts, v in traffic(plan)]


def write_file(path: Path, records: Iterable[TrafficRecord]) -> Path:
    with TrafficWriter(path.parent, compress=False) as w:
        for r in records:
            w.write_line(path.name.removesuffix(".jsonl"), to_line(r))
    return path


def read_back(directory: Path) -> list[TrafficRecord]:
    errors = ErrorLog()
    out = [r for p in sorted(directory.iterdir()) for r in file_records(p, errors)]
    assert errors.total == 0, errors.lines()
    return out


def per_key(records: Iterable[TrafficRecord]) -> dict[tuple[str, bytes], list[tuple[int, bytes]]]:
    order: dict[tuple[str, bytes], list[tuple[int, bytes]]] = defaultdict(list)
    for r in records:
        if r.key is not None:  # null keys spread over partitions: no order to keep
            order[(r.topic, r.key)].append((r.timestamp, r.value))
    return order


# --------------------------------------------------------------------------- 1. round trip


def test_replay_then_record_gives_back_identical_records(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    plan = DemoPlan(seed=5, minutes=2, rate=40, collapse=Collapse(minutes=0))
    transactions = demo_records(plan)
    logins = [
        TrafficRecord("logins", None, T0 + i * 700, encode_value({"event_time": T0 + i * 700}))
        for i in range(50)
    ]
    otp = [
        TrafficRecord("otp", b"op|viettel", T0 + 10, b"\xff\x00 not json at all"),
        TrafficRecord("otp", b"\xfe\xffbinary-key", T0 + 20, b'{"spaced": true}'),
        TrafficRecord("otp", "số|ключ".encode(), T0 + 30, '{"text":"é"}'.encode()),
    ]
    source = tmp_path / "traffic"
    with TrafficWriter(source, compress=False) as w:
        for r in [*transactions, *logins]:
            w.write(r)
    with TrafficWriter(source, compress=True) as gz:  # one gzip file too
        for r in otp:
            gz.write(r)
        gz_files = [gz.path_for("otp")]
    assert gz_files[0].exists()
    original = [*transactions, *logins, *otp]

    mapping = fresh_topics(broker, "rt", ["transactions", "logins", "otp"])
    sent = run_cli(
        broker, "replay", str(source), "--speed", "max", "--topic-map", topic_map_option(mapping)
    )
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert f"sent={len(original)} skipped=0 errors=0" in sent.stdout

    out = tmp_path / "recorded"
    got = run_cli(
        broker,
        "record",
        "--topics",
        ",".join(mapping.values()),
        "--out",
        str(out),
        "--idle-timeout",
        "3",
    )
    assert got.returncode == 0, got.stdout + got.stderr
    assert f"records={len(original)} errors=0" in got.stdout
    for new in mapping.values():
        assert f"{new}: " in got.stdout

    back_names = {new: old for old, new in mapping.items()}
    recorded = [
        TrafficRecord(back_names[r.topic], r.key, r.timestamp, r.value) for r in read_back(out)
    ]
    assert Counter(recorded) == Counter(original)
    assert per_key(recorded) == per_key(original)


def test_simulate_replay_record_round_trip(broker: EmbeddedBroker, tmp_path: Path) -> None:
    """Simulated traffic of every input topic comes back from the broker record for record."""
    source = tmp_path / "simulated"
    made = subprocess.run(
        [sys.executable, "-m", "streams", "simulate", "--scenario", "qiwi", "--seed", "4242",
         "--days", "0.02", "--onset-hour", "0.1", "--duration-minutes", "10", "--rate", "5",
         "--no-progress", "--out", str(source)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert made.returncode == 0, made.stdout + made.stderr
    original = read_back_files(source)
    topics = sorted({r.topic for r in original})
    assert len(topics) >= 6 and len(original) > 1000, (topics, len(original))

    mapping = fresh_topics(broker, "sim", topics)
    sent = run_cli(
        broker, "replay", str(source), "--speed", "max", "--topic-map", topic_map_option(mapping)
    )
    assert sent.returncode == 0, sent.stdout + sent.stderr
    out = tmp_path / "recorded"
    got = run_cli(
        broker, "record", "--topics", ",".join(mapping.values()), "--out", str(out),
        "--idle-timeout", "3",
    )  # fmt: skip
    assert got.returncode == 0, got.stdout + got.stderr
    back_names = {new: old for old, new in mapping.items()}
    recorded = [
        TrafficRecord(back_names[r.topic], r.key, r.timestamp, r.value) for r in read_back(out)
    ]
    assert Counter(recorded) == Counter(original)
    assert per_key(recorded) == per_key(original)


def read_back_files(directory: Path) -> list[TrafficRecord]:
    errors = ErrorLog()
    out = [r for p in sorted(directory.glob("*.jsonl")) for r in file_records(p, errors)]
    assert errors.total == 0, errors.lines()
    return out


# --------------------------------------------------------------------------- 2. determinism


def _incidents(broker: EmbeddedBroker, worker: Worker, bank: str) -> list[dict[str, Any]]:
    def resolved(values: list[dict[str, Any]]) -> bool:
        return any(
            v["data"]["event_action"] == "resolve" and v["subject"].endswith(f"={bank}")
            for v in values
        )

    consume(broker.bootstrap, worker.settings.topics.incidents, resolved, timeout=90)
    time.sleep(2)  # anything that follows the resolve
    return consume(broker.bootstrap, worker.settings.topics.incidents, lambda v: False, timeout=2)


def _second_worker_env(tmp_path: Path) -> dict[str, str]:
    """Topic names, app id, data directory and web port of its own (``start_worker`` gives
    every worker of a test the same ones)."""
    prefix = f"det-b-{time.time_ns() % 10**10}"
    env = {f"RADAR_TOPIC_{n.upper()}": f"{prefix}-{n}" for n in Settings().topics.all()}
    env["RADAR_APP_ID"] = f"radar-{prefix}"
    env["RADAR_DATA_DIR"] = str(tmp_path / "data-b")
    env["RADAR_WEB_PORT"] = str(free_port())  # Faust binds its web port even when disabled
    return env


def test_replay_speed_does_not_change_the_incidents(
    broker: EmbeddedBroker, start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    plan = DemoPlan(
        seed=1234, minutes=12, rate=60, collapse=Collapse(bank="VCB", start_minute=5, minutes=3)
    )
    source = write_file(tmp_path / "transactions.jsonl", demo_records(plan))
    fast_worker = start_worker()
    paced_worker = start_worker(**_second_worker_env(tmp_path))
    speed = 60.0  # 12 event-time minutes in 12 s
    runs = {}
    for name, worker, speed_option in (
        ("max", fast_worker, "max"),
        ("paced", paced_worker, f"{speed:g}"),
    ):
        target = worker.settings.topics.transactions
        runs[name] = subprocess.Popen(
            cli_args(
                "replay",
                str(source),
                "--speed",
                speed_option,
                "--topic-map",
                f"transactions={target}",
            ),
            cwd=ROOT,
            env=cli_env(broker),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    outputs = {name: proc.communicate(timeout=60) for name, proc in runs.items()}
    for name, proc in runs.items():
        assert proc.returncode == 0, outputs[name]
    paced_line = outputs["paced"][0]
    seconds = float(paced_line.split("duration=")[1].split("s ")[0])
    assert seconds >= 0.95 * plan.minutes * 60 / speed, paced_line  # it really was paced

    fast = _incidents(broker, fast_worker, "VCB")
    paced = _incidents(broker, paced_worker, "VCB")
    assert fast_worker.alive and paced_worker.alive
    actions = [(e["data"]["event_action"], e["subject"]) for e in fast]
    expected = [("trigger", "wallet/partner_bank=VCB"), ("resolve", "wallet/partner_bank=VCB")]
    assert actions == expected, fast_worker.log()[-3000:]

    def canonical(events: list[dict[str, Any]]) -> list[str]:
        return sorted(json.dumps(e, sort_keys=True) for e in events)

    assert canonical(paced) == canonical(fast)


# --------------------------------------------------------------------------- 3. bad lines


def test_bad_lines_are_counted_with_file_and_line_and_good_records_all_sent(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    good = demo_records(DemoPlan(seed=3, minutes=1, rate=20, collapse=Collapse(minutes=0)))
    lines = [to_line(r).encode() for r in good]
    bad_at = {5: b"this is not JSON", 9: b'{"topic":"transactions","key":"\xff"}', 12: b"[1,2]"}
    for number in sorted(bad_at):
        lines.insert(number - 1, bad_at[number])
    path = tmp_path / "transactions.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    mapping = fresh_topics(broker, "bad", ["transactions"])

    result = run_cli(
        broker, "replay", str(path), "--speed", "max", "--topic-map", topic_map_option(mapping)
    )
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert f"sent={len(good)} skipped=0 errors=3" in out
    assert "errors by kind: bad line 2, not UTF-8 1" in out
    for number in bad_at:
        assert f"{path}:{number}: " in out
    values = consume(
        broker.bootstrap,
        mapping["transactions"],
        lambda v: len(v) >= len(good),
        timeout=20,
        decode=lambda b: b,
    )
    assert sorted(values) == sorted(r.value for r in good)


# --------------------------------------------------------------------------- 4. Ctrl-C


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_a_paced_replay_prints_the_summary_and_exits(
    broker: EmbeddedBroker, tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    records = demo_records(DemoPlan(seed=9, minutes=10, rate=5, collapse=Collapse(minutes=0)))
    source = write_file(tmp_path / f"slow-{sig.name}.jsonl", records)  # ten minutes at speed 1
    mapping = fresh_topics(broker, "sig", ["transactions"])
    with subprocess.Popen(
        cli_args("replay", str(source), "--speed", "1", "--topic-map", topic_map_option(mapping)),
        cwd=ROOT,
        env=cli_env(broker),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            first = consume(broker.bootstrap, mapping["transactions"], bool, timeout=30)
            assert first, "nothing was sent before the signal"
            proc.send_signal(sig)
            out, err = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == code, out + err
    assert out.startswith(f"replay stopped by {sig.name}, summary so far: sent="), out + err
    sent = int(out.split("sent=")[1].split()[0])
    assert 0 < sent < len(records)
    left = subprocess.run(["pgrep", "-f", str(source)], capture_output=True, text=True)
    assert left.stdout.strip() == "", "a replay process outlived the signal"
    # What the summary counts as sent is on the topic (flushed before exiting).
    values = consume(
        broker.bootstrap, mapping["transactions"], lambda v: len(v) >= sent, timeout=10
    )
    assert len(values) == sent


# --------------------------------------------------------------------------- more


def test_record_stopped_by_ctrl_c_leaves_complete_gzip_files(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    records = demo_records(DemoPlan(seed=4, minutes=1, rate=30, collapse=Collapse(minutes=0)))
    mapping = fresh_topics(broker, "rec", ["transactions"])
    sent = run_cli(
        broker,
        "replay",
        str(write_file(tmp_path / "transactions.jsonl", records)),
        "--speed",
        "max",
        "--topic-map",
        topic_map_option(mapping),
    )
    assert sent.returncode == 0, sent.stdout + sent.stderr
    out = tmp_path / "recorded"
    with subprocess.Popen(
        cli_args("record", "--topics", mapping["transactions"], "--out", str(out), "--gzip"),
        cwd=ROOT,
        env=cli_env(broker),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            path = out / f"{mapping['transactions']}.jsonl.gz"
            deadline = time.monotonic() + 30
            while not path.exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(2)  # long enough to read the few thousand records
            proc.send_signal(signal.SIGINT)
            stdout, stderr = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, stdout + stderr
    assert stdout.startswith("record finished (stopped by SIGINT): records="), stdout + stderr
    recorded = read_back(out)  # a truncated gzip stream would be an error here
    assert Counter(r.value for r in recorded) == Counter(r.value for r in records)


def test_replay_of_a_topic_range_with_record_until(broker: EmbeddedBroker, tmp_path: Path) -> None:
    plan = DemoPlan(seed=6, minutes=3, rate=20, collapse=Collapse(minutes=0))
    records = demo_records(plan)
    mapping = fresh_topics(broker, "range", ["transactions", "copy"])
    sent = run_cli(
        broker,
        "replay",
        str(write_file(tmp_path / "transactions.jsonl", records)),
        "--speed",
        "max",
        "--topic-map",
        f"transactions={mapping['transactions']}",
    )
    assert sent.returncode == 0, sent.stdout + sent.stderr
    lo, hi = T0 + 60_000, T0 + 120_000  # 08:01:00Z .. 08:02:00Z
    wanted = [r for r in records if lo <= r.timestamp < hi]
    # A minute of the topic, from partition-merged timestamps, into another topic.
    copied = run_cli(
        broker,
        "replay",
        f"topic:{mapping['transactions']}@{lo}..2025-10-19T08:02:00Z",  # FROM ms, TO ISO
        "--speed",
        "max",
        "--topic-map",
        f"{mapping['transactions']}={mapping['copy']}",
    )
    assert copied.returncode == 0, copied.stdout + copied.stderr
    assert f"sent={len(wanted)} " in copied.stdout
    out = tmp_path / "copy"
    got = run_cli(
        broker,
        "record",
        "--topics",
        mapping["copy"],
        "--out",
        str(out),
        "--until",
        str(hi),
    )
    assert got.returncode == 0, got.stdout + got.stderr
    assert "(reached --until)" in got.stdout
    recorded = read_back(out)
    assert Counter((r.key, r.timestamp, r.value) for r in recorded) == Counter(
        (r.key, r.timestamp, r.value) for r in wanted
    )
    assert per_key(TrafficRecord("t", r.key, r.timestamp, r.value) for r in recorded) == per_key(
        TrafficRecord("t", r.key, r.timestamp, r.value) for r in wanted
    )


def test_offsets_for_time_is_a_lower_bound_on_tansu_too(broker: EmbeddedBroker) -> None:
    """Tansu answers every time lookup with offset 0: the helper must never skip a record."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    from streams.broker import PRODUCER_SETTINGS, offsets_for_time

    mapping = fresh_topics(broker, "oft", ["t"])
    topic = mapping["t"]
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=20, **PRODUCER_SETTINGS)
    for i in range(40):
        producer.send(topic, value=b"%d" % i, partition=i % 2, timestamp_ms=T0 + i * 1000)
    producer.flush()
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in range(4)]
    try:
        consumer.assign(tps)
        for when in (T0 - 1, T0 + 20_500, T0 + 10**9):
            starts = offsets_for_time(consumer, tps, when)
            for tp in tps[:2]:
                # Records of partition p: i = p, p + 2, ...; offset k holds i = p + 2k.
                first_at_or_after = next(
                    (k for k in range(20) if T0 + (tp.partition + 2 * k) * 1000 >= when), 20
                )
                assert starts[tp] <= first_at_or_after
            assert starts[tps[2]] == starts[tps[3]] == 0  # empty partitions
    finally:
        consumer.close()
