"""The pure parts of the benchmarks: the last line, medians and percentiles, verdicts, the table,
and the latency bench's close-time rule. Offline and fast; no timing is asserted anywhere."""

from __future__ import annotations

import doctest
import json
import math

import pytest

from bench import latency_bench, stats
from bench.stats import (
    LAST_LINE_FIELDS,
    Row,
    last_line,
    median,
    parse_last_line,
    percentile,
    table,
    verdict,
)
from streams.traffic import TrafficRecord, encode_value


def test_last_line_exact_format() -> None:
    line = last_line(
        worker_eps=52_000.4, raw_eps=208_000, naive_eps=4_000, p99_ms=612.5, evaluate_eps=1.2e6
    )
    assert line == (
        "bench: worker_eps=52000 raw_eps=208000 ratio_raw=0.25 naive_eps=4000 ratio_naive=13"
        " p99_ms=612 evaluate_eps=1200000"
    )


def test_last_line_round_trip() -> None:
    line = last_line(6_582.2, 334_975, 6_991, 1_293.4, 44_749)
    figures = parse_last_line(line)
    assert list(figures) == list(LAST_LINE_FIELDS)
    assert figures["worker_eps"] == 6582
    assert figures["raw_eps"] == 334975
    assert figures["ratio_raw"] == pytest.approx(6582.2 / 334975, rel=5e-3)
    assert figures["ratio_naive"] == pytest.approx(6582.2 / 6991, rel=5e-3)
    assert figures["p99_ms"] == 1293
    assert figures["evaluate_eps"] == 44749
    again = parse_last_line(
        last_line(figures["worker_eps"], figures["raw_eps"], figures["naive_eps"],
                  figures["p99_ms"], figures["evaluate_eps"])
    )  # fmt: skip
    for name in ("worker_eps", "raw_eps", "naive_eps", "p99_ms", "evaluate_eps"):
        assert again[name] == figures[name]


def test_last_line_unmeasured_figures_are_nan() -> None:
    line = last_line(None, 200_000, math.nan, None, 10)
    assert line == (
        "bench: worker_eps=nan raw_eps=200000 ratio_raw=nan naive_eps=nan ratio_naive=nan"
        " p99_ms=nan evaluate_eps=10"
    )
    figures = parse_last_line(line)
    assert math.isnan(figures["worker_eps"]) and math.isnan(figures["ratio_naive"])
    assert figures["evaluate_eps"] == 10


@pytest.mark.parametrize(
    "bad",
    [
        "bench: worker_eps=1 raw_eps=2",
        "bench: raw_eps=1 worker_eps=2 ratio_raw=1 naive_eps=1 ratio_naive=1 p99_ms=1 "
        "evaluate_eps=1",
        "worker_eps=1 raw_eps=1 ratio_raw=1 naive_eps=1 ratio_naive=1 p99_ms=1 evaluate_eps=1",
        "bench: worker_eps=1 raw_eps=1 ratio_raw=1 naive_eps=1 ratio_naive=1 p99_ms=1 "
        "evaluate_eps=1 extra=2",
    ],
)
def test_parse_rejects_malformed_lines(bad: str) -> None:
    with pytest.raises(ValueError, match="not a bench last line"):
        parse_last_line(bad)


def test_median_and_percentile() -> None:
    assert median([5.0, 1.0, 3.0]) == 3.0
    assert median([4, 1, 3, 2]) == 2.5
    assert median([1.0, math.nan, 3.0]) == 2.0  # unmeasured runs are left out
    assert math.isnan(median([]))
    xs = [float(x) for x in range(1, 101)]
    assert percentile(xs, 0) == 1.0
    assert percentile(xs, 50) == 50.5
    assert percentile(xs, 99) == pytest.approx(99.01)
    assert percentile(xs, 100) == 100.0
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile(xs, 101)


def test_verdicts() -> None:
    assert verdict(50_000, 50_000) == "met"
    assert verdict(49_999, 50_000) == "MISSED"
    assert verdict(1_000, 1_000, higher_is_better=False) == "met"
    assert verdict(1_001, 1_000, higher_is_better=False) == "MISSED"
    assert verdict(None, 1) == "n/a"
    assert verdict(math.nan, 1) == "n/a"


def test_table_has_a_verdict_column() -> None:
    text = table([Row("worker", "6,582 ev/s", ">= 50,000", "MISSED", "median of 3")])
    header, rule, row = text.splitlines()
    assert header.split() == ["figure", "value", "target", "verdict", "how"]
    assert set(rule.replace(" ", "")) == {"-"}
    assert "MISSED" in row


def test_stats_doctests() -> None:
    assert doctest.testmod(stats).failed == 0


def test_latency_close_time_rule() -> None:
    acks = latency_bench.Acks()
    for at, ts in [(1.0, 100), (2.0, 200), (3.0, 300)]:
        acks.add(("t", 0), at, ts)
    acks.add(("t", 1), 1.5, 150)
    # Partition 1 never passes 250: it holds the window back until its idle deadline.
    assert acks.close_time(250, idle_s=5.0) == (6.5, 3.0)
    assert acks.close_time(250, idle_s=1.0) == (3.0, 3.0)
    # A partition with nothing before the boundary holds nothing back.
    assert acks.close_time(50, idle_s=5.0) == (None, 1.0)


def test_injected_outages_fail_only_the_bank_inside_the_spans() -> None:
    records = [
        TrafficRecord("transactions", b"k", t * 1000, encode_value(
            {"service": "s", "partner_bank": bank, "status": "success", "error_code": None}))
        for t in range(300) for bank in ("A", "B")
    ]  # fmt: skip
    out, spans = latency_bench.inject_outages(
        records, "s", "A", warmup_s=90, period_s=60, outage_s=20, failing=1.0
    )
    assert spans == [(90_000, 110_000), (150_000, 170_000), (210_000, 230_000), (270_000, 290_000)]
    assert len(out) == len(records)
    for r in out:
        v = json.loads(r.value)
        inside = any(a <= r.timestamp < b for a, b in spans)
        failed = v["status"] == "failed"
        assert failed == (inside and v["partner_bank"] == "A")
        if failed:
            assert v["error_code"] == "BANK_TIMEOUT"
