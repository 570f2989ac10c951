"""Stage 2: complete windows across every input partition, detect, correlate, emit incidents.

The windows topic is keyed by service, so one service's partials all reach one partition of
it; ``closed``/``idle`` markers are broadcast to every partition. Each windows partition has
its own :class:`~detectors.windows.WindowAssembler` over every (input topic, partition)
source; complete windows go to the :class:`~detectors.engine.DetectionEngine`, whose
anomalies the :class:`~detectors.incidents.IncidentManager` correlates into incidents that
leave on the incidents topic as CloudEvents keyed by dedup key. This is the same engine and
manager ``evaluate`` runs (:class:`~detectors.pipeline.OfflinePipeline`).
"""

from __future__ import annotations

import logging
from typing import Any

from detectors.engine import DetectionEngine, EngineWindow
from detectors.feedback import FeedbackQueue, apply_feedback
from detectors.incidents import IncidentManager
from detectors.signals import FAMILIES
from detectors.windows import AssembledWindow, WindowAssembler
from streams.app import app, settings
from streams.incident_events import incident_event
from streams.topics import incidents_topic, windows_topic

log = logging.getLogger(__name__)

GROUP_SEP = "\x1e"  # between input kind and service in an assembled window's group key

assemblers: dict[int, WindowAssembler] = {}
engine = DetectionEngine(window_ms=settings.window_ms)
manager = IncidentManager()
feedback = FeedbackQueue()


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


def engine_window(window: AssembledWindow) -> EngineWindow:
    out = EngineWindow(window.start_ms)
    for group, cells in window.groups.items():
        kind, service = group.split(GROUP_SEP, 1)
        out.families.setdefault(kind, {})[service] = cells
    return out


@app.agent(windows_topic, concurrency=1)
async def detect(stream: Any) -> None:
    # concurrency=1: assemblers, detectors and incidents are this agent's own state.
    async for event in stream.events():
        msg = event.value
        kind = msg["kind"]
        if kind == "maintenance":
            manager.declare_maintenance(msg["record"])
            continue
        if kind == "feedback":
            if not feedback.add(msg["record"]):
                log.info("feedback %s redelivered; applied once", msg["record"].get("event_id"))
            continue
        asm = assembler_for(event.message.partition)
        source = f"{msg['topic']}:{msg['src']}"
        asm.add_sources(f"{msg['topic']}:{p}" for p in range(int(msg["n"])))
        if kind == "partial":
            group = f"{msg['topic']}{GROUP_SEP}{msg['group']}"
            asm.add_partial(source, msg["window"], group, msg["segments"])
            continue
        if kind != "closed":
            log.warning("unknown message kind %r on the windows topic; ignored", kind)
            continue
        for window in asm.mark_closed(source, msg["until"]):
            end = window.start_ms + settings.window_ms
            updates = []
            for fb in feedback.due(end):  # verdicts apply in event time, between windows
                changed, line = apply_feedback(engine, manager, fb, end)
                log.info("%s", line)
                updates.extend(changed)
            updates.extend(manager.process(end, engine.process(engine_window(window))))
            for update in updates:
                body = incident_event(update, source=settings.source)
                log.info("%s %s", update.action, body["data"]["payload"]["summary"])
                await incidents_topic.send(key=body["data"]["dedup_key"].encode(), value=body)
