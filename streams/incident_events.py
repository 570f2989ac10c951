"""Incident changes as wire events: CloudEvents 1.0 envelope, PagerDuty Events v2 body.

The CloudEvents ``id`` is derived from the dedup key, the action and the window, so the
same input processed twice (at-least-once redelivery, a restart, a replay) yields the same
id and consumers can drop the copy; the ``dedup_key`` stays stable for the incident's life.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from detectors.monitor import IncidentChange
from streams.records import IncidentData, IncidentEvent, IncidentPayload, to_wire

#: Namespace of the deterministic event ids (uuid5).
ID_NAMESPACE = uuid.UUID("5b8f3f0e-9d0c-4c53-9a57-4f1c0e6b2a11")
EVENT_TYPES = {
    "open": "dev.outage-radar.incident.triggered",
    "update": "dev.outage-radar.incident.updated",
    "resolve": "dev.outage-radar.incident.resolved",
}
PD_ACTIONS = {"open": "trigger", "update": "trigger", "resolve": "resolve"}


def iso_ms(ms: int) -> str:
    """RFC 3339 UTC time with milliseconds.

    >>> iso_ms(1_700_000_000_000)
    '2023-11-14T22:13:20.000Z'
    """
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def event_id(change: IncidentChange) -> str:
    return str(
        uuid.uuid5(ID_NAMESPACE, f"{change.dedup_key}|{change.action}|{change.window_end_ms}")
    )


def incident_event(change: IncidentChange, source: str) -> dict[str, Any]:
    """The incident event for one change (``schemas/incident.v1.json``)."""
    ev = change.evidence
    details: dict[str, Any] = {
        "signal": change.signal,
        "segment": change.segment.as_dict(),
        "status": "open" if change.action != "resolve" else "resolved",
        "observed": ev.observed_rate,
        "expected": ev.expected_rate,
        "lower_bound": ev.lower_bound,
        "upper_bound": ev.upper_bound,
        "score": ev.score,
        "volume": ev.trials,
        "failed": ev.trials - ev.successes,
        "excess_failures": ev.excess_failures,
        "window_start": iso_ms(change.window_start_ms),
        "window_end": iso_ms(change.window_end_ms),
        "opened_at": iso_ms(change.opened_at_ms),
        "windows_open": change.windows_open,
        "probable_cause": change.cause,
    }
    ended = datetime.fromtimestamp(change.window_end_ms / 1000, tz=UTC)
    event = IncidentEvent(
        id=event_id(change),
        source=source,
        type=EVENT_TYPES[change.action],
        time=ended,
        subject=change.segment.label,
        data=IncidentData(
            event_action=PD_ACTIONS[change.action],
            dedup_key=change.dedup_key,
            payload=IncidentPayload(
                summary=change.summary[:1024],
                severity=change.severity,
                source=change.segment.label,
                timestamp=ended,
                component=change.segment.service,
                group=change.segment.dimension or "service",
                class_=change.cause_class,
                custom_details=details,
            ),
        ),
    )
    return to_wire(event)
