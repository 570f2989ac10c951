"""Incident events (CloudEvents + PagerDuty body) from real engine and manager output."""

from __future__ import annotations

import re
from datetime import datetime

import jsonschema
import pytest

from detectors.engine import DetectionEngine
from detectors.incidents import IncidentManager, IncidentUpdate
from streams.incident_events import EVENT_TYPES, event_id, incident_event, iso_ms
from streams.schemas import load_schema, validator
from tests.detectors.test_engine import T0, W, scenario

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$")


@pytest.fixture(scope="module")
def updates() -> list[IncidentUpdate]:
    """A real incident: partner bank ACB collapses for 60 windows."""

    def bad(bank: str, region: str) -> float:
        return 0.1 if bank == "ACB" else 0.985

    engine, manager = DetectionEngine(W), IncidentManager()
    out = []
    for w in scenario(bad, volume=20, seed=11):
        out += manager.process(w.start_ms + W, engine.process(w))
    assert out[0].action == "open" and out[-1].action == "resolve"
    return out


def test_every_event_validates_with_both_validators(updates: list[IncidentUpdate]) -> None:
    schema = load_schema("incident")
    fast = validator("incident")
    for u in updates:
        event = incident_event(u, "/radar/eu")
        jsonschema.validate(event, schema)
        fast(event)
        assert RFC3339_UTC.match(event["time"]), event["time"]


def test_open_event_contents(updates: list[IncidentUpdate]) -> None:
    opened = updates[0]
    event = incident_event(opened, "/radar/eu")
    assert event["specversion"] == "1.0" and event["source"] == "/radar/eu"
    assert event["type"] == EVENT_TYPES["open"] == "dev.outage-radar.incident.triggered"
    assert event["subject"] == "wallet/partner_bank=ACB"
    assert datetime.fromisoformat(event["time"]).timestamp() * 1000 == opened.at_ms
    data = event["data"]
    assert data["event_action"] == "trigger"
    payload = data["payload"]
    assert payload["severity"] == "critical"  # a collapse from ~98.5 % to ~10 %
    assert payload["class"] == "partner_bank_failure"
    assert "partner bank ACB" in payload["summary"]
    details = payload["custom_details"]
    assert details["segment"] == {"service": "wallet", "partner_bank": "ACB"}
    assert details["observed"] < 0.5 < details["expected"]
    assert details["window_end"] == iso_ms(opened.incident.primary.window_end_ms)
    assert details["signals"] == ["transactions.success_rate"]


def test_ids_are_deterministic_and_differ_per_update(updates: list[IncidentUpdate]) -> None:
    ids = [incident_event(u, "/s")["id"] for u in updates]
    assert ids == [incident_event(u, "/s")["id"] for u in updates]  # same input, same id
    assert len(set(ids)) == len(ids)
    assert ids[0] == event_id(updates[0])
    keys = {incident_event(u, "/s")["data"]["dedup_key"] for u in updates}
    assert len(keys) == 1


def test_resolve_event(updates: list[IncidentUpdate]) -> None:
    event = incident_event(updates[-1], "/s")
    assert event["type"] == EVENT_TYPES["resolve"]
    assert event["data"]["event_action"] == "resolve"
    assert event["data"]["payload"]["severity"] == "info"
    assert event["data"]["payload"]["custom_details"]["status"] == "resolved"


def test_iso_ms() -> None:
    assert iso_ms(T0) == "2025-10-19T08:00:00.000Z"
    assert datetime.fromisoformat(iso_ms(T0 + 1)).timestamp() * 1000 == T0 + 1


def test_numpy_free_details(updates: list[IncidentUpdate]) -> None:
    # Every detail must be plain JSON (no numpy scalars that a JSON encoder rejects).
    import json

    for u in updates:
        json.dumps(incident_event(u, "/s"))


def test_a_verdict_and_its_notes_reach_the_wire() -> None:
    from detectors.feedback import DEDUP_PREFIX
    from tests.detectors.test_feedback import Run, tcb_bad

    run = Run(tcb_bad([(60, 90)])).until(62)
    key = run.updates[0].incident.key
    run.queue.add({"event_id": "f", "event_time": T0 + 62 * W, "dedup_key": DEDUP_PREFIX + key,
                   "verdict": "expected"})  # fmt: skip
    run.until(63)
    assert run.updates[-1].action == "update"
    body = incident_event(run.updates[-1], source="test")
    assert body["data"]["payload"]["custom_details"]["verdict"] == "expected"
    assert body["data"]["payload"]["severity"] == "info"
    assert "(operator: expected)" in body["data"]["payload"]["summary"]
    validator("incident")(body)


def test_an_update_is_published_as_it_was_decided_not_as_the_incident_is_now() -> None:
    # The worker publishes every update one windows message completes after deciding them
    # all: an opening inside maintenance, rendered after the overrun of a later window was
    # decided, must still say "inside declared maintenance" (it once said "overran").
    def bad(bank: str, region: str) -> float:
        return 0.1 if bank == "ACB" else 0.985

    engine, manager = DetectionEngine(W), IncidentManager()
    manager.declare_maintenance(
        {"event_id": "m1", "event_time": T0, "service": "wallet",
         "start_time": T0 + 50 * W, "end_time": T0 + 90 * W, "status": "scheduled"}
    )  # fmt: skip
    out: list[IncidentUpdate] = []
    for w in scenario(bad, volume=20, seed=11):
        out += manager.process(w.start_ms + W, engine.process(w))
    opened = out[0]
    overrun = next(u for u in out if u.incident.overran and u.action == "update")
    assert opened.action == "open" and opened.incident is overrun.incident  # the same incident
    first, later = incident_event(opened, "/r"), incident_event(overrun, "/r")  # after the run
    assert "(inside declared maintenance)" in first["data"]["payload"]["summary"]
    assert first["data"]["payload"]["custom_details"]["maintenance"]["overran"] is False
    assert "declared maintenance overran its end" in later["data"]["payload"]["summary"]
    assert later["data"]["payload"]["custom_details"]["maintenance"]["overran"] is True
    assert first["data"]["payload"]["custom_details"]["status"] == "open"
