"""Tests for streams.incident_events: CloudEvents envelope + PagerDuty body of incidents."""

from __future__ import annotations

import dataclasses
import random
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import jsonschema
import numpy as np
import pytest

from detectors.monitor import TXN_INDEX, IncidentChange, Segment, TransactionMonitor, cell_key
from detectors.windows import AssembledWindow
from streams.incident_events import EVENT_TYPES, PD_ACTIONS, event_id, incident_event, iso_ms
from streams.schemas import load_schema, validator

WINDOW_MS = 60_000
T0 = 1_760_860_800_000
SOURCE = "/outage-radar"
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$")


def window(rng: np.random.Generator, i: int, bad: bool) -> AssembledWindow:
    cells = {}
    for bank in ("ACB", "VCB", "TCB"):
        for region in ("north", "south"):
            n = int(rng.poisson(80))
            ok = int(rng.binomial(n, 0.1 if bad and bank == "ACB" else 0.985))
            counts = [0, 0, 0, 0]
            counts[TXN_INDEX["success"]] = ok
            counts[TXN_INDEX["failed"]] = n - ok
            cells[cell_key("wallet", bank, region, "app")] = counts
    return AssembledWindow(T0 + i * WINDOW_MS, {"wallet": cells})


@pytest.fixture(scope="module")
def changes() -> list[IncidentChange]:
    """A real open and resolve from the monitor: an ACB collapse in windows 30..34."""
    rng = np.random.default_rng(3)
    m = TransactionMonitor(WINDOW_MS)
    out: list[IncidentChange] = []
    for i in range(45):
        out.extend(m.process(window(rng, i, bad=30 <= i < 35)))
    assert [c.action for c in out] == ["open", "resolve"]
    return out


@pytest.fixture(scope="module")
def reference() -> jsonschema.Draft202012Validator:
    schema = load_schema("incident")
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def assert_valid(event: dict[str, Any], reference: jsonschema.Draft202012Validator) -> None:
    errors = [e.message for e in reference.iter_errors(event)]
    assert errors == []
    assert validator("incident")(event) == event
    # formats, checked here too (jsonschema checks date-time only with optional packages)
    for stamp in (event["time"], event["data"]["payload"]["timestamp"]):
        assert RFC3339_UTC.match(stamp), stamp
        datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def variants(base: IncidentChange) -> list[IncidentChange]:
    """The change at every kind of segment, severity and with an empty window."""
    out = []
    for seg in (
        Segment("wallet"),
        Segment("wallet", "partner_bank", "ACB"),
        Segment("wallet", "region", "north"),
        Segment("wallet", "channel", "ussd"),
    ):
        for severity in ("critical", "error", "warning", "info"):
            out.append(dataclasses.replace(base, segment=seg, severity=severity))
    no_trials = dataclasses.replace(
        base.evidence, observed_rate=None, trials=0, successes=0, drop=0.0, excess_failures=0.0
    )
    out.append(dataclasses.replace(base, evidence=no_trials))
    out.append(dataclasses.replace(base, summary="x" * 5000))
    out.append(dataclasses.replace(base, action="update"))
    return out


def test_real_open_and_resolve_validate(
    changes: list[IncidentChange], reference: jsonschema.Draft202012Validator
) -> None:
    for change in changes:
        assert_valid(incident_event(change, SOURCE), reference)


def test_variants_validate(
    changes: list[IncidentChange], reference: jsonschema.Draft202012Validator
) -> None:
    for base in changes:
        for change in variants(base):
            event = incident_event(change, SOURCE)
            assert_valid(event, reference)
    long = incident_event(dataclasses.replace(changes[0], summary="x" * 5000), SOURCE)
    assert len(long["data"]["payload"]["summary"]) == 1024


def test_reference_validator_rejects_a_broken_event(
    changes: list[IncidentChange], reference: jsonschema.Draft202012Validator
) -> None:
    """Sanity check that the validation above can fail."""
    event = incident_event(changes[0], SOURCE)
    event["data"]["payload"]["severity"] = "fatal"
    assert list(reference.iter_errors(event))
    event = incident_event(changes[0], SOURCE)
    event["data"]["routing_key"] = "secret"
    assert list(reference.iter_errors(event))


def test_open_event_contents(changes: list[IncidentChange]) -> None:
    opened = changes[0]
    event = incident_event(opened, "/radar/eu")
    assert event["specversion"] == "1.0"
    assert event["source"] == "/radar/eu"
    assert event["type"] == EVENT_TYPES["open"] == "dev.outage-radar.incident.triggered"
    assert event["subject"] == "wallet/partner_bank=ACB"
    assert datetime.fromisoformat(event["time"]).timestamp() * 1000 == opened.window_end_ms
    data = event["data"]
    assert data["event_action"] == "trigger"
    assert data["dedup_key"] == opened.dedup_key
    payload = data["payload"]
    assert payload["severity"] == "critical"
    assert payload["source"] == "wallet/partner_bank=ACB"
    assert payload["component"] == "wallet"
    assert payload["group"] == "partner_bank"
    assert payload["class"] == "partner_bank_failure"
    assert payload["timestamp"] == event["time"]
    details = payload["custom_details"]
    assert details["status"] == "open"
    assert details["segment"] == {"service": "wallet", "partner_bank": "ACB"}
    assert details["volume"] == opened.evidence.trials
    assert details["failed"] == opened.evidence.trials - opened.evidence.successes
    assert details["observed"] == opened.evidence.observed_rate
    assert details["window_start"] == iso_ms(opened.window_start_ms)
    assert details["window_end"] == iso_ms(opened.window_end_ms)
    assert details["opened_at"] == iso_ms(opened.opened_at_ms)


def test_resolve_event_contents(changes: list[IncidentChange]) -> None:
    opened, resolved = changes
    event = incident_event(resolved, SOURCE)
    assert event["type"] == "dev.outage-radar.incident.resolved"
    assert event["data"]["event_action"] == "resolve"
    assert event["data"]["payload"]["severity"] == "info"
    assert event["data"]["payload"]["custom_details"]["status"] == "resolved"
    assert event["data"]["dedup_key"] == incident_event(opened, SOURCE)["data"]["dedup_key"]
    assert event["data"]["payload"]["custom_details"]["opened_at"] == iso_ms(opened.opened_at_ms)


def test_service_segment_group_is_service(changes: list[IncidentChange]) -> None:
    change = dataclasses.replace(changes[0], segment=Segment("wallet"))
    payload = incident_event(change, SOURCE)["data"]["payload"]
    assert payload["group"] == "service"
    assert payload["custom_details"]["segment"] == {"service": "wallet"}


def test_event_actions() -> None:
    assert PD_ACTIONS == {"open": "trigger", "update": "trigger", "resolve": "resolve"}


def test_ids_are_deterministic_and_distinct(changes: list[IncidentChange]) -> None:
    opened, resolved = changes
    first = incident_event(opened, SOURCE)
    again = incident_event(dataclasses.replace(opened), SOURCE)  # an equal, distinct object
    assert first["id"] == again["id"] == event_id(opened)
    assert first == again
    assert uuid.UUID(first["id"]).version == 5
    resolve_id = incident_event(resolved, SOURCE)["id"]
    assert resolve_id != first["id"]
    # same window, other action: still a different event
    assert event_id(dataclasses.replace(opened, action="resolve")) != first["id"]
    # another incident (other dedup key) in the same window: different id
    assert event_id(dataclasses.replace(opened, dedup_key="other")) != first["id"]
    # the id does not depend on the source (a redelivery from another worker is the same event)
    assert incident_event(opened, "/elsewhere")["id"] == first["id"]


def test_iso_ms_round_trips() -> None:
    rng = random.Random(5)
    for ms in [0, 946_684_800_000, 4_102_444_799_999] + [
        rng.randrange(946_684_800_000, 4_102_444_800_000) for _ in range(2000)
    ]:
        text = iso_ms(ms)
        assert RFC3339_UTC.match(text)
        back = datetime.fromisoformat(text.replace("Z", "+00:00"))
        assert back.tzinfo is not None and back.utcoffset() == UTC.utcoffset(None)
        assert round(back.timestamp() * 1000) == ms
