"""Faust records mirroring the wire contracts in ``schemas/`` (one class per schema).

Each class has an explicit, versioned namespace (``outage_radar.<schema>.v1``) and no Faust
metadata on the wire (``include_metadata=False``), so what goes on a topic is exactly the JSON the
schema describes. Schema-required fields have no default (except the two CloudEvents constants,
whose default is the constant); optional fields default to ``None``.

Records are built from validated dicts (:func:`streams.validation.decode`) with
``Transaction.from_data(d)``; fields a producer added are kept as attributes but are not part of
the record. Use :func:`to_wire` (not ``asdict()``) to produce the JSON object to send: it omits
optional fields that are ``None``, writes datetimes as RFC 3339 strings, and recurses into nested
records.

>>> to_wire(Feedback(event_id="f1", event_time=1700000000000, dedup_key="k", verdict="expected"))
{'event_id': 'f1', 'event_time': 1700000000000, 'dedup_key': 'k', 'verdict': 'expected'}
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

import faust
from faust.models.fields import StringField

__all__ = [
    "RECORDS",
    "Balance",
    "Complaint",
    "DeadLetter",
    "Feedback",
    "IncidentData",
    "IncidentEvent",
    "IncidentPayload",
    "Login",
    "Maintenance",
    "Otp",
    "Request",
    "Transaction",
    "WireRecord",
    "to_wire",
]

_NS = "outage_radar"


class WireRecord(faust.Record, abstract=True):
    """Base of every record here: Faust serialises it exactly as :func:`to_wire` does.

    So ``topic.send(value=record)`` and ``record.dumps()`` write the JSON the schema describes
    (wire names, no ``null`` for absent optional fields, RFC 3339 datetimes), and ``derive()``
    works with renamed fields such as ``IncidentPayload.class_``.
    """

    #: Fields that are schema-required but nullable: written as ``null`` when ``None`` (Faust
    #: gives every ``X | None`` field a default of ``None``, so a default cannot say this).
    _wire_nulls: ClassVar[frozenset[str]] = frozenset()

    def to_representation(self) -> dict[str, Any]:
        """The JSON object of this record: :func:`to_wire`."""
        return to_wire(self)

    def _derive(self, *objects: faust.Record, **fields: Any) -> faust.Record:
        data = _field_values(self)
        for obj in objects:
            data.update(_field_values(obj))
        return type(self)(**{**data, **fields})


class Transaction(
    WireRecord,
    namespace=f"{_NS}.transactions.v1",
    include_metadata=False,
    isodates=True,
):
    """One payment / transfer / top-up / withdrawal / refund / purchase outcome."""

    event_id: str
    event_time: int
    service: str
    type: str
    status: str
    region: str
    channel: str
    partner_bank: str | None = None
    error_code: str | None = None
    latency_ms: float | None = None
    amount: float | None = None
    currency: str | None = None
    account_id: str | None = None


class Login(WireRecord, namespace=f"{_NS}.logins.v1", include_metadata=False, isodates=True):
    """One login attempt or forced logout."""

    event_id: str
    event_time: int
    service: str
    outcome: str
    region: str
    reason: str | None = None
    channel: str | None = None
    account_id: str | None = None
    app_version: str | None = None


class Otp(WireRecord, namespace=f"{_NS}.otp.v1", include_metadata=False, isodates=True):
    """One stage of one OTP code; the stages of a code share ``otp_id``."""

    event_id: str
    event_time: int
    service: str
    stage: str
    otp_id: str
    operator: str
    provider: str
    region: str | None = None
    latency_ms: float | None = None
    purpose: str | None = None
    account_id: str | None = None


class Balance(WireRecord, namespace=f"{_NS}.balances.v1", include_metadata=False, isodates=True):
    """One balance read or change, or one bank-link change, on one account."""

    event_id: str
    event_time: int
    service: str
    kind: str
    account_id: str
    balance: float | None = None
    previous_balance: float | None = None
    transaction_id: str | None = None
    initiated_by: str | None = None
    partner_bank: str | None = None
    region: str | None = None


class Complaint(
    WireRecord, namespace=f"{_NS}.complaints.v1", include_metadata=False, isodates=True
):
    """One support ticket, social-media mention, app review, call or chat."""

    event_id: str
    event_time: int
    service: str
    channel: str
    category: str
    region: str | None = None
    text: str | None = None
    sentiment: float | None = None


class Request(WireRecord, namespace=f"{_NS}.requests.v1", include_metadata=False, isodates=True):
    """One request, or a pre-aggregated sample, of one app section."""

    event_id: str
    event_time: int
    service: str
    section: str
    requests: int
    errors: int
    latency_ms_p50: float | None = None
    latency_ms_p99: float | None = None
    interval_ms: int | None = None
    downstream: str | None = None
    downstream_errors: int | None = None


class Maintenance(
    WireRecord, namespace=f"{_NS}.maintenance.v1", include_metadata=False, isodates=True
):
    """One declared maintenance window (or a change of its status)."""

    event_id: str
    event_time: int
    service: str
    start_time: int
    end_time: int
    segments: dict[str, str] | None = None
    announced_at: int | None = None
    description: str | None = None
    status: str | None = None


class Feedback(WireRecord, namespace=f"{_NS}.feedback.v1", include_metadata=False, isodates=True):
    """One operator verdict on one incident (by its dedup key)."""

    event_id: str
    event_time: int
    dedup_key: str
    verdict: str
    service: str | None = None
    author: str | None = None
    comment: str | None = None


class DeadLetter(
    WireRecord, namespace=f"{_NS}.deadletter.v1", include_metadata=False, isodates=True
):
    """One rejected input record, with the reason and the original bytes (base64).

    ``timestamp_ms`` and ``key_b64`` are required but may be ``None`` (written as ``null``).
    ``detected_at`` must be a timezone-aware datetime.
    """

    _wire_nulls = frozenset({"timestamp_ms", "key_b64"})

    reason: str
    error_kind: str
    source_topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key_b64: str | None
    value_b64: str
    detected_at: datetime
    worker: str


class IncidentPayload(
    WireRecord, namespace=f"{_NS}.incident.payload.v1", include_metadata=False, isodates=True
):
    """PagerDuty Events v2 ``payload``. ``class_`` is ``class`` on the wire."""

    summary: str
    severity: str
    source: str
    timestamp: datetime
    component: str | None = None
    group: str | None = None
    class_: str | None = StringField(
        required=False, default=None, input_name="class", output_name="class"
    )
    custom_details: dict[str, Any] | None = None


class IncidentData(
    WireRecord, namespace=f"{_NS}.incident.data.v1", include_metadata=False, isodates=True
):
    """PagerDuty Events v2 event body (the CloudEvents ``data``), without ``routing_key``."""

    event_action: str
    dedup_key: str
    payload: IncidentPayload


class IncidentEvent(
    WireRecord, namespace=f"{_NS}.incident.v1", include_metadata=False, isodates=True
):
    """CloudEvents 1.0 envelope (structured JSON mode) of one incident change."""

    id: str
    source: str
    type: str
    time: datetime
    subject: str
    data: IncidentData
    specversion: str = "1.0"
    datacontenttype: str = "application/json"
    dataschema: str | None = None


#: Schema name -> record class, for every schema in ``schemas/``.
RECORDS: dict[str, type[WireRecord]] = {
    "transactions": Transaction,
    "logins": Login,
    "otp": Otp,
    "balances": Balance,
    "complaints": Complaint,
    "requests": Request,
    "maintenance": Maintenance,
    "feedback": Feedback,
    "incident": IncidentEvent,
    "deadletter": DeadLetter,
}


def to_wire(record: faust.Record) -> dict[str, Any]:
    """The record as the plain JSON object its schema describes, ready for ``json.dumps``.

    Wire names are used (``class_`` -> ``class``). An optional field (one with a default) that
    is ``None`` is left out; a required field is always written, ``None`` as ``null`` (the
    required-but-nullable fields are listed in the class's ``_wire_nulls``). Nested
    records are converted the same way, datetimes become RFC 3339 strings in UTC (``...Z``; a
    naive datetime is a ``ValueError``), tuples become lists. Extra attributes that
    ``from_data`` kept from the input are not written.
    """
    options = record._options
    optional = options.optionalset - getattr(record, "_wire_nulls", frozenset())
    out: dict[str, Any] = {}
    for name, descriptor in options.descriptors.items():
        value = getattr(record, name)
        if value is None and name in optional:
            continue
        out[descriptor.output_name] = _wire_value(value, name)
    return out


def _field_values(record: faust.Record) -> dict[str, Any]:
    """Field name (Python name, not wire name) -> value."""
    return {name: getattr(record, name) for name in record._options.descriptors}


def _wire_value(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (str, int, float)):
        return value
    if isinstance(value, faust.Record):
        return to_wire(value)
    if isinstance(value, datetime):
        return _rfc3339(value, where)
    if isinstance(value, Mapping):
        return {str(k): _wire_value(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_wire_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _rfc3339(value: datetime, where: str) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"{where}={value!r} is a naive datetime; use a timezone-aware one, "
            "e.g. datetime.now(UTC) or datetime.fromtimestamp(ms / 1000, UTC)"
        )
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
