"""Offline tests of ``python -m streams record``: options, stop rules, what is written."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kafka import TopicPartition

from streams.errors import ConfigError
from streams.record import (
    Recorder,
    RecordOptions,
    RecordStats,
    build_options,
    record_main,
    summary_lines,
)
from streams.replay import ErrorLog, file_records
from streams.traffic import TrafficRecord, TrafficWriter

ROOT = Path(__file__).resolve().parents[2]
#: The CLI, as ``python -m streams`` starts it.
CLI = "from streams.__main__ import main; main()"
T0 = 1_760_860_800_000  # 2025-10-19T08:00:00Z
A0, A1 = TopicPartition("a", 0), TopicPartition("a", 1)
B0 = TopicPartition("b", 0)


@dataclass
class Rec:
    """The fields of a kafka-python ConsumerRecord that record uses."""

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None


class FakeConsumer:
    """Hands out prepared poll batches; tracks positions, pauses and high watermarks."""

    def __init__(self, batches: Iterable[dict[Any, list[Rec]]], ends: dict[Any, int]) -> None:
        self.batches = list(batches)
        self.ends = ends
        self.positions = dict.fromkeys(ends, 0)
        self.paused: set[Any] = set()
        self.polls = 0
        self.fetched: set[Any] = set()

    def poll(self, timeout_ms: int = 0) -> dict[Any, list[Rec]]:
        self.polls += 1
        self.fetched |= set(self.ends) - self.paused
        if not self.batches:
            return {}
        batch = {tp: rs for tp, rs in self.batches.pop(0).items() if tp not in self.paused}
        for tp, rs in batch.items():
            if rs:
                self.positions[tp] = rs[-1].offset + 1
        return batch

    def pause(self, *tps: Any) -> None:
        self.paused.update(tps)

    def position(self, tp: Any) -> int:
        return self.positions[tp]

    def highwater(self, tp: Any) -> int | None:
        return self.ends[tp] if tp in self.fetched else None


class Clock:
    def __init__(self, step: float) -> None:
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def options(tmp_path: Path, **kw: Any) -> RecordOptions:
    return RecordOptions(out=tmp_path, topics=("a", "b"), **kw)


def recorder(
    consumer: FakeConsumer, opts: RecordOptions, clock: Clock | None = None, stop: Any = None
) -> tuple[Recorder, list[TrafficRecord], RecordStats]:
    written: list[TrafficRecord] = []
    stats = RecordStats()
    r = Recorder(
        consumer,
        list(consumer.ends),
        written.append,
        opts,
        stats,
        should_stop=stop or (lambda: False),
        clock=clock or Clock(0.2),
    )
    return r, written, stats


# --------------------------------------------------------------------------- options


def test_build_options(tmp_path: Path) -> None:
    opts = build_options(
        str(tmp_path / "new"),
        "x, y",
        ["transactions"],
        compress=True,
        from_time="2025-10-19T08:00:00Z",
        until=str(T0 + 1),
        idle_timeout=2.5,
        broker="kafka://h:1",
    )
    assert opts == RecordOptions(
        out=tmp_path / "new",
        topics=("x", "y"),
        compress=True,
        from_ms=T0,
        until_ms=T0 + 1,
        idle_timeout_s=2.5,
        broker=["h:1"],
    )
    assert build_options(str(tmp_path), None, ["t1", "t2"]).topics == ("t1", "t2")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"out": None}, "--out is required"),
        ({"from_time": "later"}, "--from 'later' is not a time"),
        ({"until": "2025-13-01"}, "--until '2025-13-01' is not a time"),
        ({"from_time": str(T0), "until": str(T0)}, "is not after --from"),
        ({"idle_timeout": 0.0}, "--idle-timeout 0.0 is not a duration"),
        ({"topics": "a b"}, "'a b' is not a valid Kafka topic name"),
        ({"broker": "x"}, "--broker 'x'"),
    ],
)
def test_build_options_errors(tmp_path: Path, values: dict[str, Any], message: str) -> None:
    kw: dict[str, Any] = {"out": str(tmp_path), "topics": None, "default_topics": ["t"]}
    kw.update(values)
    with pytest.raises(ConfigError, match=message):
        build_options(**kw)


def test_existing_files_are_not_overwritten_without_force(tmp_path: Path) -> None:
    (tmp_path / "t.jsonl.gz").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"t\.jsonl\.gz already exists; .*--force"):
        build_options(str(tmp_path), "t", [])
    assert build_options(str(tmp_path), "t", [], force=True).force
    assert build_options(str(tmp_path), "other", []).topics == ("other",)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file; give a directory"):
        build_options(str(tmp_path / "file"), "t", [])


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert record_main(out=None) == 2
    assert "error: --out is required" in capsys.readouterr().err
    assert record_main(out=str(tmp_path), idle_timeout=-1.0) == 2
    assert "--idle-timeout -1.0 is not a duration" in capsys.readouterr().err


def test_cli_usage_error_exit_2() -> None:
    result = subprocess.run(
        [sys.executable, "-c", CLI, "record", "--out", "somewhere", "--from", "whenever"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "--from 'whenever' is not a time" in result.stderr


# --------------------------------------------------------------------------- stop rules


def test_records_in_consumed_order_and_stops_when_idle(tmp_path: Path) -> None:
    consumer = FakeConsumer(
        [
            {
                A0: [Rec(0, T0 + 5, b"k", b"1"), Rec(1, T0 + 1, b"k", b"2")],
                B0: [Rec(0, T0, None, b"3")],
            },
            {A1: [Rec(0, T0 + 2, b"j", b'{"a":1}')]},
        ],
        {A0: 2, A1: 1, B0: 1},
    )
    r, written, stats = recorder(consumer, options(tmp_path, idle_timeout_s=1.0), Clock(0.25))
    assert r.run() == "idle"
    assert written == [
        TrafficRecord("a", b"k", T0 + 5, b"1"),
        TrafficRecord("a", b"k", T0 + 1, b"2"),  # not re-sorted: the order consumed
        TrafficRecord("b", None, T0, b"3"),
        TrafficRecord("a", b"j", T0 + 2, b'{"a":1}'),
    ]
    assert stats.written == {"a": 3, "b": 1} and stats.total == 4
    # 2 polls with records, then empty polls (0.25 s each here) until 1 s passed.
    assert consumer.polls == 2 + 4


def test_until_stops_when_every_partition_passed_it_or_is_at_its_end(tmp_path: Path) -> None:
    consumer = FakeConsumer(
        [
            {A0: [Rec(0, T0, b"k", b"1"), Rec(1, T0 + 100, b"k", b"late"), Rec(2, T0, b"k", b"x")]},
            {A1: [Rec(0, T0 + 50, b"k", b"2")]},
        ],
        {A0: 3, A1: 1, B0: 0},
    )
    r, written, _ = recorder(consumer, options(tmp_path, until_ms=T0 + 100))
    assert r.run() == "until"
    assert [w.value for w in written] == [b"1", b"2"]  # from UNTIL on: not written
    assert A0 in consumer.paused and r.past_until == {A0}
    assert consumer.polls == 2


def test_until_waits_for_a_partition_neither_past_nor_at_end(tmp_path: Path) -> None:
    consumer = FakeConsumer(
        [{A0: [Rec(0, T0, b"k", b"1")]}, {}, {}, {A0: [Rec(1, T0 + 200, b"k", b"2")]}],
        {A0: 2},
    )
    r, written, _ = recorder(consumer, options(tmp_path, until_ms=T0 + 100))
    assert r.run() == "until"
    assert consumer.polls == 4 and [w.value for w in written] == [b"1"]


def test_from_filters_older_records(tmp_path: Path) -> None:
    consumer = FakeConsumer(
        [{A0: [Rec(0, T0 - 1, b"k", b"old"), Rec(1, T0, b"k", b"new")]}], {A0: 2}
    )
    r, written, stats = recorder(consumer, options(tmp_path, from_ms=T0, idle_timeout_s=0.5))
    r.run()
    assert [w.value for w in written] == [b"new"] and stats.before_from == 1


def test_unrecordable_records_are_counted_and_listed(tmp_path: Path) -> None:
    consumer = FakeConsumer(
        [{A0: [Rec(0, T0, b"k", None), Rec(1, -1, b"k", b"v"), Rec(2, T0, b"k", b"ok")]}],
        {A0: 3},
    )
    r, written, stats = recorder(consumer, options(tmp_path, idle_timeout_s=0.5))
    r.run()
    assert [w.value for w in written] == [b"ok"]
    assert stats.errors.counts == {"not recordable": 2}
    assert stats.errors.examples == [
        "a[0]@0: null value (a tombstone)",
        "a[0]@1: no timestamp",
    ]


def test_stop_flag_ends_the_run(tmp_path: Path) -> None:
    consumer = FakeConsumer([{A0: [Rec(0, T0, b"k", b"1")]}], {A0: 1})
    r, _, _ = recorder(consumer, options(tmp_path), stop=lambda: consumer.polls >= 3)
    assert r.run() == "signal" and consumer.polls == 3


# --------------------------------------------------------------------------- files


def test_written_files_replay_the_exact_records(tmp_path: Path) -> None:
    records = [
        TrafficRecord("a", b"k", T0, b'{"event_time":1760860800000,"x":"\xc3\xa9"}'),
        TrafficRecord("a", None, T0 + 1, b"\x00\x01 not json"),
        TrafficRecord("a", b"\xff\xfe", T0 + 2, b'{"spaced": 1}'),  # not canonical JSON
        TrafficRecord("b", b"k2", T0 + 3, b"[1,2,3]"),
    ]
    consumer = FakeConsumer(
        [
            {A0: [Rec(i, r.timestamp, r.key, r.value) for i, r in enumerate(records[:3])]},
            {B0: [Rec(0, records[3].timestamp, records[3].key, records[3].value)]},
        ],
        {A0: 3, B0: 1},
    )
    stats = RecordStats()
    opts = options(tmp_path, idle_timeout_s=0.5, compress=True)
    with TrafficWriter(tmp_path, compress=True) as writer:
        Recorder(consumer, [A0, B0], writer.write, opts, stats, clock=Clock(0.2)).run()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl.gz", "b.jsonl.gz"]
    errors = ErrorLog()
    back = [r for name in ("a", "b") for r in file_records(tmp_path / f"{name}.jsonl.gz", errors)]
    assert back == records and errors.total == 0


def test_summary_lines(tmp_path: Path) -> None:
    stats = RecordStats()
    stats.written.update({"b": 2, "a": 3})
    stats.before_from = 4
    stats.errors.add("not recordable", "a[0]@1: no timestamp")
    writer = TrafficWriter(tmp_path)
    lines = summary_lines(stats, writer, 2.0, "signal", "SIGINT")
    assert lines == [
        "record finished (stopped by SIGINT): records=5 errors=1 duration=2.00s records_per_s=2",
        f"  a: 3 records -> {tmp_path / 'a.jsonl'}",
        f"  b: 2 records -> {tmp_path / 'b.jsonl'}",
        "  4 records before --from were read and left out",
        "errors by kind: not recordable 1",
        "  a[0]@1: no timestamp",
    ]
    assert summary_lines(RecordStats(), writer, 0.0, "idle", None)[0].startswith(
        "record finished (idle timeout): records=0"
    )
    assert "(reached --until)" in summary_lines(RecordStats(), writer, 1.0, "until", None)[0]


def test_record_with_an_unreachable_broker_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from streams.broker import free_port

    address = f"127.0.0.1:{free_port()}"
    assert record_main(out=str(tmp_path), broker=address) == 1
    assert f"error: cannot use the broker at {address}" in capsys.readouterr().err
