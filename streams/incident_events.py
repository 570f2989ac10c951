"""Incident updates as wire events: CloudEvents 1.0 envelope, PagerDuty Events v2 body.

The CloudEvents ``id`` is derived from the dedup key, the action and the window, so the same
input processed twice (at-least-once redelivery, a restart, a replay) yields the same id and
consumers can drop the copy; the ``dedup_key`` stays stable for the incident's life.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from detectors.incidents import IncidentUpdate
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


#: Before every incident key in a dedup key.
DEDUP_PREFIX = "outage-radar/"


def dedup_key(update: IncidentUpdate) -> str:
    return f"{DEDUP_PREFIX}{update.incident.key}"


def event_id(update: IncidentUpdate) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, f"{dedup_key(update)}|{update.action}|{update.at_ms}"))


def summary(update: IncidentUpdate) -> str:
    inc = update.state
    p = inc.primary
    ev = p.evidence
    observed = getattr(ev, "observed", None)
    shown = "n/a" if observed is None else _fmt(p.signal.name, observed)
    what = f"{p.signal.what} at {p.segment.label}: {shown} vs {_fmt(p.signal.name, ev.expected)}"
    where = "" if inc.maintenance is None else " (inside declared maintenance)"
    if inc.overran and inc.maintenance is not None:
        where = f" (declared maintenance overran its end, {iso_ms(inc.maintenance[1])})"
    if inc.verdict is not None:
        where += f" (operator: {inc.verdict.replace('_', ' ')})"
    if update.action == "resolve":
        return f"Resolved: {inc.cause}{where}"
    if inc.cause_class == "detector_blind":
        return f"{inc.cause}: {observed:.0f} {p.signal.what} (bound {ev.expected:.0f})"
    return f"{inc.cause}{where}: {what} expected"


def _fmt(signal: str, value: float) -> str:
    if signal.endswith(("_rate", "_ratio", "_share")):
        return f"{value:.1%}"
    return f"{value:.0f}"


def incident_event(update: IncidentUpdate, source: str) -> dict[str, Any]:
    """The incident event for one update (``schemas/incident.v1.json``)."""
    inc = update.state
    primary = inc.primary
    # The evidence shown: the primary anomaly's when it opens or grows; the resolving
    # window's when it resolves (what recovery looked like).
    shown = primary
    if update.action == "resolve":
        shown = next((a for a in reversed(update.anomalies) if a.action == "resolve"), primary)
    ev = shown.evidence
    details: dict[str, Any] = {
        "signal": shown.signal.name,
        "segment": shown.segment.as_dict(),
        "status": "resolved" if update.action == "resolve" else "open",
        "observed": getattr(ev, "observed", None),
        "expected": getattr(ev, "expected", None),
        "lower_bound": getattr(ev, "lower_bound", None),
        "upper_bound": getattr(ev, "upper_bound", None),
        "score": getattr(ev, "score", None),
        "volume": getattr(ev, "volume", None),
        "window_start": iso_ms(shown.window_start_ms),
        "window_end": iso_ms(shown.window_end_ms),
        "opened_at": iso_ms(inc.opened_at_ms),
        "probable_cause": inc.cause,
        "signals": inc.signals,
        "segments": [s.as_dict() for s in inc.segments],
        "changed": [
            {"action": a.action, "signal": a.signal.name, "segment": a.segment.as_dict()}
            for a in update.anomalies
        ],
        "maintenance": None
        if inc.maintenance is None
        else {
            "start": iso_ms(inc.maintenance[0]),
            "end": iso_ms(inc.maintenance[1]),
            "overran": inc.overran,
        },
        "verdict": inc.verdict,
        "feedback_notes": inc.notes,
    }
    at = datetime.fromtimestamp(update.at_ms / 1000, tz=UTC)
    event = IncidentEvent(
        id=event_id(update),
        source=source,
        type=EVENT_TYPES[update.action],
        time=at,
        subject=primary.segment.label,
        data=IncidentData(
            event_action=PD_ACTIONS[update.action],
            dedup_key=dedup_key(update),
            payload=IncidentPayload(
                summary=summary(update)[:1024],
                severity=update.severity,
                source=primary.segment.label,
                timestamp=at,
                component=primary.segment.service,
                group=primary.segment.dimension or "service",
                class_=inc.cause_class,
                custom_details=details,
            ),
        ),
    )
    return to_wire(event)
