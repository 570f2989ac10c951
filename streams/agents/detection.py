"""Stage 2: complete windows across every input partition, detect, correlate, emit incidents.

One service's partials all reach one partition of the windows topic (the partition its name
hashes to; bundled: :mod:`streams.bundles`); ``closed`` markers go to every partition.
Each windows partition has its own :class:`~detectors.windows.WindowAssembler` over every
(input topic, partition) source; complete windows go to the
:class:`~detectors.engine.DetectionEngine`, whose anomalies the
:class:`~detectors.incidents.IncidentManager` correlates into incidents that leave on the
incidents topic as CloudEvents keyed by dedup key. This is the same engine and manager
``evaluate`` runs (:class:`~detectors.pipeline.OfflinePipeline`).

A worker rebuilds the state from the whole windows topic at start-up (:func:`restore_state`)
and, after each rebalance, folds in what other workers consumed of its assigned partitions
(:func:`catch_up`); each window says which services it covers, so the services of
partitions held by another worker are not read as silent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection
from typing import Any

from detectors.engine import DetectionEngine, EngineWindow
from detectors.feedback import FeedbackQueue, apply_feedback
from detectors.incidents import IncidentManager, IncidentUpdate
from detectors.signals import FAMILIES
from detectors.windows import AssembledWindow, WindowAssembler, merge_windows
from streams.app import app, settings
from streams.bundles import unbundle
from streams.incident_events import event_id, incident_event
from streams.restore import Marker, TopicLog, markers_from, read_topic, still_open
from streams.topics import incidents_topic, windows_topic

log = logging.getLogger(__name__)

GROUP_SEP = "\x1e"  # between input kind and service in an assembled window's group key

assemblers: dict[int, WindowAssembler] = {}
#: Windows released by some windows partitions' assemblers, waiting for the others (by start).
released: dict[int, list[AssembledWindow]] = {}
engine = DetectionEngine(window_ms=settings.window_ms)
manager = IncidentManager()
feedback = FeedbackQueue()

#: The windows-topic partition each service's partials arrive on.
service_partition: dict[str, int] = {}
#: Set while the state is whole: once restore_state has rebuilt it, and again after each
#: catch_up (a rebalance); both stages wait for it.
restored = asyncio.Event()
#: Set once restore_state is done (catch_up waits for it).
restore_done = asyncio.Event()
#: Per windows partition: the offset below which every message has been folded into the
#: state (by restore_state, the agent or catch_up); a message below it is not folded again.
rebuilt_until: dict[int, int] = {}
#: End of the newest window the engine has judged.
judged_until = 0
#: Catch-ups started and not finished (restored stays clear meanwhile).
_catching_up = 0
_tasks: set[asyncio.Task[None]] = set()
#: Per (input kind, partition): its newest "closed" marker, from restore_state and catch_up
#: (another worker's) or sent by this worker's stage 1.
markers: dict[tuple[str, int], Marker] = {}
#: Dedup keys left open on the incidents topic by the previous run (-> opened, epoch ms).
open_before: dict[str, int] = {}


def all_sources() -> list[str]:
    """Every (counted input topic, partition) a window waits for."""
    out: list[str] = []
    for kind in FAMILIES:
        name = settings.topics.inputs()[kind]
        n = app.consumer.topic_partitions(name) or settings.partitions
        out.extend(f"{kind}:{p}" for p in range(int(n)))
    return out


def assembler_for(partition: int) -> WindowAssembler:
    asm = assemblers.get(partition)
    if asm is None:
        asm = assemblers[partition] = WindowAssembler(all_sources(), settings.window_ms)
    return asm


def engine_window(window: AssembledWindow, services: frozenset[str] | None = None) -> EngineWindow:
    out = EngineWindow(window.start_ms, services=services)
    for group, cells in window.groups.items():
        kind, service = group.split(GROUP_SEP, 1)
        out.families.setdefault(kind, {})[service] = cells
    return out


def handle(partition: int, msg: dict[str, Any]) -> list[IncidentUpdate]:
    """Fold one windows-topic message of ``partition`` into the state; the incident updates
    it causes. Pure of I/O: the live agent and the start-up restore run exactly this."""
    global judged_until
    kind = msg["kind"]
    if kind == "bundle":  # stage 1's messages for this partition, in order
        return [u for item in unbundle(msg) for u in handle(partition, item)]
    if kind == "maintenance":
        manager.declare_maintenance(msg["record"])
        return []
    if kind == "feedback":
        if not feedback.add(msg["record"]):
            log.info("feedback %s redelivered; applied once", msg["record"].get("event_id"))
        return []
    asm = assembler_for(partition)
    source = f"{msg['topic']}:{msg['src']}"
    asm.add_sources(f"{msg['topic']}:{p}" for p in range(int(msg["n"])))
    if kind == "partial":
        service_partition[msg["group"]] = partition
        group = f"{msg['topic']}{GROUP_SEP}{msg['group']}"
        asm.add_partial(source, msg["window"], group, msg["segments"])
        return []
    if kind != "closed":
        log.warning("unknown message kind %r on the windows topic; ignored", kind)
        return []
    updates: list[IncidentUpdate] = []
    for window in asm.mark_closed(source, msg["until"]):
        if window.start_ms + settings.window_ms <= judged_until:
            # The other services' part of this window is judged already: this partition was
            # held by another worker meanwhile. Only a partition caught up after a rebalance
            # releases a window this late. Its services are judged now, alone (the engine
            # judges each service on its own), so that their detectors and incidents carry
            # on from the other worker's: an incident it opened is resolved here, under its
            # key, instead of staying open on the wire.
            end = window.start_ms + settings.window_ms
            late = services_of([partition])
            anomalies = engine.process(engine_window(window, late))
            updates.extend(manager.process(end, anomalies, late))
            continue
        released.setdefault(window.start_ms, []).append(window)
    # The engine judges each window once, with every service of this worker: a window part
    # judged alone would read the services of the other windows partitions as silent.
    mine = windows_partitions()
    horizons = [assemblers[p].horizon_ms if p in assemblers else None for p in mine]
    if not horizons or any(h is None for h in horizons):
        return updates
    horizon = min(h for h in horizons if h is not None)
    # Only this worker's services can be silent here: after a rebalance the others' windows
    # are completed (and their silences judged) by the worker that holds their partitions.
    covered = services_of(mine)
    for start in sorted(ws for ws in released if ws + settings.window_ms <= horizon):
        window = merge_windows(released.pop(start))
        end = start + settings.window_ms
        for fb in feedback.due(end):  # verdicts apply in event time, between windows
            changed, line = apply_feedback(engine, manager, fb, end)
            log.info("%s", line)
            updates.extend(changed)
        anomalies = engine.process(engine_window(window, covered))
        updates.extend(manager.process(end, anomalies, covered))
        judged_until = end
    return updates


def services_of(partitions: Collection[int]) -> frozenset[str]:
    """The services whose partials arrive on these windows partitions (so far)."""
    return frozenset(s for s, p in service_partition.items() if p in partitions)


def windows_partitions() -> list[int]:
    """The windows-topic partitions whose windows this worker completes: those assigned to
    it, or (before the assignment is known, e.g. while restoring) every partition."""
    name = windows_topic.get_topic_name()
    try:
        mine = sorted(tp.partition for tp in app.consumer.assignment() if tp.topic == name)
    except Exception:  # the consumer has not started yet
        mine = []
    if mine:
        return mine
    n = app.consumer.topic_partitions(name) if app.consumer is not None else None
    return list(range(int(n or settings.partitions)))


async def publish(update: IncidentUpdate) -> None:
    body = incident_event(update, source=settings.source)
    log.info("%s %s", update.action, body["data"]["payload"]["summary"])
    await incidents_topic.send(key=body["data"]["dedup_key"].encode(), value=body)


async def unpublished(updates: list[IncidentUpdate]) -> tuple[list[IncidentUpdate], TopicLog]:
    """The updates not on the incidents topic yet (by CloudEvents id), and the topic read."""
    published = await read_topic(settings.bootstrap_servers, settings.topics.incidents)
    ids = {r.value.get("id") for r in published.records if isinstance(r.value, dict)}
    return [u for u in updates if event_id(u) not in ids], published


@app.agent(windows_topic, concurrency=1)
async def detect(stream: Any) -> None:
    # concurrency=1: assemblers, detectors and incidents are this agent's own state.
    async for event in stream.events():
        if not restored.is_set():
            await restored.wait()
        msg = event.message
        if msg.offset < rebuilt_until.get(msg.partition, 0):
            continue  # folded in already (by restore_state, catch_up or before a rebalance)
        rebuilt_until[msg.partition] = msg.offset + 1
        for update in handle(msg.partition, event.value):
            await publish(update)


@app.task
async def restore_state() -> None:
    """Rebuild the state from the windows topic before either stage handles a record, and
    publish the updates the previous run decided but did not get out (:mod:`streams.restore`).
    """
    t0 = time.monotonic()
    windows_log = await read_topic(settings.bootstrap_servers, settings.topics.windows)
    updates: list[IncidentUpdate] = []
    for rec in windows_log.records:
        if isinstance(rec.value, dict):
            updates.extend(handle(rec.partition, rec.value))
    markers.update(markers_from(windows_log.records))
    rebuilt_until.update(windows_log.ends)
    missing, published = await unpublished(updates)
    open_before.update(still_open(published.records))
    for update in missing:
        await publish(update)
    restore_done.set()
    if windows_log.records:
        log.info(
            "restored from %d windows-topic records in %.1f s: %d windows, %d open "
            "incidents, %d input partitions resume after their last closed window; "
            "%d updates not yet published sent now",
            len(windows_log.records), time.monotonic() - t0, engine.windows_seen,
            sum(inc.is_open for inc in manager.incidents), len(markers), len(missing),
        )  # fmt: skip
    if _catching_up == 0:
        restored.set()


@app.on_partitions_assigned.connect
async def catch_up_assigned(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
    """Hold both stages while the assigned windows partitions are caught up (see catch_up).

    Runs inside the rebalance, before any record of the new assignment is handled; the
    reading itself runs as a task (a long callback would stall the rebalance)."""
    global _catching_up
    assigned = args[0] if args else kwargs.get("assigned", ())
    name = windows_topic.get_topic_name()
    parts = sorted(tp.partition for tp in assigned if tp.topic == name)
    if not parts:
        return
    _catching_up += 1
    restored.clear()
    task = asyncio.ensure_future(catch_up(parts))
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


async def catch_up(parts: list[int]) -> None:
    """Fold in what other workers consumed of these windows partitions while this one did not
    hold them: from where this worker's state of each stops (``rebuilt_until``) to its end.

    The state of a windows partition is the fold of its messages in order; a worker that
    gets a partition back after a rebalance resumes from the committed offset of the worker
    that had it, and the partials that worker had folded but not yet completed were in its
    memory only: without this, their windows were completed without them, as silences
    (measured: two runs of a second worker joining mid-replay opened a false "no request
    samples" incident). Windows judged meanwhile without these partitions are judged again
    for these partitions' services only, which carries their detectors and incidents on from
    the other worker's; of the incident updates this gives, those the other worker published
    already (same CloudEvents id) are not sent again. The newest input markers come with it,
    for input partitions taken over.
    """
    global _catching_up
    t0 = time.monotonic()
    try:
        await restore_done.wait()
        start = {p: rebuilt_until.get(p, 0) for p in parts}
        gap = await read_topic(
            settings.bootstrap_servers, settings.topics.windows, from_offsets=start
        )
        updates: list[IncidentUpdate] = []
        for rec in gap.records:
            if rec.offset < rebuilt_until.get(rec.partition, 0):
                continue
            rebuilt_until[rec.partition] = rec.offset + 1
            if isinstance(rec.value, dict):
                updates.extend(handle(rec.partition, rec.value))
        for p, end in gap.ends.items():
            rebuilt_until[p] = max(rebuilt_until.get(p, 0), end)
        for source, marker in markers_from(gap.records).items():
            mine = markers.get(source)
            if mine is None or marker.until_ms > mine.until_ms:
                markers[source] = marker
        if updates:  # the other worker published what it decided on these windows
            updates, _ = await unpublished(updates)
        for update in updates:
            await publish(update)
        log.info(
            "caught up windows partitions %s: %d records from %s in %.1f s; %d incident "
            "updates not yet published sent now",
            parts, len(gap.records), start, time.monotonic() - t0, len(updates),
        )  # fmt: skip
    except Exception:
        log.exception("could not catch up windows partitions %s; continuing without", parts)
    finally:
        _catching_up -= 1
        if _catching_up == 0 and restore_done.is_set():
            restored.set()
