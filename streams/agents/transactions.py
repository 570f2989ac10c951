"""Stage 1 for transactions: validate, dead-letter, count per cell and event-time window.

Each input partition has its own :class:`~detectors.windows.PartitionWindows` (its own
watermark), so the windows do not depend on how partitions interleave or on replay speed.
Closed windows leave as partial counts keyed by service on the internal windows topic,
followed by a ``closed`` marker to every windows partition; stage 2
(:mod:`streams.agents.detection`) completes a window once every input partition closed it.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any

from detectors.monitor import TXN_COUNTERS, TXN_INDEX, cell_key
from detectors.windows import ClosedWindow, PartitionWindows
from streams.app import app, settings
from streams.deadletter import send_dead_letter
from streams.errors import InvalidRecord
from streams.topics import deadletter_topic, transactions_topic, windows_topic
from streams.validation import decode

log = logging.getLogger(__name__)

KIND = "transactions"
BATCH = 2_000

#: Per input partition: windows, wall-clock time of the last record, idle flag.
partitions: dict[int, PartitionWindows] = {}
last_seen: dict[int, float] = {}
idle: set[int] = set()
started = time.monotonic()
stats: dict[str, int] = defaultdict(int)


def windows_for(partition: int) -> PartitionWindows:
    pw = partitions.get(partition)
    if pw is None:
        pw = partitions[partition] = PartitionWindows(
            settings.window_ms, settings.lateness_ms, width=len(TXN_COUNTERS)
        )
    return pw


def source_partition_count() -> int:
    n = app.consumer.topic_partitions(transactions_topic.get_topic_name())
    return int(n) if n else settings.partitions


async def _broadcast(marker: dict[str, Any]) -> None:
    n = app.consumer.topic_partitions(windows_topic.get_topic_name()) or settings.partitions
    for q in range(int(n)):
        await windows_topic.send(key=b"", value=marker, partition=q)


async def emit_closed(partition: int, closed: list[ClosedWindow], until_ms: int | None) -> None:
    """Send the partials of closed windows (one per service) and the partition's marker."""
    n = source_partition_count()
    for window in closed:
        by_service: dict[str, dict[str, list[int]]] = defaultdict(dict)
        for key, counts in window.segments.items():
            by_service[key.split("\x1f", 1)[0]][key] = counts
        for service, segments in sorted(by_service.items()):
            await windows_topic.send(
                key=service.encode(),
                value={
                    "kind": "partial",
                    "topic": KIND,
                    "src": partition,
                    "n": n,
                    "window": window.start_ms,
                    "group": service,
                    "segments": segments,
                },
            )
    if until_ms is not None:
        await _broadcast(
            {"kind": "closed", "topic": KIND, "src": partition, "n": n, "until": until_ms}
        )


@app.agent(transactions_topic, concurrency=1)
async def count_transactions(stream: Any) -> None:
    # concurrency=1: the per-partition windows below are this agent's own state.
    max_bytes = settings.max_record_bytes
    async for events in stream.take_events(BATCH, within=0.2):
        touched: set[int] = set()
        for event in events:
            msg = event.message
            try:
                rec = decode(KIND, event.value, max_bytes=max_bytes)
                pw = windows_for(msg.partition)
                key = cell_key(
                    rec["service"], rec.get("partner_bank"), rec["region"], rec["channel"]
                )
                accepted = pw.add(rec["event_time"], key, TXN_INDEX[rec["status"]])
            except InvalidRecord as exc:
                stats["dead_letters"] += 1
                await send_dead_letter(deadletter_topic, event, exc.kind, exc.reason)
                continue
            except Exception as exc:  # a bug must not ack the record away: keep it
                log.exception("cannot count %s@%s/%s", msg.topic, msg.partition, msg.offset)
                stats["dead_letters"] += 1
                reason = f"transactions record: internal error {type(exc).__name__}: {exc}"
                await send_dead_letter(deadletter_topic, event, "internal", reason)
                continue
            if not accepted:
                stats["late"] += 1
                reason = (
                    f"transactions record: event_time {rec['event_time']} is older than the "
                    f"partition's closed windows (closed until {pw.closed_until_ms}); raise "
                    f"RADAR_LATENESS_SECONDS (now {settings.lateness_seconds}) to accept "
                    "more disorder"
                )
                await send_dead_letter(deadletter_topic, event, "late", reason)
                continue
            stats["counted"] += 1
            touched.add(msg.partition)
        now = time.monotonic()
        for p in touched:
            last_seen[p] = now
            idle.discard(p)
            pw = partitions[p]
            before = pw.closed_until_ms
            closed = pw.pop_closed()
            if pw.closed_until_ms != before:
                await emit_closed(p, closed, pw.closed_until_ms)


@app.timer(interval=1.0)
async def detect_idle_partitions() -> None:
    """Let a quiet partition stop holding back windows (the only wall-clock rule).

    A partition with no record for ``RADAR_IDLE_SECONDS`` *that has nothing left to read*
    (its fetch position has reached its high watermark) closes its windows up to the newest
    closed window of the busy partitions (all of them, if every partition is quiet) and is
    marked idle, so stage 2 does not wait for it. A partition that is merely behind, or not
    fetched yet, is never idle: releasing windows without it would lose its counts.
    """
    topic = transactions_topic.get_topic_name()
    tps = sorted(
        (tp for tp in app.consumer.assignment() if tp.topic == topic), key=lambda t: t.partition
    )
    assigned = [tp.partition for tp in tps]
    now = time.monotonic()
    quiet = []
    for tp in tps:
        if now - last_seen.get(tp.partition, started) < settings.idle_seconds:
            continue
        high = app.consumer.highwater(tp)
        position = await app.consumer.position(tp)
        if high is not None and position is not None and position >= high:
            quiet.append(tp.partition)
    if not quiet:
        return
    busy = [partitions[p].closed_until_ms for p in assigned if p not in quiet and p in partitions]
    horizon = max((b for b in busy if b is not None), default=None)
    n = source_partition_count()
    for p in quiet:
        pw = partitions.get(p)
        if pw is not None:
            before = pw.closed_until_ms
            closed = pw.flush() if horizon is None else pw.close_until(horizon)
            if pw.closed_until_ms != before:
                await emit_closed(p, closed, pw.closed_until_ms)
        if p not in idle:
            idle.add(p)
            await _broadcast({"kind": "idle", "topic": KIND, "src": p, "n": n})
