"""Reading the worker's own logs back at start-up, so a restart loses and repeats nothing.

The worker keeps its detection state in memory and its history in two topics it writes:

* the windows topic holds, in order, every partial count, "closed" marker, maintenance
  declaration and feedback verdict stage 2 ever consumed. Folding it again through the same
  code rebuilds the assemblers, the detectors and the incident manager exactly as they were
  (event time only, no wall clock), and its last "closed" marker per input partition tells
  stage 1 where that partition stood (:class:`Marker`);
* the incidents topic holds every incident event already published: an update the rebuild
  reproduces is sent again only if its id is not there (the worker died between deciding
  it and publishing it), so nothing is lost and nothing is published twice.

Stage 1 resumes each input partition from its committed offset, which it holds back to the
first record of its oldest open window (see :mod:`streams.agents.ingest`): records of windows
that were still open are counted again, from their first record, and records of windows
already closed are skipped. Both topics are read with a plain aiokafka consumer with the
partitions assigned (no group), from the beginning to the high watermark carried by fetch
responses (right on Tansu too, unlike its ListOffsets answer: ``../shared/TANSU.md``).

The cost grows with the windows topic: its retention bounds how much is re-read (and how far
back the detectors' baselines reach after a restart).

After a rebalance, a worker reads only the windows partitions it was assigned, from where its
own state of each stops to their end (``from_offsets``): what another worker consumed of them
meanwhile (:func:`streams.agents.detection.catch_up`).

Input partitions are read back too, by time (:func:`read_back`): the balances and OTP records
of the last ``RADAR_STATE_HISTORY_SECONDS`` before the offset stage 1 resumes from rebuild its
per-account and per-code state (:func:`streams.agents.ingest.rebuild_state`), after the
accounts stage 1 kept on the account state topic (:func:`read_accounts`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from streams.errors import RadarError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LogRecord:
    """One record read back: partition, offset and JSON value (None if not JSON)."""

    partition: int
    offset: int
    value: Any


@dataclass(frozen=True)
class Marker:
    """Where an input partition stood when it last closed windows.

    ``until_ms``: every window ending at or before it was closed and its partials sent.
    ``next_offset``: the offset after the last record the partition had handled then (None
    from a worker older than this field): a record below it was counted or dead-lettered
    already; a record at or after it in a closed window is late.
    """

    until_ms: int
    next_offset: int | None


def markers_from(records: Sequence[LogRecord]) -> dict[tuple[str, int], Marker]:
    """The newest "closed" marker of every (input kind, partition) in windows-topic records.

    Markers are broadcast to every windows partition, each as a record of its own (never in a
    bundle: :mod:`streams.bundles`); the one with the highest ``until`` wins (they only move
    forward).

    >>> recs = [LogRecord(0, 0, {"kind": "closed", "topic": "logins", "src": 1, "n": 2,
    ...                          "until": 20, "next": 7}),
    ...         LogRecord(1, 0, {"kind": "closed", "topic": "logins", "src": 1, "n": 2,
    ...                          "until": 10, "next": 3}),
    ...         LogRecord(0, 1, {"kind": "partial", "topic": "logins", "src": 1})]
    >>> markers_from(recs)
    {('logins', 1): Marker(until_ms=20, next_offset=7)}
    """
    out: dict[tuple[str, int], Marker] = {}
    for rec in records:
        v = rec.value
        if not isinstance(v, dict) or v.get("kind") != "closed":
            continue
        source = (str(v["topic"]), int(v["src"]))
        have = out.get(source)
        if have is None or v["until"] > have.until_ms:
            nxt = v.get("next")
            out[source] = Marker(int(v["until"]), None if nxt is None else int(nxt))
    return out


def still_open(records: Sequence[LogRecord]) -> dict[str, int]:
    """Dedup keys whose newest incident event is not a resolve, with when each opened
    (epoch ms), from incidents-topic records in offset order per partition (one key always
    lands on one partition).

    >>> def ev(key, action, opened="2025-10-19T08:00:00.000Z"):
    ...     return LogRecord(0, 0, {"data": {"dedup_key": key, "event_action": action,
    ...         "payload": {"custom_details": {"opened_at": opened}}}})
    >>> still_open([ev("a", "trigger"), ev("b", "trigger"), ev("a", "resolve")])
    {'b': 1760860800000}
    """
    last: dict[str, tuple[str, int]] = {}
    for rec in records:
        data = rec.value.get("data") if isinstance(rec.value, dict) else None
        if not isinstance(data, dict):
            continue
        opened = data["payload"]["custom_details"]["opened_at"]
        opened_ms = round(datetime.fromisoformat(opened.replace("Z", "+00:00")).timestamp() * 1000)
        last[data["dedup_key"]] = (data["event_action"], opened_ms)
    return {key: at for key, (action, at) in last.items() if action != "resolve"}


@dataclass(frozen=True)
class TopicLog:
    """A topic read back: its records (partition by partition, in offset order) and, per
    partition, the end offset the read stopped at."""

    records: list[LogRecord]
    ends: dict[int, int]


async def read_topic(
    bootstrap: Sequence[str],
    topic: str,
    timeout_s: float = 120.0,
    from_offsets: Mapping[int, int] | None = None,
) -> TopicLog:
    """Every record of ``topic`` up to the end each partition had when first fetched (the
    high watermark then: records written meanwhile are left for the live consumer).

    ``from_offsets`` (partition -> offset): read only those partitions, each from its offset.
    Raises :class:`RadarError` if the end is not reached within ``timeout_s``.
    """
    from aiokafka import TopicPartition

    consumer = await _started_consumer(bootstrap)
    try:
        parts = await _partitions(consumer, topic)
        if from_offsets is not None:
            parts = {p for p in parts if p in from_offsets}
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return TopicLog([], {})
        consumer.assign(tps)
        if from_offsets is None:
            await consumer.seek_to_beginning(*tps)
        else:
            for tp in tps:
                consumer.seek(tp, from_offsets[tp.partition])
        by_partition: dict[int, list[LogRecord]] = {tp.partition: [] for tp in tps}
        ends: dict[Any, int] = {}
        deadline = time.monotonic() + timeout_s
        pending = set(tps)
        while pending:
            if time.monotonic() > deadline:
                left = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(pending))
                raise RadarError(
                    f"could not read {topic} to its end within {timeout_s:.0f} s (still "
                    f"reading {left}); check the broker, or shorten the topic's retention"
                )
            batch = await consumer.getmany(*pending, timeout_ms=200, max_records=10_000)
            for tp, msgs in batch.items():
                for m in msgs:
                    by_partition[tp.partition].append(LogRecord(tp.partition, m.offset, _json(m)))
            for tp in list(pending):
                high = consumer.highwater(tp)
                if high is None:
                    continue
                # The end is fixed at the first high watermark seen: a log still being
                # written is read to where it stood, not chased.
                end = ends.setdefault(tp, high)
                if await consumer.position(tp) >= end:
                    pending.discard(tp)
        end_of = {tp.partition: ends[tp] for tp in tps}
        records = [r for p in sorted(end_of) for r in by_partition[p] if r.offset < end_of[p]]
        return TopicLog(records, end_of)
    finally:
        await consumer.stop()


def account_message(account: str, balance: float) -> bytes:
    """The account state topic's message (JSON bytes) of one account, as
    :func:`read_accounts` reads it back; its key is the account id.

    >>> account_message("a0392666", 2540000.0)
    b'{"account": "a0392666", "balance": 2540000.0}'
    """
    return json.dumps({"account": account, "balance": balance}).encode()


class NoSuchPartition(RadarError):
    """The topic lacks the partition asked for."""


async def _partitions(consumer: Any, topic: str) -> set[int]:
    parts = consumer.partitions_for_topic(topic)
    if parts is None:
        # Metadata for a topic not seen yet: ask once, then give up (nothing to read).
        await consumer._client.force_metadata_update()  # no public call for this
        parts = consumer.partitions_for_topic(topic)
    return set(parts or ())


async def read_accounts(
    bootstrap: Sequence[str], topic: str, partition: int, timeout_s: float = 120.0
) -> AsyncGenerator[list[tuple[str, float]], None]:
    """What the account state topic holds for one balances partition, a fetched batch at a
    time (so it is never all in memory): ``(account, balance)`` in offset order (a later one
    for an account replaces an earlier one), up to the end the partition had when first
    fetched. A message that is not ``{"account": str, "balance": number}`` is skipped.

    Raises :class:`NoSuchPartition` if the topic has no such partition, :class:`RadarError`
    if the end is not reached within ``timeout_s``.
    """
    from aiokafka import TopicPartition

    consumer = await _started_consumer(bootstrap)
    try:
        parts = await _partitions(consumer, topic)
        if partition not in parts:
            raise NoSuchPartition(f"{topic} has no partition {partition} (it has {len(parts)})")
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        deadline = time.monotonic() + timeout_s
        end: int | None = None
        while end is None or await consumer.position(tp) < end:
            if time.monotonic() > deadline:
                raise RadarError(
                    f"could not read {topic}[{partition}] to its end ({end}) within "
                    f"{timeout_s:.0f} s; check the broker"
                )
            batch = await consumer.getmany(tp, timeout_ms=200, max_records=10_000)
            if end is None:
                end = consumer.highwater(tp)  # set by the first fetch answered
            accounts = []
            for m in batch.get(tp, ()):
                value = _json(m) if end is None or m.offset < end else None
                if not isinstance(value, dict):
                    continue
                account, balance = value.get("account"), value.get("balance")
                if (
                    isinstance(account, str)
                    and isinstance(balance, int | float)
                    and not isinstance(balance, bool)  # JSON true is no balance
                ):
                    accounts.append((account, float(balance)))
            if accounts:
                yield accounts
    finally:
        await consumer.stop()


async def read_back(
    bootstrap: Sequence[str],
    topic: str,
    partition: int,
    before: int,
    since_ms: int,
    timeout_s: float = 120.0,
    first_step: int = 2_000,
    slack_ms: int = 60_000,
) -> AsyncGenerator[list[Any], None]:
    """The records of one partition below offset ``before`` whose timestamp is at least
    ``since_ms``, in offset order, a fetched batch at a time (aiokafka ``ConsumerRecord``:
    ``offset``, ``timestamp``, ``value``): the history a worker taking the partition over
    replays into its per-account and per-code state (:mod:`streams.agents.ingest`).

    Kafka finds offsets by time only through ListOffsets, whose answers Tansu bends
    (``../shared/TANSU.md``), so the first offset is searched for by reading one record here
    and there: ``first_step`` records before ``before``, then twice as far back each time,
    until a record is older than ``since_ms - slack_ms``; then by bisection, to within
    ``first_step`` records. Timestamps may be out of order by up to ``slack_ms`` (records
    arrive late by up to the lateness, seconds). From there the records are read forward,
    so only one batch is held at a time. Raises :class:`RadarError` if that takes more than
    ``timeout_s``.
    """
    from aiokafka import TopicPartition

    consumer = await _started_consumer(bootstrap)
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        low = (await consumer.beginning_offsets([tp])).get(tp) or 0
        if before <= low:
            return
        deadline = time.monotonic() + timeout_s
        reader = _Reader(consumer, tp, before, deadline)
        start = await _first_offset(reader, low, since_ms - slack_ms, first_step)
        async for batch in reader.forward(start):
            kept = [m for m in batch if m.timestamp >= since_ms]
            if kept:
                yield kept
    finally:
        await consumer.stop()


async def _first_offset(reader: _Reader, low: int, target_ms: int, step: int) -> int:
    """An offset at or before the first record of time ``target_ms`` (to within ``step``)."""
    hi, gap = reader.end, step
    while True:  # back in doubling steps, to a record older than the target
        probe = max(low, hi - gap)
        ts = await reader.timestamp_at(probe)
        if ts is not None and ts < target_ms:
            break
        if probe == low:
            return low
        hi, gap = probe, gap * 2
    lo = probe
    while hi - lo > step:  # bisect: lo is older than the target, hi is not
        mid = (lo + hi) // 2
        ts = await reader.timestamp_at(mid)
        if ts is not None and ts < target_ms:
            lo = mid
        else:
            hi = mid
    return lo


class _Reader:
    """One partition below ``end``: the timestamp at an offset, or every record from one."""

    def __init__(self, consumer: Any, tp: Any, end: int, deadline: float) -> None:
        self.consumer, self.tp, self.end, self.deadline = consumer, tp, end, deadline

    async def _fetch(self, start: int) -> list[Any]:
        if time.monotonic() > self.deadline:
            raise RadarError(
                f"could not read {self.tp.topic}[{self.tp.partition}] back to offset "
                f"{self.end} in time; check the broker, or lower RADAR_STATE_HISTORY_SECONDS"
            )
        batch = await self.consumer.getmany(self.tp, timeout_ms=200, max_records=10_000)
        # A fetch may begin before ``start``: Tansu answers with whole batches.
        return [m for m in batch.get(self.tp, ()) if start <= m.offset < self.end]

    async def timestamp_at(self, offset: int) -> int | None:
        """The timestamp of the first record at or after ``offset`` (None: none before end)."""
        self.consumer.seek(self.tp, offset)
        while await self.consumer.position(self.tp) < self.end:
            got = await self._fetch(offset)
            if got:
                return int(got[0].timestamp)
        return None

    async def forward(self, start: int) -> AsyncIterator[list[Any]]:
        self.consumer.seek(self.tp, start)
        while await self.consumer.position(self.tp) < self.end:
            got = await self._fetch(start)
            if got:
                yield got


async def _started_consumer(bootstrap: Sequence[str]) -> Any:
    """A plain aiokafka consumer (no group: partitions are assigned), started."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        bootstrap_servers=list(bootstrap),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,  # Tansu answers long polls late (TANSU.md)
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    # aiokafka 0.14: the consumer's committed-offsets routine (a task made by start) must have
    # run once before stop cancels it, or stop raises CancelledError (a consumer stopped with
    # no await in between: a topic or partition found missing).
    await asyncio.sleep(0)
    return consumer


def _json(message: Any) -> Any:
    try:
        return json.loads(message.value) if message.value is not None else None
    except ValueError:
        return None
