"""Tests for streams.deadletter.dead_letter: the record kept for every unusable input."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import jsonschema
import pytest

from streams.deadletter import WORKER, dead_letter, send_dead_letter
from streams.schemas import load_schema, validator

NOT_UTF8 = b"\xff\xfe\x00{\x80\x81 \xc3\x28 bytes"


@pytest.fixture(scope="module")
def reference() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(
        load_schema("deadletter"), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def letter(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "error_kind": "schema",
        "reason": "transactions record: field 'status' must be one of [...], got 'ok'",
        "source_topic": "transactions",
        "partition": 3,
        "offset": 12345,
        "timestamp_ms": 1_760_860_800_000,
        "key": b"wallet|ACB|north|app",
        "value": b'{"status": "ok"}',
    }
    args.update(overrides)
    return dead_letter(**args)


def check(record: dict[str, Any], reference: jsonschema.Draft202012Validator) -> None:
    assert [e.message for e in reference.iter_errors(record)] == []
    assert validator("deadletter")(record) == record
    detected = datetime.fromisoformat(record["detected_at"].replace("Z", "+00:00"))
    assert record["detected_at"].endswith("Z")
    assert abs(datetime.now(UTC) - detected) < timedelta(minutes=1)


def b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def test_normal_record(reference: jsonschema.Draft202012Validator) -> None:
    record = letter()
    check(record, reference)
    assert record["error_kind"] == "schema"
    assert record["reason"].startswith("transactions record:")
    assert (record["source_topic"], record["partition"], record["offset"]) == (
        "transactions",
        3,
        12345,
    )
    assert record["timestamp_ms"] == 1_760_860_800_000
    assert b64(record["key_b64"]) == b"wallet|ACB|north|app"
    assert b64(record["value_b64"]) == b'{"status": "ok"}'
    assert record["worker"] == WORKER and record["worker"]


def test_no_key(reference: jsonschema.Draft202012Validator) -> None:
    record = letter(key=None)
    check(record, reference)
    assert record["key_b64"] is None


def test_empty_key_is_not_no_key(reference: jsonschema.Draft202012Validator) -> None:
    record = letter(key=b"")
    check(record, reference)
    assert record["key_b64"] == ""


@pytest.mark.parametrize("value", [b"", None])
def test_empty_or_null_value(
    value: bytes | None, reference: jsonschema.Draft202012Validator
) -> None:
    record = letter(error_kind="empty", value=value, timestamp_ms=None)
    check(record, reference)
    assert record["value_b64"] == ""
    assert record["timestamp_ms"] is None


def test_bytes_that_are_not_utf8_round_trip(reference: jsonschema.Draft202012Validator) -> None:
    with pytest.raises(UnicodeDecodeError):
        NOT_UTF8.decode("utf-8")
    record = letter(error_kind="not_utf8", key=NOT_UTF8[::-1], value=NOT_UTF8)
    check(record, reference)
    assert b64(record["value_b64"]) == NOT_UTF8
    assert b64(record["key_b64"]) == NOT_UTF8[::-1]


def test_every_byte_value_round_trips(reference: jsonschema.Draft202012Validator) -> None:
    raw = bytes(range(256)) * 3 + b"\x00"
    record = letter(error_kind="too_large", value=raw, key=raw[:7])
    check(record, reference)
    assert b64(record["value_b64"]) == raw
    # standard alphabet (not urlsafe), padded
    assert "+" in record["value_b64"] and "/" in record["value_b64"]
    assert not {"-", "_"} & set(record["value_b64"])
    assert len(record["value_b64"]) % 4 == 0


@pytest.mark.parametrize(
    "kind", ["too_large", "empty", "not_utf8", "not_json", "not_object", "schema", "late"]
)
def test_every_error_kind_validates(kind: str, reference: jsonschema.Draft202012Validator) -> None:
    check(letter(error_kind=kind), reference)


def test_schema_rejects_unknown_kind(reference: jsonschema.Draft202012Validator) -> None:
    """Sanity check that the validation above can fail."""
    assert list(reference.iter_errors(letter(error_kind="oops")))
    assert list(reference.iter_errors(letter(partition=-1)))


def test_send_dead_letter_keys_as_the_input() -> None:
    sent: list[dict[str, Any]] = []

    class Topic:
        async def send(self, *, key: bytes | None, value: dict[str, Any]) -> None:
            sent.append({"key": key, "value": value})

    message = SimpleNamespace(
        topic="transactions",
        partition=1,
        offset=42,
        timestamp=1_760_860_800.123,
        key=b"k",
        value=NOT_UTF8,
    )
    asyncio.run(send_dead_letter(Topic(), SimpleNamespace(message=message), "not_utf8", "bad"))
    [out] = sent
    assert out["key"] == b"k"
    record = out["value"]
    assert record["timestamp_ms"] == 1_760_860_800_123
    assert (record["partition"], record["offset"], record["error_kind"]) == (1, 42, "not_utf8")
    assert b64(record["value_b64"]) == NOT_UTF8
    assert validator("deadletter")(record) == record
