"""The detector watching itself: stale inputs and lag as "detector blind" incidents."""

from __future__ import annotations

import pytest

from detectors.health import InputWatch
from streams.incident_events import incident_event
from streams.schemas import validator

S = 1000  # ms


def actions(updates: list) -> list[tuple[str, str, str | None]]:  # type: ignore[type-arg]
    return [(u.action, u.anomalies[-1].signal.name, u.anomalies[-1].segment.value)
            for u in updates]  # fmt: skip


def test_a_topic_that_stops_is_blind_until_it_delivers_again() -> None:
    w = InputWatch(stale_ms=300 * S, max_lag=1000)
    seen = {"logins": 1_000 * S, "transactions": 1_000 * S}
    assert w.check(1_299 * S, seen, {}) == []
    seen["transactions"] = 1_290 * S  # transactions go on, logins stop
    opened = w.check(1_300 * S, seen, {})
    assert actions(opened) == [("open", "worker.input_stale", "logins")]
    assert w.check(1_400 * S, {**seen, "transactions": 1_390 * S}, {}) == []  # no second open
    resolved = w.check(1_401 * S, {"logins": 1_400 * S, "transactions": 1_400 * S}, {})
    assert actions(resolved) == [("resolve", "worker.input_stale", "logins")]
    assert resolved[0].incident is opened[0].incident
    body = incident_event(opened[0], source="/test")
    validator("incident")(body)
    assert body["data"]["payload"]["severity"] == "error"
    assert body["data"]["payload"]["class"] == "detector_blind"
    assert body["data"]["payload"]["summary"] == (
        "detector blind: input topic logins stopped delivering records: 300 seconds without "
        "records (bound 300)"
    )
    assert body["data"]["dedup_key"] == "outage-radar/worker/stale-logins/1000000"


def test_a_topic_never_seen_is_not_judged() -> None:
    w = InputWatch(stale_ms=300 * S, max_lag=1000)
    assert w.check(10_000 * S, {"requests": None}, {}) == []


def test_lag_opens_above_the_bound_and_resolves_below_half_of_it() -> None:
    w = InputWatch(stale_ms=300 * S, max_lag=1000)
    assert w.check(1 * S, {}, {"otp": 1000}) == []
    assert actions(w.check(2 * S, {}, {"otp": 1001})) == [("open", "worker.consumer_lag", "otp")]
    assert w.check(3 * S, {}, {"otp": 600}) == []  # still behind: no flapping
    assert actions(w.check(4 * S, {}, {"otp": 500})) == [("resolve", "worker.consumer_lag", "otp")]


def test_bad_bounds_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="stale_ms must be > 0, got 0"):
        InputWatch(stale_ms=0, max_lag=1)
    with pytest.raises(ValueError, match="max_lag must be > 0 records, got -1"):
        InputWatch(stale_ms=1, max_lag=-1)
