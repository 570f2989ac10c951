"""decode(): raw Kafka value bytes -> validated dict, or InvalidRecord with the right kind."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import jsonschema
import pytest

from streams.errors import InvalidRecord
from streams.schemas import load_schema
from streams.validation import ERROR_KINDS, decode

MAX = 64 * 1024

TRANSACTION: dict[str, Any] = {
    "event_id": "tx-0001",
    "event_time": 1714564800000,
    "service": "wallet",
    "type": "payment",
    "status": "failed",
    "region": "VN-HCM",
    "channel": "app",
    "partner_bank": "ACB",
    "error_code": "BANK_TIMEOUT",
    "latency_ms": 1234.5,
    "amount": 150000,
    "currency": "VND",
    "account_id": "acc-42",
}
GOOD: dict[str, dict[str, Any]] = {
    "transactions": TRANSACTION,
    "logins": {
        "event_id": "l-1",
        "event_time": 1714564800000,
        "service": "wallet",
        "outcome": "failure",
        "region": "VN-HN",
        "reason": "server_error",
    },
    "otp": {
        "event_id": "o-1",
        "event_time": 1714564800000,
        "service": "wallet",
        "stage": "delivered",
        "otp_id": "otp-9",
        "operator": "viettel",
        "provider": "twilio",
        "latency_ms": 4200,
    },
    "requests": {
        "event_id": "r-1",
        "event_time": 1714564800000,
        "service": "wallet",
        "section": "wallet.cards",
        "requests": 1200,
        "errors": 3,
        "interval_ms": 10000,
        "downstream": None,
    },
    "feedback": {
        "event_id": "f-1",
        "event_time": 1714564800000,
        "dedup_key": "wallet/partner_bank=ACB/transactions.failure_rate",
        "verdict": "false_alarm",
    },
}


def encode(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


def tx(**changes: Any) -> bytes:
    """TRANSACTION with fields changed; a value of ``...`` deletes the field."""
    record = dict(TRANSACTION)
    for key, value in changes.items():
        if value is ...:
            del record[key]
        else:
            record[key] = value
    return encode(record)


def rejected(raw: bytes | None, kind: str = "transactions", max_bytes: int = MAX) -> InvalidRecord:
    with pytest.raises(InvalidRecord) as info:
        decode(kind, raw, max_bytes=max_bytes)
    error = info.value
    assert error.kind in ERROR_KINDS
    assert error.reason.startswith(f"{kind} record: "), error.reason
    assert str(error) == error.reason
    return error


# --- accepted --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(GOOD))
def test_accepts_good_records(kind: str) -> None:
    assert decode(kind, encode(GOOD[kind]), max_bytes=MAX) == GOOD[kind]


def test_keeps_fields_producers_added() -> None:
    record = {**TRANSACTION, "merchant": {"id": "m1", "mcc": 5411}, "trace": [1, 2]}
    assert decode("transactions", encode(record), max_bytes=MAX) == record


def test_integral_floats_in_integer_fields_come_back_as_int() -> None:
    decoded = decode("transactions", tx(event_time=1714564800000.0), max_bytes=MAX)
    assert decoded["event_time"] == 1714564800000
    assert type(decoded["event_time"]) is int
    sample = decode("requests", encode({**GOOD["requests"], "errors": 3.0}), max_bytes=MAX)
    assert type(sample["errors"]) is int


def test_accepts_non_ascii_text() -> None:
    raw = tx(region="São Paulo", error_code="lỗi")
    assert decode("transactions", raw, max_bytes=MAX)["region"] == "São Paulo"


def test_record_exactly_at_the_limit_is_accepted() -> None:
    raw = tx()
    assert decode("transactions", raw, max_bytes=len(raw)) == TRANSACTION


def test_unknown_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown schema"):
        decode("transaction", tx(), max_bytes=MAX)


# --- rejected before parsing -----------------------------------------------------------------


@pytest.mark.parametrize("raw", [None, b""])
def test_empty(raw: bytes | None) -> None:
    assert rejected(raw).kind == "empty"


def test_too_large_names_size_limit_and_setting() -> None:
    raw = tx()
    error = rejected(raw, max_bytes=len(raw) - 1)
    assert error.kind == "too_large"
    assert str(len(raw)) in error.reason
    assert str(len(raw) - 1) in error.reason
    assert "RADAR_MAX_RECORD_BYTES" in error.reason


def test_invalid_utf8_gives_the_byte_and_its_offset() -> None:
    error = rejected(b'\xff\xfe{"a":1}')
    assert error.kind == "not_utf8"
    assert "0xff" in error.reason
    assert "offset 0" in error.reason


def test_latin1_text_is_not_utf8() -> None:
    raw = tx(region="São Paulo").decode("utf-8").encode("latin-1")
    error = rejected(raw)
    assert error.kind == "not_utf8"
    offset = raw.index(b"\xe3")  # the 'ã' of São, one byte in latin-1
    assert f"offset {offset}" in error.reason
    assert "0xe3" in error.reason


# --- rejected by the JSON parser -------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (b'{"event_id": "x",}', '"x",}'),
        (b'{"event_id": "x"', '"x"'),
        (b"{'event_id': 'x'}", "'event_id'"),
        (b"event_id=x", "event_id=x"),
        (b"   ", "   "),
        (b'{"amount": NaN}', "NaN"),
        (b'{"amount": -Infinity}', "Infinity"),
        (b'\xef\xbb\xbf{"event_id": "x"}', "byte order mark"),
        (b'{"event_id": "x"} {"event_id": "y"}', '{"event_id": "y"}'),
    ],
)
def test_not_json_quotes_the_offending_text(raw: bytes, shown: str) -> None:
    error = rejected(raw)
    assert error.kind == "not_json"
    assert shown in error.reason


def test_not_json_gives_line_and_column() -> None:
    error = rejected(b'{\n  "event_id": "x",\n  "event_time": 17145,,\n}')
    assert error.kind == "not_json"
    assert "line 3 column" in error.reason


def test_integer_with_too_many_digits_is_not_json() -> None:
    error = rejected(b'{"amount": ' + b"9" * 5000 + b"}")
    assert error.kind == "not_json"
    assert "digits" in error.reason


def test_deep_nesting_is_not_json_not_a_crash() -> None:
    error = rejected(b"[" * 50_000 + b"]" * 50_000, max_bytes=200_000)
    assert error.kind == "not_json"
    assert "nested too deeply" in error.reason


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (b'[{"event_id": "x"}]', '[{"event_id": "x"}]'),
        (b'"payment"', "'payment'"),
        (b"42", "42"),
        (b"null", "null"),
        (b"true", "true"),
    ],
)
def test_json_that_is_not_an_object(raw: bytes, shown: str) -> None:
    error = rejected(raw)
    assert error.kind == "not_object"
    assert shown in error.reason


# --- rejected by the schema ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # wrong types
        (
            tx(event_time="2024-05-01T12:00:00Z"),
            ["'event_time'", "integer", "'2024-05-01T12:00:00Z'"],
        ),
        (tx(event_time=1714564800000.5), ["'event_time'", "integer", "1714564800000.5"]),
        (tx(event_time=True), ["'event_time'", "integer", "true"]),
        (tx(amount="100"), ["'amount'", "number", "'100'"]),
        (tx(service=None), ["'service'", "string", "null"]),
        (tx(region=["VN"]), ["'region'", "string", '["VN"]']),
        (tx(partner_bank=7), ["'partner_bank'", "string or null", "7"]),
        # missing required fields
        (tx(status=...), ["missing required field 'status'"]),
        (tx(event_id=..., service=...), ["missing required fields", "'event_id'", "'service'"]),
        # unknown enum values
        (
            tx(status="ok"),
            [
                "field 'status' must be one of",
                "'success', 'failed', 'pending', 'completed_late'",
                "'ok'",
            ],
        ),
        (tx(type="Payment"), ["'type'", "'transfer_in'", "'Payment'"]),
        # numbers out of range
        (tx(amount=1e13), ["'amount'", "<= 1000000000000", "10000000000000.0"]),
        (tx(amount=-0.01), ["'amount'", ">= 0", "-0.01"]),
        (
            tx(amount=12345).replace(b"12345", b"1e400"),
            ["'amount'", "<= 1000000000000", "Infinity"],
        ),
        (tx(latency_ms=604800001), ["'latency_ms'", "604800001"]),
        (tx(event_time=4102444800001), ["'event_time'", "4102444800001"]),
        (tx(event_time=1714564800), ["'event_time'", ">= 946684800000", "1714564800"]),
        (tx(event_time=10**30), ["'event_time'", str(10**30)]),
        # strings out of range
        (tx(region="x" * 65), ["'region'", "at most 64", "65 characters", "'xxxxxxxx"]),
        (tx(event_id=""), ["'event_id'", "at least 1", "''"]),
        (tx(currency="usd"), ["'currency'", "pattern", "'usd'"]),
        (tx(currency="USD\n"), ["'currency'", "'USD\\n'"]),
    ],
)
def test_schema_violations_name_field_rule_and_value(raw: bytes, expected: list[str]) -> None:
    error = rejected(raw)
    assert error.kind == "schema"
    for text in expected:
        assert text in error.reason, f"{text!r} not in {error.reason!r}"


def test_huge_string_value_is_quoted_truncated() -> None:
    error = rejected(tx(account_id="a" * 1_000_000), max_bytes=2_000_000)
    assert error.kind == "schema"
    assert "1000000 characters" in error.reason
    assert "'aaaaaaaa" in error.reason
    assert len(error.reason) < 300


def test_nested_fields_are_named_with_their_path() -> None:
    record = {
        "event_id": "m-1",
        "event_time": 1714564800000,
        "service": "wallet",
        "start_time": 1714564800000,
        "end_time": 1714568400000,
        "segments": {"partner_bank": 12},
    }
    error = rejected(encode(record), kind="maintenance")
    assert "field 'segments.partner_bank' must be a string" in error.reason
    record["segments"] = {"k" * 65: "v"}
    assert "'kkkkk" in rejected(encode(record), kind="maintenance").reason


def test_closed_output_schema_names_unknown_fields() -> None:
    error = rejected(encode({"specversion": "1.0", "unexpected": 1}), kind="incident")
    assert error.kind == "schema"
    assert "missing required fields" in error.reason


# --- property: decode accepts exactly what the reference implementation accepts --------------

FIELDS = [*TRANSACTION, "extra_field"]
POOL: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1,
    0.5,
    1e12,
    1e12 + 1,
    946684800000,
    946684799999,
    4102444800000,
    4102444800001,
    1714564800000.0,
    604800000,
    604800001,
    "",
    "x",
    "x" * 3,
    "x" * 64,
    "x" * 65,
    "x" * 128,
    "x" * 129,
    "USD",
    "usd",
    "US",
    "USD\n",
    "success",
    "failed",
    "pending",
    "completed_late",
    "ok",
    "payment",
    "refund",
    "Refund",
    "tiền",
    [],
    ["success"],
    {},
    {"a": 1},
]


def mutate(rng: random.Random, record: dict[str, Any]) -> dict[str, Any]:
    record = copy.deepcopy(record)
    for _ in range(rng.choice([0, 1, 1, 1, 2, 3])):
        field = rng.choice(FIELDS)
        action = rng.random()
        if action < 0.2:
            record.pop(field, None)
        elif action < 0.8:
            record[field] = rng.choice(POOL)
        elif isinstance(record.get(field), str):
            record[field] = record[field] * rng.choice([2, 20, 200])
        else:
            record[field] = rng.choice([-1, 1, 1e3, 1e9, 1e15]) * rng.random()
    return record


def test_decode_agrees_with_jsonschema_on_300_mutated_transactions() -> None:
    reference = jsonschema.Draft202012Validator(load_schema("transactions"))
    rng = random.Random(20240501)
    verdicts = {True: 0, False: 0}
    for _ in range(300):
        record = mutate(rng, TRANSACTION)
        expected = reference.is_valid(record)
        try:
            decoded = decode("transactions", encode(record), max_bytes=MAX)
        except InvalidRecord as error:
            assert not expected, f"decode rejected a valid record {record}: {error.reason}"
            assert error.kind == "schema", error.reason
        else:
            assert expected, f"decode accepted an invalid record {record}"
            assert decoded == record
        verdicts[expected] += 1
    # both outcomes are well represented, so the agreement means something
    assert verdicts[True] >= 50 and verdicts[False] >= 50, verdicts
