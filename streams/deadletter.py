"""Dead-lettering: a record we cannot use is kept, with its reason, never dropped silently."""

from __future__ import annotations

import base64
import logging
import socket
from datetime import UTC, datetime
from typing import Any

from streams.records import DeadLetter, to_wire

log = logging.getLogger(__name__)

WORKER = socket.gethostname()


def dead_letter(
    *,
    error_kind: str,
    reason: str,
    source_topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int | None,
    key: bytes | None,
    value: bytes | None,
) -> dict[str, Any]:
    """The dead-letter record (``schemas/deadletter.v1.json``) for one bad input record."""
    record = DeadLetter(
        reason=reason,
        error_kind=error_kind,
        source_topic=source_topic,
        partition=partition,
        offset=offset,
        timestamp_ms=timestamp_ms if timestamp_ms is not None and timestamp_ms >= 0 else None,
        key_b64=None if key is None else base64.b64encode(key).decode("ascii"),
        value_b64=base64.b64encode(value or b"").decode("ascii"),
        detected_at=datetime.now(UTC),
        worker=WORKER,
    )
    return to_wire(record)


async def send_dead_letter(topic: Any, event: Any, error_kind: str, reason: str) -> None:
    """Send the dead letter for a Faust ``event`` to ``topic``, keyed as the input was."""
    msg = event.message
    ts = getattr(msg, "timestamp", None)
    record = dead_letter(
        error_kind=error_kind,
        reason=reason,
        source_topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        timestamp_ms=None if ts is None else round(ts * 1000),
        key=msg.key,
        value=msg.value,
    )
    log.debug("dead letter %s@%s/%s: %s", msg.topic, msg.partition, msg.offset, reason)
    await topic.send(key=msg.key, value=record)
