"""Stage 1: validate every input record, dead-letter the bad ones, count the good ones per
cell and event-time window.

Each (topic, partition) has its own :class:`~detectors.windows.PartitionWindows` (its own
watermark), so windows depend neither on how partitions interleave nor on replay speed. What
a record counts is decided by :mod:`detectors.signals`, the same extractors ``evaluate`` uses.
Closed windows leave as partial counts on the internal windows topic, each on the partition
of its service (bundled per partition: :mod:`streams.bundles`), followed by a ``closed``
marker to every windows partition; stage 2 (:mod:`streams.agents.detection`) completes a
window once every source closed it.
Maintenance records go to stage 2 as they are (they declare windows, they are not counted).

Restarts lose nothing and count nothing twice. Every record is acked once handled except the
first record counted into each open window, held until that window's partials and marker
are sent; the committed offset therefore never passes the oldest open window, and a new
worker reads every record of the windows that were open. Each "closed" marker carries the
offset after the last record handled (``next``); at start-up stage 2 finds each partition's
newest marker (:mod:`streams.restore`), and a record below that offset in a window the marker
closed was counted or dead-lettered already: it is skipped (only the extractor's per-account
state learns from it again). A record at or after it in such a window is late, as ever.

Balances and OTP records also feed state that outlives windows: each account's last known
balance and each code's pending deadline (:class:`~detectors.signals.Extractor`). A worker
that takes such a partition, at start-up or in a rebalance, first replays the partition's
last ``RADAR_STATE_HISTORY_SECONDS`` of records before the offset it resumes from into that
state (:func:`rebuild_state`): they are not counted again, and an account seen in that span
is judged as the previous owner would have judged it. Accounts seen before that span are kept
on the account state topic (``RADAR_ACCOUNT_STATE``): each account's balance when it was first
seen or its funded status flipped, on its balances partition (:func:`publish_accounts`), read
back before the history (:func:`recall_accounts`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import defaultdict
from typing import Any

from aiokafka.errors import IllegalStateError

from detectors.feedback import feedback_service
from detectors.signals import FAMILIES, SEP, Extractor
from detectors.windows import ClosedWindow, PartitionWindows, window_start
from streams.agents.detection import markers, restored
from streams.app import app, settings
from streams.bundles import bundles, windows_partition
from streams.deadletter import send_dead_letter
from streams.errors import InvalidRecord
from streams.restore import (
    Marker,
    NoSuchPartition,
    account_message,
    read_accounts,
    read_back,
)
from streams.topics import (
    KIND_OF_TOPIC,
    account_state_topic,
    deadletter_topic,
    inputs_topic,
    windows_topic,
)
from streams.validation import decode

log = logging.getLogger(__name__)

BATCH = 2_000
Source = tuple[str, int]  # (input kind, partition)

#: Per source: windows, extractor state, wall-clock time of the last record, and the offset
#: after the last record this agent has handled (not merely fetched: see ``handled_until``).
windows: dict[Source, PartitionWindows] = {}
extractors: dict[Source, Extractor] = {}
last_seen: dict[Source, float] = {}
handled_next: dict[Source, int] = {}
#: Per source: the first record counted into each open window (by window start), not acked.
first_records: dict[Source, dict[int, Any]] = {}
#: The ingest agent's stream, for acks made outside it (the quiet-partition timer).
agent_stream: Any = None
#: Input partitions this worker owns (assigned, not revoked since), with the wall-clock time
#: each was assigned; and when the agent first handled a record at all (see quiet_seconds).
owned: dict[Source, float] = {}
first_handled_at: float | None = None
#: Families whose extractor keeps state beyond a window (accounts' balances, OTP codes).
STATEFUL = frozenset(kind for kind, family in FAMILIES.items() if family.extract is None)
#: Sources whose extractor state was rebuilt since this worker took them (rebuild_state).
rebuilt: set[Source] = set()
#: Balances sources whose account state cannot be kept (no such account state partition).
unkept: set[Source] = set()


def windows_for(source: Source) -> PartitionWindows:
    pw = windows.get(source)
    if pw is None:
        width = len(FAMILIES[source[0]].counters)
        pw = windows[source] = PartitionWindows(settings.window_ms, settings.lateness_ms, width)
        marker = markers.get(source)
        if marker is not None:  # after a restart: windows up to there were sent already
            pw.closed_until_ms = marker.until_ms
    return pw


def extractor_for(source: Source) -> Extractor:
    # Balances are keyed by account, so an account's history is in one partition's state.
    ex = extractors.get(source)
    if ex is None:
        track = settings.account_state and source[0] == "balances"
        ex = extractors[source] = Extractor(track_accounts=track)
    return ex


async def publish_accounts(source: Source) -> None:
    """Send the accounts of a balances partition first seen, or whose funded status flipped,
    since the last call to the account state topic: keyed by account (compaction keeps each
    account's last), on the partition of the balances record, so that the partition's next
    owner reads just its own accounts back (:func:`recall_accounts`).

    Sent at the end of each batch: Faust commits acked offsets on its own clock, so a crash
    may lose the last batch's changes with its offsets committed. Those are records of the
    last moments, which the next owner replays from the history (``RADAR_STATE_HISTORY_SECONDS``)
    anyway.
    """
    ex = extractors.get(source)
    if ex is None:
        return
    changed = ex.balances.take_changed()
    if not changed or source in unkept:
        return
    # Faust's producer itself, not Topic.send: a message per account (100,321 for the bench
    # data set's balances) cost the worker 12 % of its throughput through Topic.send.
    producer, topic = await app.maybe_start_producer(), account_state_topic.get_topic_name()
    for account, balance in changed.items():
        value = account_message(account, balance)
        await producer.send(topic, account.encode(), value, source[1], None, None)


async def recall_accounts(source: Source, extractor: Extractor) -> None:
    """Put the accounts the account state topic holds for this balances partition back into
    its extractor, before the partition's history is replayed over them.

    The topic must have the balances topic's partitions (it is created with
    ``RADAR_PARTITIONS``, as the inputs are); a partition it lacks is logged as an error and
    the partition's account state is not kept (the history alone, as with
    ``RADAR_ACCOUNT_STATE=false``). Read a batch at a time: the extractor keeps the most
    recent accounts up to its capacity. A failed read is logged and the partition goes on
    with the accounts recalled so far and the history.

    The topic may hold changes of records after the committed offset (handled, not yet
    committed), which the new owner reads again: an account known unfunded, not seen in the
    history, that read 0 and was then funded within those records reads funded before its
    zero read, which counts as a violation. One record at most per such account, where an
    incident needs a burst.
    """
    partition = source[1]
    topic = account_state_topic.get_topic_name()
    t0 = time.monotonic()
    recalled = 0
    try:
        batches = read_accounts(settings.bootstrap_servers, topic, partition)
        async with contextlib.aclosing(batches):
            async for batch in batches:
                if source not in owned:
                    return  # revoked meanwhile: its next owner reads them
                for account, balance in batch:
                    extractor.balances.recall(account, balance)
                recalled += len(batch)
    except NoSuchPartition as exc:
        unkept.add(source)
        log.error("cannot keep the account state of balances[%d]: %s; its accounts are known "
                  "from the history alone; recreate %s with as many partitions as the "
                  "balances topic", partition, exc, topic)  # fmt: skip
        return
    except Exception:
        log.exception("could not read the account state of balances[%d] from %s; it goes on "
                      "with the %d accounts recalled so far and the history", partition, topic,
                      recalled)  # fmt: skip
        return
    log.info("recalled %d accounts of balances[%d] from %s in %.1f s", recalled, partition,
             topic, time.monotonic() - t0)  # fmt: skip


def partition_count(topic_name: str) -> int:
    n = app.consumer.topic_partitions(topic_name)
    return int(n) if n else settings.partitions


async def emit_closed(
    source: Source, topic_name: str, closed: list[ClosedWindow], until_ms: int | None
) -> None:
    """Send the partials of closed windows (one per service), bundled per windows partition
    (:mod:`streams.bundles`: a service's partials to its partition), then the source's
    marker to every partition.

    Every partial leaves before any marker: a marker on one partition tells the next owner of
    the input partition that these windows were sent *everywhere* (it resumes counting after
    them), so it must not go out while another partition's partials may not. A worker stopped
    between the two (its agent cancelled) sent no marker: the next owner counts these windows
    again, and their partials replace the ones sent (same window, group and source).

    The marker's ``next`` is read before the first send: a rebalance during the sends drops
    this worker's handled offset, and the previous marker's offset would then be sent with the
    new ``until``, which makes the next owner dead-letter every record between them as late.
    """
    kind, partition = source
    nxt = handled_next.get(source)
    if nxt is None and source in markers:  # nothing handled since a restart
        nxt = markers[source].next_offset
    n = partition_count(topic_name)
    parts = partition_count(windows_topic.get_topic_name())
    items: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for window in closed:
        by_service: dict[str, dict[str, list[int]]] = defaultdict(dict)
        for key, counts in window.segments.items():
            by_service[key.split(SEP, 1)[0]][key] = counts
        for service, segments in sorted(by_service.items()):
            items[windows_partition(service, parts)].append(
                {"kind": "partial", "topic": kind, "src": partition, "n": n,
                 "window": window.start_ms, "group": service, "segments": segments}
            )  # fmt: skip
    for q, messages in sorted(items.items()):
        for value in bundles(messages):
            await windows_topic.send(key=b"", value=value, partition=q)
    if until_ms is not None:
        marker = {"kind": "closed", "topic": kind, "src": partition, "n": n, "until": until_ms,
                  "next": nxt}  # fmt: skip
        for q in range(parts):
            await windows_topic.send(key=b"", value=marker, partition=q)
        markers[source] = Marker(until_ms, nxt)
    # Sent (the producer is flushed before any commit): the windows' first records may go.
    first = first_records.get(source, {})
    for window in closed:
        event = first.pop(window.start_ms, None)
        if event is not None and agent_stream is not None:
            await agent_stream.ack(event)


@app.agent(inputs_topic, concurrency=1)
async def ingest(stream: Any) -> None:
    # concurrency=1: the per-source windows and extractor state are this agent's own.
    # Acks are ours (see the module docstring): every record is acked once handled, except
    # the first record counted into each open window, held until that window has been sent.
    global agent_stream, first_handled_at
    agent_stream = stream
    max_bytes = settings.max_record_bytes
    async for events in stream.noack_take(BATCH, within=0.2):
        if not restored.is_set():
            await restored.wait()
        touched: dict[Source, str] = {}
        if first_handled_at is None:
            first_handled_at = time.monotonic()
        for event in events:
            msg = event.message
            kind = KIND_OF_TOPIC.get(msg.topic, "")
            source = (kind, msg.partition)
            if kind in FAMILIES and source not in owned:
                # Revoked while this batch waited (a rebalance): its next owner reads it
                # again from the committed offset; counting it here would build state for a
                # partition this worker no longer has (and count it twice if it came back).
                continue
            if kind in STATEFUL and source not in rebuilt:
                rebuilt.add(source)
                await rebuild_state(source, msg)
                if source not in owned:  # revoked meanwhile
                    continue
            # Handled from here: a counted record is added below with no await in between,
            # so the idle timer never sees it handled and not yet counted.
            handled_next[source] = msg.offset + 1
            marker = markers.get(source)
            seen = marker is not None and msg.offset < (marker.next_offset or 0)
            held = False
            try:
                rec = decode(kind, event.value, max_bytes=max_bytes)
                if kind in ("maintenance", "feedback"):
                    # For the incident manager, on the windows partition of its service (a
                    # verdict's service is the first part of the incident key).
                    service = str(rec.get("service") or feedback_service(rec) or "")
                    parts = partition_count(windows_topic.get_topic_name())
                    await windows_topic.send(
                        key=service.encode(), value={"kind": kind, "record": rec},
                        partition=windows_partition(service, parts),
                    )  # fmt: skip
                elif kind in FAMILIES:
                    ts = rec["event_time"]
                    start = window_start(ts, settings.window_ms)
                    extractor = extractor_for(source)
                    if seen and marker is not None and start < marker.until_ms:
                        # Counted (or dead-lettered) before a restart, in a window already
                        # sent: only the extractor's per-account state learns from it again.
                        for _update in extractor.updates(kind, rec):
                            pass
                    else:
                        pw = windows_for(source)
                        accepted, counted = True, False
                        for _service, key, index, amount in extractor.updates(kind, rec):
                            accepted = pw.add(ts, key, index, amount) and accepted
                            counted = True
                        if not accepted:
                            reason = (
                                f"{kind} record: event_time {ts} is older than the partition's "
                                f"closed windows (closed until {pw.closed_until_ms}); raise "
                                f"RADAR_LATENESS_SECONDS (now {settings.lateness_seconds}) to "
                                "accept more disorder"
                            )
                            await send_dead_letter(deadletter_topic, event, "late", reason)
                        else:
                            touched[source] = msg.topic
                            first = first_records.setdefault(source, {})
                            if counted and start not in first:
                                first[start] = event
                                held = True
            except InvalidRecord as exc:
                if not seen:  # else dead-lettered before a restart already
                    await send_dead_letter(deadletter_topic, event, exc.kind, exc.reason)
            except Exception as exc:  # a bug must not ack the record away: keep it
                log.exception("cannot count %s@%s/%s", msg.topic, msg.partition, msg.offset)
                reason = f"{kind} record: internal error {type(exc).__name__}: {exc}"
                await send_dead_letter(deadletter_topic, event, "internal", reason)
            if not held:
                await stream.ack(event)
        for source in [s for s in extractors if s[0] == "balances"]:
            await publish_accounts(source)
        now = time.monotonic()
        for source, topic_name in touched.items():
            mine = windows.get(source)
            if mine is None:  # revoked during this batch's sends: the next owner counts it
                continue
            last_seen[source] = now
            before = mine.closed_until_ms
            closed = mine.pop_closed()
            if mine.closed_until_ms != before:
                await emit_closed(source, topic_name, closed, mine.closed_until_ms)


async def rebuild_state(source: Source, msg: Any) -> None:
    """Replay the history of ``source`` before ``msg`` (the first record this worker reads
    of it, at the committed offset) into its extractor, counting nothing: the records of the
    last ``RADAR_STATE_HISTORY_SECONDS`` before it by record timestamp.

    Without it, a worker taking a partition over knew none of its accounts' balances and
    none of its pending codes: a funded account reading 0 was not a violation, a code
    requested before and delivered after was not counted. Records from the committed offset
    on are the agent's own (counted, or replayed as ever when their window was sent), so
    each record feeds the state once, in offset order. The history is read a batch at a time
    (:func:`~streams.restore.read_back`), so it is never all in memory. A failed read is
    logged and the partition goes on with the state replayed so far.
    """
    kind, partition = source
    extractor = extractor_for(source)
    if kind == "balances" and settings.account_state:
        await recall_accounts(source, extractor)
    horizon = settings.state_history_ms
    if horizon <= 0 or msg.offset <= 0 or msg.timestamp is None:
        return
    t0 = time.monotonic()
    since = round(msg.timestamp * 1000) - horizon
    used = 0
    history = read_back(settings.bootstrap_servers, msg.topic, partition, msg.offset, since)
    try:
        async with contextlib.aclosing(history):
            async for batch in history:
                if source not in owned:
                    return  # revoked meanwhile: its next owner rebuilds it
                for m in batch:
                    try:
                        rec = decode(kind, m.value, max_bytes=settings.max_record_bytes)
                    except InvalidRecord:
                        continue  # dead-lettered when it was first read
                    for _update in extractor.updates(kind, rec):
                        pass
                    used += 1
    except Exception:
        log.exception("could not read back %s[%d] before offset %d; its account and code "
                      "state holds the %d records replayed so far", msg.topic, partition,
                      msg.offset, used)  # fmt: skip
        return
    log.info(
        "rebuilt %s[%d] state from %d records before offset %d (its last %.0f s) in %.1f s",
        msg.topic, partition, used, msg.offset, horizon / 1000, time.monotonic() - t0,
    )  # fmt: skip


def handled_until(source: Source, tp: Any, high: int | None, position: int | None) -> int | None:
    """The offset below which every record of the partition has been fetched *and handled*,
    if that reaches the high watermark of its last fetch; else None (the partition is behind).

    A fetch position at the high watermark is not enough: under a backlog, fetched records wait
    in Faust's stream buffer for seconds, and a partition advanced then would dead-letter them
    all as late. So the agent's own handled offset must reach the high watermark too. Before
    the agent has handled any record of the partition, Faust's read offset stands in: after
    the seek to the committed offset it is that offset (caught up if nothing was written since),
    and once Faust has delivered a record it is that record's offset, below the high watermark.
    """
    if high is None or position is None or position < high:
        return None
    done = handled_next.get(source)
    if done is None:
        # Faust's own bookkeeping (faust-streaming 0.15, pinned): None until a committed
        # offset was found, the committed offset after the seek, then the last delivered one.
        read = getattr(app.consumer, "_read_offset", {}).get(tp)
        done = 0 if read is None else int(read)
    return done if done >= high else None


async def still_quiet(candidates: dict[Any, int]) -> set[Any]:
    """Of partitions that look caught up (tp -> handled offset), those the broker confirms.

    The high watermark a partition carries is from its last fetch, and Faust stops fetching a
    partition while its stream buffer is full (flow control): a partition can look caught up
    and quiet for seconds while records pile up for it on the broker. So the broker is asked
    for the end (ListOffsets). On Tansu the answer is the base offset of the newest *batch* + 1,
    a lower bound (``../shared/TANSU.md``); that is enough here, since fetches deliver whole
    batches: any batch written after the handled offset starts at or after it, so the answer
    passes it.
    """
    if not candidates:
        return set()
    ends = await app.consumer.highwaters(*candidates)
    return {tp for tp, done in candidates.items() if ends.get(tp) is not None and ends[tp] <= done}


@app.on_partitions_revoked.connect
async def forget_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
    """Forget the open windows of partitions given away: their next owner reads them again
    from the committed offset, which the held first records kept at the oldest open window.
    The partition's last marker stays: if it comes back, windows up to there were sent.
    (Another worker may have moved it on meanwhile: see the README's limits.)"""
    revoked = args[0] if args else kwargs.get("revoked", ())
    for tp in revoked:
        kind = KIND_OF_TOPIC.get(tp.topic)
        if kind is not None:
            source = (kind, tp.partition)
            try:
                await publish_accounts(source)
            except Exception:  # the next owner replays the partition's history anyway
                log.exception("could not send the account state of %s[%d] before giving "
                              "it away", tp.topic, tp.partition)  # fmt: skip
            owned.pop(source, None)
            last_seen.pop(source, None)
            handled_next.pop(source, None)
            windows.pop(source, None)
            extractors.pop(source, None)
            first_records.pop(source, None)
            rebuilt.discard(source)
            unkept.discard(source)


@app.on_partitions_assigned.connect
async def note_assigned(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
    """Start the quiet clock of each newly assigned input partition (see quiet_seconds)."""
    assigned = args[0] if args else kwargs.get("assigned", ())
    now = time.monotonic()
    for tp in assigned:
        kind = KIND_OF_TOPIC.get(tp.topic)
        if kind is not None:
            owned.setdefault((kind, tp.partition), now)


def quiet_seconds(
    now: float, last_record: float | None, assigned: float | None, first_handled: float | None
) -> float | None:
    """How long a partition has been quiet, counted only while records were flowing to it.

    From its last record; for a partition with no record yet, from when the input started
    flowing (the agent's first record) or from its assignment, whichever is later; None (not
    quiet: nothing is known yet) before the agent has handled any record. Counting from the
    worker's start instead let a partition whose first batch reached the broker a moment
    after the others' be advanced past its own records at the start of a replay, which
    dead-lettered them as late (measured with a replay into a worker: 747 to 4,230 records in
    5 of 11 runs; most likely what raised a fresh-clone CI run's false OTP incident).

    >>> quiet_seconds(100.0, last_record=97.0, assigned=10.0, first_handled=50.0)
    3.0
    >>> quiet_seconds(100.0, last_record=None, assigned=10.0, first_handled=98.0)
    2.0
    >>> quiet_seconds(100.0, last_record=None, assigned=99.0, first_handled=50.0)
    1.0
    >>> quiet_seconds(100.0, last_record=None, assigned=10.0, first_handled=None) is None
    True
    """
    if last_record is not None:
        return now - last_record
    if first_handled is None:
        return None
    return now - max(first_handled, assigned if assigned is not None else first_handled)


async def high_and_position(tp: Any) -> tuple[int | None, int | None] | None:
    """``(high watermark, fetch position)`` of an assigned partition, or ``None`` if it is not
    assigned (any more).

    A rebalance can revoke a partition between any two awaits, and Faust runs aiokafka in a
    thread of its own, so even a check just before cannot rule it out: aiokafka then raises
    ``AssertionError`` (``highwater``) or ``IllegalStateError`` (``position``). Raised from a
    timer, that crashed the worker: seen once in the 15 runs made (over two sessions) of the
    test of a second worker joining and leaving mid-replay (``test_scenarios``).
    """
    if tp not in app.consumer.assignment():
        return None
    try:
        return app.consumer.highwater(tp), await app.consumer.position(tp)
    except (AssertionError, IllegalStateError):
        return None


@app.timer(interval=1.0)
async def advance_quiet_partitions() -> None:
    """Let quiet partitions stop holding back windows (the only wall-clock rule).

    A partition with no record for ``RADAR_IDLE_SECONDS`` (timed by :func:`quiet_seconds`)
    *that has nothing left to read or to handle* (see :func:`handled_until` and
    :func:`still_quiet`) is advanced to the newest closed window of the busy partitions: it
    closes its windows up to there and says so to stage 2.
    With no busy partition it says nothing, unless every partition is quiet: then the input
    has stopped and every open window is closed. A partition that is behind, or not fetched
    yet, is never advanced: releasing windows without it would lose its counts.
    """
    counted = {name: kind for name, kind in KIND_OF_TOPIC.items() if kind in FAMILIES}
    tps = sorted(
        (tp for tp in app.consumer.assignment() if tp.topic in counted),
        key=lambda t: (t.topic, t.partition),
    )
    if not tps:
        return
    now = time.monotonic()
    candidates: dict[Any, int] = {}
    for tp in tps:
        source = (counted[tp.topic], tp.partition)
        idle = quiet_seconds(now, last_seen.get(source), owned.get(source), first_handled_at)
        if idle is None or idle < settings.idle_seconds:
            continue
        fetched = await high_and_position(tp)
        if fetched is None:
            continue
        done = handled_until(source, tp, *fetched)
        if done is not None:
            candidates[tp] = done
    confirmed = await still_quiet(candidates)
    quiet = [((counted[tp.topic], tp.partition), tp.topic) for tp in tps if tp in confirmed]
    if not quiet:
        return
    quiet_sources = {s for s, _ in quiet}
    if len(quiet) == len(tps):  # the input has stopped: close every open window
        newest = [pw.max_event_ms for pw in windows.values() if pw.max_event_ms is not None]
        if not newest:
            return
        horizon = max(newest) - max(newest) % settings.window_ms + settings.window_ms
    else:
        busy = [pw.closed_until_ms for s, pw in windows.items() if s not in quiet_sources]
        known = [b for b in busy if b is not None]
        if not known:
            return
        horizon = max(known)
    for source, topic_name in quiet:
        if source not in owned:  # revoked while the broker was asked: not ours to close
            continue
        pw = windows_for(source)
        before = pw.closed_until_ms
        closed = pw.close_until(horizon)
        if pw.closed_until_ms != before:
            await emit_closed(source, topic_name, closed, pw.closed_until_ms)
