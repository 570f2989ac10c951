"""Offline tests of ``python -m streams replay``: parsing, pacing, merging, errors, summary."""

from __future__ import annotations

import doctest
import gzip
import io
import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import streams.progress
import streams.replay
from streams.errors import ConfigError
from streams.progress import Progress
from streams.replay import (
    ErrorLog,
    Pacer,
    ReplayOptions,
    ReplayStats,
    StopFlag,
    TopicRange,
    build_options,
    file_records,
    key_partitioner,
    merge_by_time,
    parse_bootstrap,
    parse_speed,
    parse_time,
    parse_topic_map,
    parse_topic_range,
    replay_main,
    replay_records,
    run_replay,
    shift_value,
    summary_lines,
)
from streams.traffic import TrafficRecord, line_for, to_line

ROOT = Path(__file__).resolve().parents[2]
#: The CLI, as ``python -m streams`` starts it.
CLI = "from streams.__main__ import main; main()"
T0 = 1_760_860_800_000  # 2025-10-19T08:00:00Z


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``python -m streams ARGS`` the way that works before and after the lead's import."""
    return subprocess.run(
        [sys.executable, "-c", CLI, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class FakeClock:
    """A monotonic clock that only moves when someone sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class ListSink:
    """A sink that keeps what it is sent; ``fail_topics`` fail at once."""

    def __init__(self, fail_topics: frozenset[str] = frozenset()) -> None:
        self.sent: list[tuple[str, bytes | None, bytes, int]] = []
        self.fail_topics = fail_topics
        self.flushed = self.closed = False
        self.stats: ReplayStats | None = None
        self.on_send: Callable[[int], None] | None = None

    def send(self, topic: str, key: bytes | None, value: bytes, timestamp_ms: int) -> bool:
        if topic in self.fail_topics:
            assert self.stats is not None
            self.stats.errors.add("send failed", f"{topic}: refused")
            return False
        self.sent.append((topic, key, value, timestamp_ms))
        if self.on_send is not None:
            self.on_send(len(self.sent))
        return True

    def flush(self, timeout_s: float | None = None) -> None:
        self.flushed = True

    def close(self, timeout_s: float = 10.0) -> None:
        self.closed = True


def rec(ts: int, topic: str = "transactions", key: bytes | None = b"k", value: Any = None) -> str:
    body = {"event_time": ts} if value is None else value
    return line_for(topic, None if key is None else key.decode(), ts, body)


def write_lines(path: Path, lines: list[str | bytes]) -> Path:
    data = b"".join((x if isinstance(x, bytes) else x.encode()) + b"\n" for x in lines)
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(data, mtime=0))
    else:
        path.write_bytes(data)
    return path


def no_pacing() -> Pacer:
    return Pacer(None)


# --------------------------------------------------------------------------- doctests


@pytest.mark.parametrize("module", [streams.replay, streams.progress])
def test_doctests(module: Any) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("topic:transactions", TopicRange("transactions")),
        ("topic:transactions:3", TopicRange("transactions", 3)),
        ("topic:t.x_y-z:0", TopicRange("t.x_y-z", 0)),
        (
            f"topic:transactions@{T0}..{T0 + 600_000}",
            TopicRange("transactions", None, T0, T0 + 600_000),
        ),
        (
            "topic:transactions:1@2025-10-19T08:00:00Z..2025-10-19T08:10:00.500Z",
            TopicRange("transactions", 1, T0, T0 + 600_500),
        ),
        ("topic:transactions@2025-10-19T10:00:00+02:00..", TopicRange("transactions", None, T0)),
        (f"topic:transactions@..{T0}", TopicRange("transactions", None, None, T0)),
        ("topic:transactions@2025-10-19T08:00:00..", TopicRange("transactions", None, T0)),
    ],
)
def test_parse_topic_range(spec: str, expected: TopicRange) -> None:
    assert parse_topic_range(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("topic:", "names no topic"),
        ("topic::1", "names no topic"),
        ("topic:bad name", "not a valid Kafka topic name"),
        ("topic:transactions:x", "'x' is not a partition number"),
        ("topic:transactions:-1", "not a partition number"),
        ("topic:transactions@123", "needs '..'"),
        ("topic:transactions@yesterday..", "is not a time"),
        (f"topic:transactions@{T0}..{T0}", "TO .* is not after FROM"),
        ("transactions", "not a topic range"),
    ],
)
def test_parse_topic_range_errors_name_the_value_and_the_form(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_topic_range(spec)
    assert repr(spec) in str(info.value) or repr(spec.split(":")[1]) in str(info.value)


def test_topic_range_admits_from_inclusive_to_exclusive() -> None:
    r = TopicRange("t", None, 10, 20)
    assert [t for t in (9, 10, 19, 20) if r.admits(t)] == [10, 19]
    assert TopicRange("t").admits(0)


def test_parse_topic_map() -> None:
    assert parse_topic_map("a=b") == {"a": "b"}
    assert parse_topic_map(" a = b , c=d ,") == {"a": "b", "c": "d"}
    assert parse_topic_map("") == {} and parse_topic_map(None) == {}
    assert parse_topic_map("a=b,a=b") == {"a": "b"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a", "'a' is not a rename; write old=new"),
        ("a=", "not a rename"),
        ("=b", "not a rename"),
        ("a=b c", "not a valid Kafka topic name"),
        ("a=b,a=c", "renames 'a' twice"),
    ],
)
def test_parse_topic_map_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_topic_map(text)


def test_parse_speed_and_time() -> None:
    assert parse_speed("max") is None and parse_speed("MAX") is None
    assert parse_speed("1") == 1.0 and parse_speed("60x") == 60.0
    for bad in ("0", "-2", "fast", "nan", "inf", ""):
        with pytest.raises(ConfigError, match=r"--speed .* is not a speed; .* or 'max'"):
            parse_speed(bad)
    assert parse_time(str(T0)) == T0
    assert parse_time("2025-10-19T08:00:00.250Z") == T0 + 250
    with pytest.raises(ConfigError, match="--from 'soon' is not a time; give epoch milliseconds"):
        parse_time("soon", "--from")


def test_parse_bootstrap() -> None:
    assert parse_bootstrap("127.0.0.1:9092") == ["127.0.0.1:9092"]
    assert parse_bootstrap("kafka://a:1,b:2") == ["a:1", "b:2"]
    for bad in ("localhost", "a:b", ""):
        with pytest.raises(ConfigError, match="--broker"):
            parse_bootstrap(bad)


def test_build_options_validates_everything() -> None:
    opts = build_options(
        "dir", speed="max", topic_map="a=b", rate_limit=10.0, topics="a,c", broker="h:1"
    )
    assert opts == ReplayOptions(
        source="dir",
        speed=None,
        topic_map={"a": "b"},
        rate_limit=10.0,
        topics=frozenset({"a", "c"}),
        broker=["h:1"],
    )
    with pytest.raises(ConfigError, match=r"--rate-limit 0\.0 is not a rate"):
        build_options("dir", rate_limit=0.0)
    with pytest.raises(ConfigError, match="--source-broker only applies to a topic range"):
        build_options("dir", source_broker="h:1")
    with pytest.raises(ConfigError, match="--topics: 'a b' is not a valid Kafka topic name"):
        build_options("dir", topics="a b")


# --------------------------------------------------------------------------- shift-to-now


def test_shift_value_moves_epoch_ms_time_fields_only() -> None:
    value = {
        "event_time": T0,
        "start_time": T0 + 60_000,
        "end_time": T0 + 120_000,
        "response_time": 250,  # a duration, not a time
        "flag_time": True,  # not an integer
        "float_time": 1.5e12,  # not an integer
        "nested": {"event_time": T0},  # only top level
        "service": "wallet",
    }
    shifted = json.loads(shift_value(json.dumps(value).encode(), 1000))
    assert shifted == {
        **value,
        "event_time": T0 + 1000,
        "start_time": T0 + 61_000,
        "end_time": T0 + 121_000,
    }


def test_shift_value_leaves_other_bytes_alone() -> None:
    for raw in (b"\xff\xfe", b"[1,2]", b'"event_time"', b"{not json", b'{"a": 1}'):
        assert shift_value(raw, 5) is raw
    assert shift_value(b'{"event_time": 5}', 0) == b'{"event_time": 5}'
    assert shift_value(b'{"event_time": 5}', 10) == b'{"event_time":15}'  # small event_time too


def test_shift_to_now_moves_timestamps_and_values_by_now_minus_first() -> None:
    records = [
        TrafficRecord("transactions", b"k", T0 + 5_000, b'{"event_time":%d}' % (T0 + 5_000)),
        TrafficRecord("transactions", b"k", T0, b'{"event_time":%d}' % T0),  # older than first
        TrafficRecord("transactions", None, T0 + 9_000, b"\x00binary"),
    ]
    sink, stats = ListSink(), ReplayStats()
    now = 1_800_000_000_000
    opts = ReplayOptions(source="x", speed=None, shift_to_now=True)
    replay_records(records, sink, opts, stats, no_pacing(), wall_ms=lambda: now)
    shift = now - (T0 + 5_000)
    assert [s[3] for s in sink.sent] == [now, T0 + shift, T0 + 9_000 + shift]
    assert json.loads(sink.sent[0][2]) == {"event_time": now}
    assert json.loads(sink.sent[1][2]) == {"event_time": T0 + shift}
    assert sink.sent[2][2] == b"\x00binary"


def test_without_shift_values_are_the_exact_bytes() -> None:
    raw = b'{"event_time": 1,  "b" : 2}'  # not canonical: still sent as is
    sink = ListSink()
    replay_records(
        [TrafficRecord("t", None, 1, raw)], sink, ReplayOptions("x"), ReplayStats(), no_pacing()
    )
    assert sink.sent == [("t", None, raw, 1)]


# --------------------------------------------------------------------------- pacing


def test_pacing_follows_event_time_divided_by_speed() -> None:
    clock = FakeClock()
    pacer = Pacer(60.0, clock=clock, sleep=clock.sleep)
    sent_at = []
    for ts in (T0, T0 + 60_000, T0 + 90_000, T0 + 600_000):
        assert pacer.wait(ts)
        sent_at.append(round(clock.now - 100.0, 6))
    assert sent_at == [0.0, 1.0, 1.5, 10.0]
    assert max(clock.sleeps) <= 0.1  # sliced, so that a stop is noticed


def test_speed_one_is_real_time_and_slow_sending_is_not_made_up_twice() -> None:
    clock = FakeClock()
    pacer = Pacer(1.0, clock=clock, sleep=clock.sleep)
    pacer.wait(T0)
    clock.now += 5.0  # the producer was slow for 5 s
    before = len(clock.sleeps)
    assert pacer.wait(T0 + 3_000)  # already due: no sleep
    assert len(clock.sleeps) == before
    assert pacer.wait(T0 + 7_000)  # due at 7 s, now is 5 s: sleeps 2 s
    assert round(clock.now - 100.0, 6) == 7.0


def test_a_record_older_than_the_replay_clock_is_sent_at_once() -> None:
    clock = FakeClock()
    pacer = Pacer(10.0, clock=clock, sleep=clock.sleep)
    pacer.wait(T0)
    pacer.wait(T0 + 10_000)
    assert round(clock.now - 100.0, 6) == 1.0
    n = len(clock.sleeps)
    assert pacer.wait(T0 - 3_600_000)  # an hour before the first record
    assert len(clock.sleeps) == n


def test_speed_max_never_sleeps() -> None:
    clock = FakeClock()
    pacer = Pacer(None, clock=clock, sleep=clock.sleep)
    for ts in (T0, T0 + 3_600_000, T0 + 7_200_000):
        assert pacer.wait(ts)
    assert clock.sleeps == []


def test_rate_limit_spaces_records_without_bursting_after_a_stall() -> None:
    clock = FakeClock()
    pacer = Pacer(None, rate_limit=4.0, clock=clock, sleep=clock.sleep)
    times = []
    for i in range(4):
        pacer.wait(T0 + i)
        times.append(round(clock.now - 100.0, 6))
    assert times == [0.0, 0.25, 0.5, 0.75]
    clock.now += 10.0  # stalled elsewhere
    pacer.wait(T0 + 10)
    t = clock.now
    pacer.wait(T0 + 11)
    assert round(clock.now - t, 6) == 0.25  # still spaced, no catch-up burst


def test_rate_limit_and_speed_together_take_the_later_time() -> None:
    clock = FakeClock()
    pacer = Pacer(1.0, rate_limit=1.0, clock=clock, sleep=clock.sleep)
    pacer.wait(T0)
    pacer.wait(T0 + 100)  # speed says 0.1 s, the cap says 1 s
    assert round(clock.now - 100.0, 6) == 1.0
    pacer.wait(T0 + 5_000)  # speed says 5 s
    assert round(clock.now - 100.0, 6) == 5.0


def test_pacer_stops_while_waiting() -> None:
    clock = FakeClock()
    waits: list[float] = []
    pacer = Pacer(
        1.0,
        clock=clock,
        sleep=clock.sleep,
        should_stop=lambda: clock.now - 100.0 >= 0.35,
        on_wait=lambda: waits.append(clock.now),
    )
    assert pacer.wait(T0)
    assert not pacer.wait(T0 + 3_600_000)
    assert clock.now - 100.0 < 0.5 and len(waits) == 4


# --------------------------------------------------------------------------- files


def test_merge_by_time_across_files_keeps_each_file_order(tmp_path: Path) -> None:
    a = write_lines(tmp_path / "a.jsonl", [rec(T0 + t, "a") for t in (0, 20, 20, 50)])
    b = write_lines(tmp_path / "b.jsonl.gz", [rec(T0 + t, "b") for t in (10, 20, 30)])
    errors = ErrorLog()
    merged = list(merge_by_time([file_records(a, errors), file_records(b, errors)]))
    assert [(r.topic, r.timestamp - T0) for r in merged] == [
        ("a", 0),
        ("b", 10),
        ("a", 20),
        ("a", 20),
        ("b", 20),  # ties: the first source first
        ("b", 30),
        ("a", 50),
    ]
    assert errors.total == 0


def test_an_unsorted_file_is_replayed_completely(tmp_path: Path) -> None:
    a = write_lines(tmp_path / "a.jsonl", [rec(T0 + t, "a") for t in (0, 100, 5, 200, 1)])
    b = write_lines(tmp_path / "b.jsonl", [rec(T0 + t, "b") for t in (50, 150)])
    errors = ErrorLog()
    merged = list(merge_by_time([file_records(a, errors), file_records(b, errors)]))
    assert sorted(r.timestamp - T0 for r in merged) == [0, 1, 5, 50, 100, 150, 200]
    assert [r.timestamp - T0 for r in merged if r.topic == "a"] == [0, 100, 5, 200, 1]


def test_bad_lines_are_reported_with_file_and_line_and_the_rest_is_read(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "mixed.jsonl",
        [
            rec(T0),  # 1
            "this is not json",  # 2
            "",  # 3 blank: skipped, not an error
            json.dumps({"topic": "t", "timestamp": T0}),  # 4 no value
            b'{"topic":"t","key":"\xff","timestamp":1,"value":1}',  # 5 not UTF-8
            json.dumps({"topic": "t", "key": None, "timestamp": -5, "value": 1}),  # 6
            rec(T0 + 1),  # 7
        ],
    )
    errors = ErrorLog()
    records = list(file_records(path, errors))
    assert [r.timestamp for r in records] == [T0, T0 + 1]
    assert errors.counts == {"bad line": 3, "not UTF-8": 1}
    where = [e.split(": ", 1)[0] for e in errors.examples]
    assert where == [f"{path}:{n}" for n in (2, 4, 5, 6)]
    assert "not JSON" in errors.examples[0]
    assert "no 'value'" in errors.examples[1]
    assert "not UTF-8" in errors.examples[2]
    assert "'timestamp' must be epoch milliseconds" in errors.examples[3]


def test_truncated_gzip_reports_where_reading_stopped(tmp_path: Path) -> None:
    lines = [rec(T0 + i).encode() + b"\n" for i in range(2_000)]
    whole = gzip.compress(b"".join(lines), mtime=0)
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(whole[: len(whole) // 2])
    errors = ErrorLog()
    records = list(file_records(path, errors))
    assert 0 < len(records) < 2_000
    assert errors.counts == {"unreadable file": 1}
    (example,) = errors.examples
    assert example.startswith(f"{path}:{len(records) + 1}: cannot read on (")
    assert "the rest of the file is skipped" in example


def test_not_gzip_at_all_is_one_error(tmp_path: Path) -> None:
    path = tmp_path / "fake.jsonl.gz"
    path.write_bytes(b"plain text, not gzip\n")
    errors = ErrorLog()
    assert list(file_records(path, errors)) == []
    assert errors.counts == {"unreadable file": 1}
    assert errors.examples[0].startswith(f"{path}:1: cannot read on (BadGzipFile")


def test_error_log_lists_the_first_few_and_counts_all() -> None:
    log = ErrorLog(listed=2)
    for i in range(5):
        log.add("bad line", f"f:{i}: x")
    log.add("send failed", "t: boom")
    assert log.total == 6
    assert log.lines() == [
        "errors by kind: bad line 5, send failed 1",
        "  f:0: x",
        "  f:1: x",
        "  ... and 4 more (counted, not listed)",
    ]


# --------------------------------------------------------------------------- the loop


def test_topics_filter_skips_and_topic_map_renames() -> None:
    records = [
        TrafficRecord("transactions", b"a", 1, b"1"),
        TrafficRecord("logins", b"b", 2, b"2"),
        TrafficRecord("otp", None, 3, b"3"),
    ]
    sink, stats = ListSink(), ReplayStats()
    opts = ReplayOptions(
        "x",
        speed=None,
        topics=frozenset({"transactions", "otp"}),
        topic_map={"transactions": "t2"},
    )
    replay_records(records, sink, opts, stats, no_pacing())
    assert sink.sent == [("t2", b"a", b"1", 1), ("otp", None, b"3", 3)]
    assert (stats.sent, stats.skipped, stats.errors.total) == (2, 1, 0)


def test_pacing_starts_at_the_first_record_that_passes_the_filter() -> None:
    clock = FakeClock()
    records = [
        TrafficRecord("other", None, T0, b"x"),
        TrafficRecord("t", None, T0 + 3_600_000, b"x"),
        TrafficRecord("t", None, T0 + 3_601_000, b"x"),
    ]
    sink = ListSink()
    pacer = Pacer(1.0, clock=clock, sleep=clock.sleep)
    opts = ReplayOptions("x", topics=frozenset({"t"}))
    replay_records(records, sink, opts, ReplayStats(), pacer)
    assert round(clock.now - 100.0, 6) == 1.0


def _files(tmp_path: Path) -> Path:
    d = tmp_path / "traffic"
    d.mkdir()
    write_lines(d / "transactions.jsonl", [rec(T0 + i * 10) for i in range(5)] + ["broken"])
    write_lines(d / "logins.jsonl.gz", [rec(T0 + 5, "logins", None, {"ok": True})])
    (d / "notes.txt").write_text("not a traffic file")
    return d


def test_run_replay_summary_counts_and_exit_code(tmp_path: Path) -> None:
    d = _files(tmp_path)
    sink = ListSink(fail_topics=frozenset({"logins"}))

    def factory(bootstrap: list[str], stats: ReplayStats) -> ListSink:
        assert bootstrap == ["h:1"]
        sink.stats = stats
        return sink

    out = io.StringIO()
    progress = Progress("replay", stream=io.StringIO(), tty=False)
    code, stats = run_replay(
        ReplayOptions(str(d), speed=None), StopFlag(), ["h:1"], out, progress, factory
    )
    assert code == 1
    assert [s[3] - T0 for s in sink.sent] == [0, 10, 20, 30, 40]
    assert (stats.sent, stats.skipped, stats.errors.counts) == (
        5,
        0,
        {"bad line": 1, "send failed": 1},
    )
    text = out.getvalue()
    assert text.startswith("replay finished: sent=5 skipped=0 errors=2 duration=")
    assert "events_per_s=" in text
    assert "errors by kind: bad line 1, send failed 1" in text
    assert f"{d / 'transactions.jsonl'}:6: not JSON" in text
    assert sink.flushed and sink.closed


def test_run_replay_exit_zero_when_all_sent(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "ok.jsonl", [rec(T0), rec(T0 + 1)])
    sink = ListSink()
    code, stats = run_replay(
        ReplayOptions(str(path), speed=None),
        StopFlag(),
        ["h:1"],
        io.StringIO(),
        Progress("replay", stream=io.StringIO(), tty=False),
        lambda b, s: sink,
    )
    assert code == 0 and stats.sent == 2 and len(sink.sent) == 2


def test_run_replay_stopped_by_a_signal_reports_so_far_and_exits_130(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "ok.jsonl", [rec(T0 + i) for i in range(100)])
    stop = StopFlag()
    sink = ListSink()
    sink.on_send = lambda n: stop.handler(signal.SIGINT, None) if n == 10 else None
    out = io.StringIO()
    code, stats = run_replay(
        ReplayOptions(str(path), speed=None),
        stop,
        ["h:1"],
        out,
        Progress("replay", stream=io.StringIO(), tty=False),
        lambda b, s: sink,
    )
    assert code == 130 and stats.sent == 10
    assert out.getvalue().startswith("replay stopped by SIGINT, summary so far: sent=10 ")
    assert sink.flushed and sink.closed


def test_stop_flag() -> None:
    stop = StopFlag()
    assert not stop.stopped and stop.name is None
    stop.handler(signal.SIGTERM, None)
    assert stop.stopped and stop.name == "SIGTERM" and stop.exit_code() == 143
    with pytest.raises(KeyboardInterrupt):
        stop.handler(signal.SIGINT, None)  # a second signal: hurry
    before = signal.getsignal(signal.SIGINT)
    other = StopFlag()
    with other.installed():
        assert signal.getsignal(signal.SIGINT) == other.handler
        assert signal.getsignal(signal.SIGTERM) == other.handler
    assert signal.getsignal(signal.SIGINT) == before


def test_summary_lines_when_stopped() -> None:
    stats = ReplayStats(queued=7, failed=1, skipped=3)
    assert summary_lines(stats, 3.0, "SIGTERM") == [
        "replay stopped by SIGTERM, summary so far: sent=6 skipped=3 errors=0 "
        "duration=3.00s events_per_s=2"
    ]


# --------------------------------------------------------------------------- usage errors


@pytest.mark.parametrize(
    ("source", "values", "message"),
    [
        ("missing-dir", {}, "SOURCE: missing-dir does not exist"),
        ("x", {"speed": "warp"}, "--speed 'warp' is not a speed"),
        ("x", {"topic_map": "nope"}, "--topic-map: 'nope' is not a rename"),
        ("x", {"rate_limit": -1.0}, "--rate-limit -1.0 is not a rate"),
        ("topic:a:b", {}, "partition 'b' is not a partition number"),
        ("x", {"broker": "nohost"}, "--broker 'nohost'"),
    ],
)
def test_usage_errors_exit_2_naming_the_value(
    source: str, values: dict[str, Any], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = signal.getsignal(signal.SIGINT)
    assert replay_main(source, **values) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert signal.getsignal(signal.SIGINT) == before  # handlers restored


def test_not_a_traffic_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "x.csv").write_text("a,b\n")
    assert replay_main(str(tmp_path / "x.csv")) == 2
    assert "expected *.jsonl or *.jsonl.gz" in capsys.readouterr().err
    assert replay_main(str(tmp_path)) == 2  # a directory without traffic files
    assert "holds no traffic files" in capsys.readouterr().err


def test_cli_usage_errors_exit_2() -> None:
    missing = cli("replay")
    assert missing.returncode == 2 and "Missing argument 'SOURCE'" in missing.stderr
    bad = cli("replay", "nowhere.jsonl", "--speed", "fast")
    assert bad.returncode == 2, bad.stderr
    assert "--speed 'fast' is not a speed" in bad.stderr


# --------------------------------------------------------------------------- progress


def test_progress_on_a_terminal_rewrites_one_line() -> None:
    t = [0.0]
    out = io.StringIO()
    p = Progress("replay", stream=out, tty=True, clock=lambda: t[0])
    assert p.interval == 0.25
    p.update(10)  # not due yet
    t[0] = 0.5
    p.update(100, lambda: "event time X")
    p.message("a warning")
    t[0] = 1.0
    p.update(200)
    p.finish()
    assert out.getvalue() == (
        "\r\x1b[Kreplay: 100 events, 200/s, event time X"
        "\r\x1b[Ka warning\n"
        "\r\x1b[Kreplay: 200 events, 200/s"
        "\r\x1b[K"
    )


def test_progress_in_a_log_writes_a_line_per_interval() -> None:
    t = [0.0]
    out = io.StringIO()
    p = Progress("record", unit="records", stream=out, tty=False, clock=lambda: t[0])
    assert p.interval == 10.0
    for i in range(1, 31):
        t[0] = float(i)
        p.update(i * 1000)
    p.finish()
    assert out.getvalue().splitlines() == [
        "record: 10,000 records, 1,000/s",
        "record: 20,000 records, 1,000/s",
        "record: 30,000 records, 1,000/s",
    ]
    assert p.elapsed() == 30.0


# --------------------------------------------------------------------------- partitioning


class FakeCluster:
    def __init__(self, n: int) -> None:
        self.n = n

    def topics(self) -> set[str]:
        return {"t"}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self.n))

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self.n))


def test_key_partitioner_matches_kafka_python_default() -> None:
    from kafka.partitioner.default import DefaultPartitioner

    ours, theirs = key_partitioner(cache_size=50), DefaultPartitioner()
    for n in (1, 4, 7):
        cluster = FakeCluster(n)
        for i in range(300):  # more keys than the cache holds, each twice
            key = f"wallet|bank{i % 120}|north|app".encode()
            expected = theirs.partition("t", key, key, None, b"v", cluster)
            assert ours.partition("t", key, key, None, b"v", cluster) == expected
    assert ours.partition("t", None, None, None, b"v", FakeCluster(4)) in range(4)


def test_to_line_round_trip_of_what_replay_reads(tmp_path: Path) -> None:
    records = [
        TrafficRecord("t", None, 1, b'{"a":1}'),
        TrafficRecord("t", b"\xffkey", 2, b"\x00\x01 not json"),
        TrafficRecord("t", "ключ".encode(), 3, '{"b":"é"}'.encode()),
    ]
    path = write_lines(tmp_path / "r.jsonl", [to_line(r) for r in records])
    assert list(file_records(path, ErrorLog())) == records


def test_an_unreachable_broker_fails_fast_with_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from streams.broker import free_port
    from streams.errors import BrokerError
    from streams.replay import check_reachable

    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(BrokerError, match=f"cannot use the broker at {address} .*is it running"):
        check_reachable([address], timeout_s=1.0)
    path = write_lines(tmp_path / "ok.jsonl", [rec(T0)])
    assert replay_main(str(path), broker=address) == 1
    assert "error: cannot use the broker at" in capsys.readouterr().err


def test_progress_detail_names_event_time_and_errors() -> None:
    from streams.replay import progress_detail

    stats = ReplayStats()
    detail = progress_detail(stats)
    assert detail() == ""
    stats.last_timestamp = T0
    stats.errors.add("bad line", "f:1: x")
    assert detail() == "event time 2025-10-19T08:00:00Z, 1 errors"


def test_a_source_failing_part_way_is_an_error_in_the_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streams.errors import BrokerError

    def failing(sources: Any) -> Any:
        yield TrafficRecord("t", None, T0, b"1")
        yield TrafficRecord("t", None, T0 + 1, b"2")
        raise BrokerError("reading t[0] stalled at offset 2 (end 9) for 30 s")

    monkeypatch.setattr(streams.replay, "merge_by_time", failing)
    path = write_lines(tmp_path / "ok.jsonl", [rec(T0)])
    sink, out = ListSink(), io.StringIO()
    code, stats = run_replay(
        ReplayOptions(str(path), speed=None),
        StopFlag(),
        ["h:1"],
        out,
        Progress("replay", stream=io.StringIO(), tty=False),
        lambda b, s: sink,
    )
    assert code == 1 and stats.sent == 2 and sink.flushed
    assert "errors by kind: source failed 1" in out.getvalue()
    assert "stalled at offset 2" in out.getvalue()
