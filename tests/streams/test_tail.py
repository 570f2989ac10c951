"""Offline tests of ``python -m streams tail``: options, rendering, filters, bad records, loop."""

from __future__ import annotations

import doctest
import io
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pytest
from kafka import TopicPartition

import streams.tail
from streams.errors import ConfigError
from streams.schemas import validator
from streams.tail import (
    STYLES,
    Filter,
    Renderer,
    StartAt,
    Tailer,
    TailOptions,
    build_options,
    parse_event,
    parse_from,
    tail_main,
    use_color,
    view,
)

T0 = 1_760_861_290_000  # 2025-10-19T08:08:10Z
P0, P1 = TopicPartition("incidents", 0), TopicPartition("incidents", 1)
ANSI = "\x1b["
TYPES = {
    "open": "dev.outage-radar.incident.triggered",
    "update": "dev.outage-radar.incident.updated",
    "resolve": "dev.outage-radar.incident.resolved",
}


def iso(ms: int) -> str:
    return streams.tail.utc(ms)


def make_event(
    action: str = "open",
    severity: str = "critical",
    service: str = "wallet",
    key: str | None = None,
    at_ms: int = T0,
    opened_ms: int = T0,
    segments: Iterable[dict[str, str]] | None = None,
    summary: str | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """A schema-valid incident event shaped like the worker's (``streams.incident_events``)."""
    key = key or f"outage-radar/{service}/{opened_ms}"
    segs = list(segments) if segments is not None else [{"service": service, "partner_bank": "TCB"}]
    primary = segs[0]
    subject = streams.tail.segment_label(primary)
    cause = f"transactions through partner bank TCB failing at {service}"
    text = summary or (f"Resolved: {cause}" if action == "resolve" else f"{cause}: 15.1% vs 98.3%")
    event = {
        "specversion": "1.0",
        "id": event_id or f"{key}|{action}|{at_ms}",
        "source": "/outage-radar",
        "type": TYPES[action],
        "time": iso(at_ms),
        "subject": subject,
        "datacontenttype": "application/json",
        "data": {
            "event_action": "resolve" if action == "resolve" else "trigger",
            "dedup_key": key,
            "payload": {
                "summary": text,
                "severity": "info" if action == "resolve" else severity,
                "source": subject,
                "timestamp": iso(at_ms),
                "component": service,
                "group": "partner_bank",
                "class": "partner_bank_failure",
                "custom_details": {
                    "signal": "transactions.success_rate",
                    "segment": primary,
                    "status": "resolved" if action == "resolve" else "open",
                    "opened_at": iso(opened_ms),
                    "probable_cause": cause,
                    "segments": segs,
                },
            },
        },
    }
    validator("incident")(event)
    return event


def raw(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()


@dataclass
class Rec:
    """The fields of a kafka-python ConsumerRecord that tail uses."""

    offset: int
    value: bytes | None
    timestamp: int = T0


class FakeConsumer:
    """Hands out prepared poll batches and tracks positions."""

    def __init__(self, batches: Iterable[dict[Any, list[Rec]]], start: dict[Any, int]) -> None:
        self.batches = list(batches)
        self.positions = dict(start)
        self.polls = 0

    def poll(self, timeout_ms: int = 0) -> dict[Any, list[Rec]]:
        self.polls += 1
        if not self.batches:
            return {}
        batch = self.batches.pop(0)
        for tp, recs in batch.items():
            if recs:
                self.positions[tp] = recs[-1].offset + 1
        return batch

    def position(self, tp: Any) -> int:
        return self.positions[tp]


def options(**kw: Any) -> TailOptions:
    return TailOptions(topic="incidents", **kw)


def run_tailer(
    batches: list[dict[Any, list[Rec]]],
    ends: dict[Any, int],
    opts: TailOptions,
    stop_after_polls: int | None = None,
) -> tuple[str, list[str], list[str], Tailer]:
    consumer = FakeConsumer(batches, dict.fromkeys(ends, 0))
    out, err = io.StringIO(), io.StringIO()

    def should_stop() -> bool:
        return stop_after_polls is not None and consumer.polls >= stop_after_polls

    tailer = Tailer(consumer, opts, ends, out, err, should_stop=should_stop)
    reason = tailer.run()
    return reason, out.getvalue().splitlines(), err.getvalue().splitlines(), tailer


def test_doctests() -> None:
    result = doctest.testmod(streams.tail, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 8 and result.failed == 0


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("text", "start"),
    [
        ("beginning", StartAt("beginning")),
        (" END ", StartAt("end")),
        ("0", StartAt("offset", 0)),
        ("120", StartAt("offset", 120)),
        ("-20", StartAt("last", 20)),
        ("2025-10-19T08:08:10Z", StartAt("time", T0)),
        ("2025-10-19T10:08:10+02:00", StartAt("time", T0)),
        ("2025-10-19T08:08:10", StartAt("time", T0)),  # naive = UTC
    ],
)
def test_parse_from(text: str, start: StartAt) -> None:
    assert parse_from(text) == start


@pytest.mark.parametrize("text", ["yesterday", "", "-x", "1.5", "start"])
def test_bad_from_names_value_and_forms(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_from(text)
    message = str(info.value)
    assert f"--from {text!r}" in message
    for form in ("beginning", "end", "-N", "ISO 8601"):
        assert form in message


def test_build_options_validates() -> None:
    opts = build_options(
        "incidents",
        from_="-3",
        follow=False,
        services=["Wallet,momo", " checkout "],
        min_severity="ERROR",
        color="never",
        broker="kafka://k1:9092;k2:9092",
    )
    assert opts.start == StartAt("last", 3) and opts.follow is False
    assert opts.services == {"wallet", "momo", "checkout"}
    assert opts.min_severity == "error" and opts.color is False
    assert opts.broker == ["k1:9092", "k2:9092"]
    with pytest.raises(ConfigError, match=r"--min-severity 'fatal'.*info, warning, error"):
        build_options("incidents", min_severity="fatal")
    with pytest.raises(ConfigError, match=r"--color 'rainbow'.*auto, always or never"):
        build_options("incidents", color="rainbow")
    with pytest.raises(ConfigError, match="--topic: 'bad topic'"):
        build_options("bad topic")


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("choice", "tty", "env", "expected"),
    [
        ("auto", True, {}, True),
        ("auto", True, {"NO_COLOR": "1"}, False),
        ("auto", True, {"NO_COLOR": ""}, True),  # no-color.org: set *and not empty*
        ("auto", False, {}, False),
        ("always", False, {"NO_COLOR": "1"}, True),
        ("never", True, {}, False),
    ],
)
def test_color_choice(choice: str, tty: bool, env: dict[str, str], expected: bool) -> None:
    stream = Tty() if tty else io.StringIO()
    assert use_color(choice, stream, env) is expected


# --------------------------------------------------------------------------- rendering


def test_open_line_has_every_part_in_order_and_no_colour_when_off() -> None:
    event = make_event(
        segments=[
            {"service": "wallet", "partner_bank": "TCB"},
            {"service": "wallet", "region": "north"},
        ]
    )
    line = Renderer(color=False).line(view(event))
    assert ANSI not in line
    parts = [
        "2025-10-19T08:08:10Z",
        "OPENED",
        "critical",
        "outage-radar/wallet/1760861290000",
        "wallet",
        "transactions through partner bank TCB failing at wallet: 15.1% vs 98.3%",
        "[segments: wallet/partner_bank=TCB; wallet/region=north]",
    ]
    positions = [line.index(p) for p in parts]
    assert positions == sorted(positions), line
    assert "lasted" not in line
    assert "\n" not in line


@pytest.mark.parametrize(
    ("action", "word"), [("open", "OPENED"), ("update", "UPDATED"), ("resolve", "RESOLVED")]
)
def test_each_action_is_named(action: str, word: str) -> None:
    line = Renderer(color=False).line(view(make_event(action, severity="warning")))
    assert line.split()[1] == word


def test_resolved_line_shows_how_long_it_lasted() -> None:
    event = make_event("resolve", at_ms=T0 + 260_000, opened_ms=T0)
    line = Renderer(color=False).line(view(event))
    assert line.startswith("2025-10-19T08:12:30Z  RESOLVED  info ")
    assert line.endswith("lasted 4m20s")
    assert "Resolved: transactions through partner bank TCB" in line


@pytest.mark.parametrize("severity", ["critical", "error", "warning", "info"])
def test_severity_colours_when_on(severity: str) -> None:
    line = Renderer(color=True).line(view(make_event(severity=severity)))
    assert f"{STYLES[severity]}{severity:<8}\x1b[0m" in line
    assert Renderer(color=False).line(view(make_event(severity=severity))).count(ANSI) == 0


def test_each_severity_has_its_own_colour() -> None:
    codes = {STYLES[s] for s in ("critical", "error", "warning", "info")}
    assert len(codes) == 4 and all(c.startswith(ANSI) for c in codes)


def test_resolved_is_green_when_coloured() -> None:
    line = Renderer(color=True).line(view(make_event("resolve")))
    assert f"{STYLES['RESOLVED']}RESOLVED" in line


def test_many_segments_are_counted_not_listed() -> None:
    segs = [{"service": "wallet", "region": f"r{i}"} for i in range(7)]
    line = Renderer(color=False).line(view(make_event(segments=segs)))
    assert "wallet/region=r3; +3 more]" in line and "r4" not in line


def test_multiline_summary_stays_on_one_line() -> None:
    line = Renderer(color=False).line(view(make_event(summary="first\nsecond\r\n third")))
    assert "first second third" in line and "\n" not in line


# --------------------------------------------------------------------------- filters


def test_service_filter_matches_component_and_segments() -> None:
    f = Filter(services=frozenset({"momo"}))
    assert not f.admits(view(make_event(service="wallet")))
    assert f.admits(view(make_event(service="momo")))
    other = make_event(
        service="wallet",
        segments=[{"service": "wallet", "region": "n"}, {"service": "momo", "region": "n"}],
    )
    assert f.admits(view(other))  # one of its segments is momo's


def test_min_severity_and_resolves_follow_their_incident() -> None:
    f = Filter(min_severity="error")
    assert f.admits(view(make_event(severity="critical", key="k-crit")))
    assert f.admits(view(make_event(severity="error", key="k-err")))
    assert not f.admits(view(make_event(severity="warning", key="k-warn")))
    assert not f.admits(view(make_event(severity="info", key="k-info")))
    # resolves are always "info": they pass when their incident was shown ...
    assert f.admits(view(make_event("resolve", key="k-crit")))
    # ... not when it was filtered out ...
    assert not f.admits(view(make_event("resolve", key="k-warn")))
    # ... and pass when its opening was never seen (severity unknown)
    assert f.admits(view(make_event("resolve", key="k-unseen")))


def test_an_incident_that_grows_past_the_threshold_keeps_its_resolve() -> None:
    f = Filter(min_severity="critical")
    assert not f.admits(view(make_event("open", severity="warning", key="k")))
    assert f.admits(view(make_event("update", severity="critical", key="k")))
    assert f.admits(view(make_event("resolve", key="k")))


def test_no_filter_admits_everything() -> None:
    f = Filter()
    for sev in ("info", "warning", "error", "critical"):
        assert f.admits(view(make_event(severity=sev)))


# --------------------------------------------------------------------------- the loop


def test_no_follow_stops_at_the_end_and_leaves_later_records_out() -> None:
    a, b = make_event(key="a"), make_event("resolve", key="a", at_ms=T0 + 60_000)
    c = make_event(service="momo", key="c")
    batches = [
        {P0: [Rec(0, raw(a)), Rec(1, raw(b))], P1: [Rec(0, raw(c))]},
        {P0: [Rec(2, raw(make_event(key="late")))]},  # produced after the tail started
    ]
    reason, out, err, tailer = run_tailer(batches, {P0: 2, P1: 1}, options(follow=False))
    assert reason == "end"
    assert [line.split()[1] for line in out] == ["OPENED", "RESOLVED", "OPENED"]
    assert not any("late" in line for line in out)
    assert err == []
    assert tailer.stats.summary("reached the end") == (
        "tail reached the end: 3 events shown (2 opened, 0 updated, 1 resolved), 0 invalid records"
    )


def test_no_follow_on_an_empty_topic_ends_at_once() -> None:
    reason, out, _, tailer = run_tailer([], {P0: 0, P1: 0}, options(follow=False))
    assert reason == "end" and out == [] and tailer.consumer.polls == 0


def test_follow_runs_until_stopped() -> None:
    batches = [{P0: [Rec(0, raw(make_event()))]}, {}, {P0: [Rec(1, raw(make_event("update")))]}]
    reason, out, _, tailer = run_tailer(batches, {P0: 0}, options(follow=True), stop_after_polls=5)
    assert reason == "signal" and len(out) == 2
    assert tailer.stats.summary("stopped by SIGINT").startswith(
        "tail stopped by SIGINT: 2 events shown (1 opened, 1 updated, 0 resolved)"
    )


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"not json", "not valid JSON"),
        (None, "null (no value)"),
        (b"\xff\xfe", "not valid UTF-8"),
        (b"[1, 2]", "expected a JSON object"),
        (json.dumps({"id": "x"}).encode(), "missing required field"),
    ],
)
def test_bad_record_is_a_warning_with_its_offset_and_the_tail_goes_on(
    value: bytes | None, reason: str
) -> None:
    good = make_event(key="after")
    batches = [{P1: [Rec(7, value, timestamp=T0 + 1000), Rec(8, raw(good))]}]
    _, out, err, tailer = run_tailer(batches, {P1: 9}, options(follow=False))
    assert len(out) == 2 and err == []
    assert out[0].startswith("2025-10-19T08:08:11Z  WARNING ")
    assert "incidents[1]@7: not an incident event, skipped:" in out[0]
    assert reason in out[0]
    assert "OPENED" in out[1] and "after" in out[1]
    assert tailer.stats.invalid == 1
    assert tailer.stats.summary("x").endswith(", 1 invalid record")


def test_bad_record_warning_is_coloured_only_when_colour_is_on() -> None:
    batches = [{P0: [Rec(0, b"{")]}]
    _, out, _, _ = run_tailer(batches, {P0: 1}, options(follow=False, color=True))
    assert STYLES["warn"] in out[0]
    _, out, _, _ = run_tailer([{P0: [Rec(0, b"{")]}], {P0: 1}, options(follow=False))
    assert ANSI not in out[0]


def test_json_mode_prints_events_one_per_line_and_warnings_to_stderr() -> None:
    events = [make_event(key="a"), make_event("resolve", key="a")]
    batches = [{P0: [Rec(0, raw(events[0])), Rec(1, b"oops"), Rec(2, raw(events[1]))]}]
    _, out, err, _ = run_tailer(batches, {P0: 3}, options(follow=False, as_json=True, color=True))
    assert [json.loads(line) for line in out] == events
    assert len(err) == 1 and "incidents[0]@1" in err[0] and ANSI not in err[0]


def test_filters_apply_in_the_loop_and_are_counted() -> None:
    batches = [
        {
            P0: [
                Rec(0, raw(make_event(service="wallet", severity="critical", key="w"))),
                Rec(1, raw(make_event(service="momo", severity="critical", key="m"))),
                Rec(2, raw(make_event(service="wallet", severity="warning", key="w2"))),
                Rec(3, raw(make_event("resolve", service="wallet", key="w2"))),
                Rec(4, raw(make_event("resolve", service="wallet", key="w"))),
            ]
        }
    ]
    opts = options(follow=False, services=frozenset({"wallet"}), min_severity="error")
    _, out, _, tailer = run_tailer(batches, {P0: 5}, opts)
    assert [(line.split()[1], line.split()[3]) for line in out] == [
        ("OPENED", "w"),
        ("RESOLVED", "w"),
    ]
    assert tailer.stats.filtered == 3
    assert "3 filtered out" in tailer.stats.summary("x")


def test_from_time_filters_older_records() -> None:
    batches = [
        {
            P0: [
                Rec(0, raw(make_event(key="old")), timestamp=T0 - 1),
                Rec(1, raw(make_event(key="new")), timestamp=T0),
            ]
        }
    ]
    opts = options(follow=False, start=StartAt("time", T0))
    _, out, _, tailer = run_tailer(batches, {P0: 2}, opts)
    assert len(out) == 1 and " new " in out[0]
    assert tailer.stats.before_from == 1


def test_usage_error_exits_2_with_the_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert tail_main(from_="yesterday") == 2
    assert "error: --from 'yesterday' is not a start" in capsys.readouterr().err


def test_the_workers_own_events_render() -> None:
    """Events made by the worker's code (engine, manager, incident_events), not by hand."""
    from detectors.engine import DetectionEngine
    from detectors.incidents import IncidentManager
    from streams.incident_events import incident_event
    from tests.detectors.test_engine import W, scenario

    def bad(bank: str, region: str) -> float:
        return 0.1 if bank == "ACB" else 0.985

    engine, manager = DetectionEngine(W), IncidentManager()
    events = [
        incident_event(u, "/radar")
        for w in scenario(bad, volume=20, seed=11)
        for u in manager.process(w.start_ms + W, engine.process(w))
    ]
    lines = [Renderer(color=False).line(view(parse_event(raw(e)))) for e in events]
    assert lines[0].split()[1:3] == ["OPENED", "critical"]
    assert lines[-1].split()[1:3] == ["RESOLVED", "info"]
    assert "[segments: wallet/partner_bank=ACB" in lines[0]
    assert re.search(r"lasted \d+m\d\ds$", lines[-1]), lines[-1]
    assert all(f" {events[0]['data']['dedup_key']}  wallet  " in line for line in lines)
