"""The Faust records mirror the schemas, and to_wire() produces what the schemas accept."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import fastjsonschema
import faust
import jsonschema
import pytest
from faust.serializers import codecs

from streams.records import (
    RECORDS,
    Balance,
    Complaint,
    DeadLetter,
    Feedback,
    IncidentData,
    IncidentEvent,
    IncidentPayload,
    Login,
    Maintenance,
    Otp,
    Request,
    Transaction,
    to_wire,
)
from streams.schemas import SCHEMA_NAMES, load_schema, validator
from streams.validation import decode

T = 1714564800000
WHEN = datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=UTC)


def payload(**extra: Any) -> IncidentPayload:
    return IncidentPayload(
        summary="wallet: transaction failures at partner bank ACB (42% vs 2% expected)",
        severity="critical",
        source="wallet",
        timestamp=WHEN,
        **extra,
    )


def incident(data: IncidentData, **extra: Any) -> IncidentEvent:
    return IncidentEvent(
        id="evt-6f1c2a4e",
        source="/outage-radar",
        type="dev.outage-radar.incident.triggered",
        time=WHEN,
        subject="wallet/partner_bank=ACB",
        data=data,
        **extra,
    )


FULL: dict[str, faust.Record] = {
    "transactions": Transaction(
        event_id="tx-1",
        event_time=T,
        service="wallet",
        type="transfer_out",
        status="completed_late",
        region="VN-HCM",
        channel="app",
        partner_bank="ACB",
        error_code="BANK_TIMEOUT",
        latency_ms=95000.5,
        amount=250000.0,
        currency="VND",
        account_id="acc-1",
    ),
    "logins": Login(
        event_id="l-1",
        event_time=T,
        service="wallet",
        outcome="forced_logout",
        region="VN-HN",
        reason="session_invalidated",
        channel="app",
        account_id="acc-1",
        app_version="5.12.1",
    ),
    "otp": Otp(
        event_id="o-1",
        event_time=T,
        service="wallet",
        stage="expired",
        otp_id="otp-1",
        operator="viettel",
        provider="twilio",
        region="VN-HCM",
        latency_ms=300000,
        purpose="payment",
        account_id="acc-1",
    ),
    "balances": Balance(
        event_id="b-1",
        event_time=T,
        service="wallet",
        kind="change",
        account_id="acc-1",
        balance=-50.5,
        previous_balance=100.0,
        transaction_id="tx-1",
        initiated_by="system",
        partner_bank="ACB",
        region="VN-HCM",
    ),
    "complaints": Complaint(
        event_id="c-1",
        event_time=T,
        service="wallet",
        channel="social_media",
        category="balance",
        region="VN-HCM",
        text="Số dư của tôi bị trừ hai lần!",
        sentiment=-0.9,
    ),
    "requests": Request(
        event_id="r-1",
        event_time=T,
        service="wallet",
        section="wallet.cards",
        requests=1200,
        errors=37,
        latency_ms_p50=85.0,
        latency_ms_p99=2300.0,
        interval_ms=10000,
        downstream="card-vault",
        downstream_errors=30,
    ),
    "maintenance": Maintenance(
        event_id="m-1",
        event_time=T,
        service="wallet",
        start_time=T,
        end_time=T + 3_600_000,
        segments={"partner_bank": "ACB"},
        announced_at=T - 86_400_000,
        description="ACB core banking upgrade",
        status="extended",
    ),
    "feedback": Feedback(
        event_id="f-1",
        event_time=T,
        dedup_key="wallet/partner_bank=ACB/transactions.failure_rate",
        verdict="new_normal",
        service="wallet",
        author="oncall@example.com",
        comment="traffic moved to the new bank permanently",
    ),
    "incident": incident(
        IncidentData(
            event_action="trigger",
            dedup_key="wallet/partner_bank=ACB",
            payload=payload(
                component="partner_bank=ACB",
                group="wallet",
                class_="partner_bank_outage",
                custom_details={
                    "signal": "transactions.failure_rate",
                    "segment": {"service": "wallet", "partner_bank": "ACB"},
                    "observed": 0.42,
                    "expected": 0.02,
                    "lower_bound": 0.0,
                    "upper_bound": 0.05,
                    "score": 11.5,
                    "volume": 1830,
                    "window_start": "2024-05-01T11:59:50.000Z",
                    "window_end": "2024-05-01T12:00:00.000Z",
                    "opened_at": "2024-05-01T12:00:00.000Z",
                    "status": "open",
                },
            ),
        ),
        dataschema="urn:outage-radar:schema:incident:v1",
    ),
    "deadletter": DeadLetter(
        reason="transactions record: field 'status' must be one of [...], got 'ok'",
        error_kind="schema",
        source_topic="transactions",
        partition=3,
        offset=12345,
        timestamp_ms=T,
        key_b64="d2FsbGV0",
        value_b64="eyJzdGF0dXMiOiAib2sifQ==",
        detected_at=WHEN,
        worker="worker-1:4242",
    ),
}

MINIMAL: dict[str, faust.Record] = {
    "transactions": Transaction(
        event_id="tx-2",
        event_time=T,
        service="wallet",
        type="payment",
        status="success",
        region="VN-HCM",
        channel="ussd",
    ),
    "logins": Login(event_id="l-2", event_time=T, service="wallet", outcome="success", region="x"),
    "otp": Otp(
        event_id="o-2",
        event_time=T,
        service="wallet",
        stage="requested",
        otp_id="otp-2",
        operator="mobifone",
        provider="vonage",
    ),
    "balances": Balance(
        event_id="b-2", event_time=T, service="wallet", kind="read", account_id="a"
    ),
    "complaints": Complaint(
        event_id="c-2", event_time=T, service="wallet", channel="email", category="other"
    ),
    "requests": Request(
        event_id="r-2", event_time=T, service="wallet", section="home", requests=1, errors=0
    ),
    "maintenance": Maintenance(
        event_id="m-2", event_time=T, service="wallet", start_time=T, end_time=T
    ),
    "feedback": Feedback(event_id="f-2", event_time=T, dedup_key="k", verdict="confirmed"),
    "incident": incident(
        IncidentData(event_action="resolve", dedup_key="wallet/partner_bank=ACB", payload=payload())
    ),
    "deadletter": DeadLetter(
        reason="transactions record: the value is empty (0 bytes); a JSON object was expected",
        error_kind="empty",
        source_topic="transactions",
        partition=0,
        offset=0,
        timestamp_ms=None,
        key_b64=None,
        value_b64="",
        detected_at=WHEN,
        worker="w",
    ),
}

#: Every record class with the part of its schema it mirrors.
MIRRORS: list[tuple[type[faust.Record], str, tuple[str, ...]]] = [
    *((cls, name, ()) for name, cls in RECORDS.items()),
    (IncidentData, "incident", ("data",)),
    (IncidentPayload, "incident", ("data", "payload")),
]


def sub_schema(name: str, path: tuple[str, ...]) -> dict[str, Any]:
    schema = load_schema(name)
    for key in path:
        schema = schema["properties"][key]
    return schema


def reference(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(
        load_schema(name), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def test_there_is_a_record_class_for_every_schema() -> None:
    assert set(RECORDS) == set(SCHEMA_NAMES)
    assert set(FULL) == set(MINIMAL) == set(SCHEMA_NAMES)


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_namespace_is_explicit_and_versioned(name: str) -> None:
    options = RECORDS[name]._options
    assert options.namespace == f"outage_radar.{name}.v1"
    assert options.include_metadata is False


@pytest.mark.parametrize(
    ("cls", "name", "path"), MIRRORS, ids=[cls.__name__ for cls, _, _ in MIRRORS]
)
def test_record_fields_mirror_the_schema(
    cls: type[faust.Record], name: str, path: tuple[str, ...]
) -> None:
    schema = sub_schema(name, path)
    options = cls._options
    wire = {d.output_name: field for field, d in options.descriptors.items()}
    assert set(wire) == set(schema["properties"])
    props = schema["properties"]
    without_default = {w for w, field in wire.items() if field not in options.defaults}
    consts = {w for w in wire if "const" in props[w]}
    nulls = {options.descriptors[field].output_name for field in cls._wire_nulls}
    assert without_default | consts | nulls == set(schema["required"])
    for w, field in wire.items():
        if w in consts:  # a constant may default to itself (CloudEvents specversion, ...)
            assert options.defaults[field] == props[w]["const"]
        elif w in nulls:  # required, but null is a value: Faust defaults it to None
            assert "null" in props[w]["type"]
        elif w not in schema["required"]:
            assert options.defaults[field] is None, f"{cls.__name__}.{field} must default to None"


@pytest.mark.parametrize("name", SCHEMA_NAMES)
@pytest.mark.parametrize("example", [FULL, MINIMAL], ids=["full", "minimal"])
def test_to_wire_validates_against_the_schema(name: str, example: dict[str, Any]) -> None:
    wire = to_wire(example[name])
    reference(name).validate(wire)
    assert validator(name)(wire) == wire
    json.dumps(wire, allow_nan=False)  # plain JSON


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_full_examples_fill_every_field_and_minimal_ones_only_the_required(name: str) -> None:
    schema = load_schema(name)
    assert set(to_wire(FULL[name])) == set(schema["properties"])
    assert set(to_wire(MINIMAL[name])) == set(schema["required"])


@pytest.mark.parametrize("name", SCHEMA_NAMES)
@pytest.mark.parametrize("example", [FULL, MINIMAL], ids=["full", "minimal"])
def test_round_trip_through_decode_and_from_data(name: str, example: dict[str, Any]) -> None:
    wire = to_wire(example[name])
    decoded = decode(name, json.dumps(wire).encode("utf-8"), max_bytes=1 << 20)
    record = RECORDS[name].from_data(decoded)
    assert type(record) is RECORDS[name]
    assert to_wire(record) == wire


def test_nested_incident_records_and_datetimes_are_rebuilt() -> None:
    wire = to_wire(FULL["incident"])
    event = IncidentEvent.from_data(
        decode("incident", json.dumps(wire).encode(), max_bytes=1 << 20)
    )
    assert isinstance(event.data, IncidentData)
    assert isinstance(event.data.payload, IncidentPayload)
    assert event.data.payload.class_ == "partner_bank_outage"
    assert event.time == WHEN
    assert event.data.payload.timestamp == WHEN


def test_to_wire_uses_wire_names_and_rfc3339_utc() -> None:
    wire = to_wire(FULL["incident"])
    body = wire["data"]["payload"]
    assert body["class"] == "partner_bank_outage"
    assert "class_" not in body
    assert wire["time"] == "2024-05-01T12:00:00.250000Z"
    assert wire["specversion"] == "1.0"
    assert wire["datacontenttype"] == "application/json"
    plus7 = datetime(2024, 5, 1, 19, 0, tzinfo=timezone(timedelta(hours=7)))
    assert to_wire(payload().derive(timestamp=plus7))["timestamp"] == "2024-05-01T12:00:00Z"


def test_to_wire_omits_none_optionals_but_keeps_required_nulls() -> None:
    wire = to_wire(MINIMAL["deadletter"])
    assert wire["key_b64"] is None
    assert wire["timestamp_ms"] is None
    tx = to_wire(Transaction.from_data({**to_wire(MINIMAL["transactions"]), "partner_bank": None}))
    assert "partner_bank" not in tx


def test_to_wire_leaves_out_fields_producers_added() -> None:
    record = Transaction.from_data({**to_wire(MINIMAL["transactions"]), "merchant": "m-1"})
    assert "merchant" not in to_wire(record)


def test_faust_serialises_records_exactly_like_to_wire() -> None:
    for name in SCHEMA_NAMES:
        for example in (FULL, MINIMAL):
            record = example[name]
            wire = to_wire(record)
            assert json.loads(record.dumps(serializer="json")) == wire
            assert json.loads(codecs.dumps("json", record)) == wire
            assert json.loads(codecs.dumps("json", {"nested": record})) == {"nested": wire}
            assert RECORDS[name].loads(record.dumps(serializer="json"), serializer="json") == record


def test_derive_works_with_renamed_fields() -> None:
    derived = payload(class_="bank").derive(severity="warning")
    assert derived.class_ == "bank"
    assert derived.severity == "warning"


def test_to_wire_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="naive"):
        to_wire(payload().derive(timestamp=datetime(2024, 5, 1, 12, 0)))


@pytest.mark.parametrize(
    ("name", "record"),
    [
        (
            "transactions",
            Transaction.from_data({**to_wire(MINIMAL["transactions"]), "status": "ok"}),
        ),
        ("feedback", Feedback(event_id="f", event_time=T, dedup_key="", verdict="confirmed")),
        ("incident", MINIMAL["incident"].derive(specversion="0.3")),
        (
            "deadletter",
            DeadLetter(
                **{**MINIMAL["deadletter"].asdict(), "error_kind": "oops"},
            ),
        ),
    ],
)
def test_invalid_records_fail_both_validators(name: str, record: faust.Record) -> None:
    wire = to_wire(record)
    assert not reference(name).is_valid(wire)
    with pytest.raises(fastjsonschema.JsonSchemaValueException):
        validator(name)(wire)
