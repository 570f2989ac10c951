"""Tests for streams.demo.traffic: the seeded demo traffic with one injected outage."""

from __future__ import annotations

import itertools
import json
from collections import Counter

import pytest

from streams.demo import BANKS, CHANNELS, REGIONS, SERVICE, Collapse, DemoPlan, traffic
from streams.validation import decode

#: Six minutes at 60 tx/s, TCB collapsing from minute 2 to minute 4: ~21,600 transactions.
PLAN = DemoPlan(
    seed=11, minutes=6.0, rate=60.0, collapse=Collapse(bank="TCB", start_minute=2.0, minutes=2.0)
)


@pytest.fixture(scope="module")
def records() -> list[tuple[bytes, int, dict]]:
    return list(traffic(PLAN))


def test_plan_times() -> None:
    assert PLAN.collapse_start_ms == PLAN.start_ms + 120_000
    assert PLAN.collapse_end_ms == PLAN.start_ms + 240_000
    assert PLAN.end_ms == PLAN.start_ms + 360_000


def test_same_seed_same_sequence(records: list[tuple[bytes, int, dict]]) -> None:
    assert list(traffic(PLAN)) == records


def test_different_seed_different_sequence(records: list[tuple[bytes, int, dict]]) -> None:
    other = list(traffic(DemoPlan(seed=12, minutes=6.0, rate=60.0, collapse=PLAN.collapse)))
    assert other != records
    # not merely relabelled: the event times and outcomes differ too
    assert [ts for _, ts, _ in other[:100]] != [ts for _, ts, _ in records[:100]]
    assert Counter(v["partner_bank"] for _, _, v in other[:500]) != Counter(
        v["partner_bank"] for _, _, v in records[:500]
    )


def test_event_times_non_decreasing_and_in_range(records: list[tuple[bytes, int, dict]]) -> None:
    times = [ts for _, ts, _ in records]
    assert all(a <= b for a, b in itertools.pairwise(times))
    assert times[0] == PLAN.start_ms
    assert PLAN.end_ms - 1_000 < times[-1] < PLAN.end_ms
    # about rate x duration records
    assert 0.9 * 60 * 360 < len(records) < 1.1 * 60 * 360
    for _, ts, value in records:
        assert value["event_time"] == ts


def test_keys_ids_and_dimensions(records: list[tuple[bytes, int, dict]]) -> None:
    ids = [v["event_id"] for _, _, v in records]
    assert len(set(ids)) == len(ids)
    for key, _, v in records:
        assert key == f"{SERVICE}|{v['partner_bank']}|{v['region']}|{v['channel']}".encode()
        assert v["service"] == SERVICE
        assert v["partner_bank"] in BANKS
        assert v["region"] in REGIONS
        assert v["channel"] in CHANNELS
        assert ("error_code" in v) == (v["status"] == "failed")
    seen = Counter((v["partner_bank"], v["region"], v["channel"]) for _, _, v in records)
    assert len(seen) == len(BANKS) * len(REGIONS) * len(CHANNELS)


def success_rate(values: list[dict]) -> float:
    return sum(v["status"] == "success" for v in values) / len(values)


def test_collapse_only_hits_its_bank_during_its_window(
    records: list[tuple[bytes, int, dict]],
) -> None:
    inside = [v for _, ts, v in records if PLAN.collapse_start_ms <= ts < PLAN.collapse_end_ms]
    outside = [v for _, ts, v in records if not PLAN.collapse_start_ms <= ts < PLAN.collapse_end_ms]
    bank = PLAN.collapse.bank
    hit = [v for v in inside if v["partner_bank"] == bank]
    assert len(hit) > 1000
    assert success_rate(hit) == pytest.approx(0.15, abs=0.03)
    for other in BANKS:
        if other != bank:
            assert success_rate([v for v in inside if v["partner_bank"] == other]) > 0.97
        assert success_rate([v for v in outside if v["partner_bank"] == other]) > 0.97
    # the failures at the collapsing bank during the outage are bank timeouts
    codes = Counter(v["error_code"] for v in hit if v["status"] == "failed")
    assert set(codes) == {"BANK_TIMEOUT"}
    # per minute: only minutes 2 and 3 collapse
    for minute in range(6):
        lo = PLAN.start_ms + minute * 60_000
        in_minute = [
            v for _, ts, v in records if lo <= ts < lo + 60_000 and v["partner_bank"] == bank
        ]
        rate = success_rate(in_minute)
        assert (rate < 0.3) == (2 <= minute < 4), (minute, rate)


def test_every_value_is_a_valid_transaction(records: list[tuple[bytes, int, dict]]) -> None:
    for _, ts, value in records:
        raw = json.dumps(value, separators=(",", ":")).encode()
        decoded = decode("transactions", raw, max_bytes=1_000_000)
        assert decoded == value
        assert decoded["event_time"] == ts and type(decoded["event_time"]) is int


def test_no_collapse_when_it_is_outside_the_plan() -> None:
    plan = DemoPlan(seed=3, minutes=2.0, rate=60.0, collapse=Collapse(bank="ACB", start_minute=5.0))
    values = [v for _, _, v in traffic(plan)]
    assert success_rate([v for v in values if v["partner_bank"] == "ACB"]) > 0.97
