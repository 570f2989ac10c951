"""Stage 2: complete windows across partitions, detect, and emit incidents.

The windows topic is keyed by service, so one service's partials all reach one partition
of it; ``closed``/``idle`` markers are broadcast to every partition. Each windows
partition has its own :class:`~detectors.windows.WindowAssembler`; complete windows go to
the :class:`~detectors.monitor.TransactionMonitor` and its incident changes leave on the
incidents topic as CloudEvents keyed by dedup key.
"""

from __future__ import annotations

import logging
from typing import Any

from detectors.monitor import TransactionMonitor
from detectors.windows import WindowAssembler
from streams.app import app, settings
from streams.incident_events import incident_event
from streams.topics import incidents_topic, windows_topic

log = logging.getLogger(__name__)

assemblers: dict[int, WindowAssembler] = {}
monitor = TransactionMonitor(window_ms=settings.window_ms)


def assembler_for(partition: int, sources: int) -> WindowAssembler:
    asm = assemblers.get(partition)
    if asm is None:
        asm = assemblers[partition] = WindowAssembler(range(sources), settings.window_ms)
    else:
        asm.add_sources(range(sources))
    return asm


@app.agent(windows_topic, concurrency=1)
async def detect(stream: Any) -> None:
    # concurrency=1: assemblers and detectors are this agent's own per-key state.
    async for event in stream.events():
        msg = event.value
        asm = assembler_for(event.message.partition, int(msg["n"]))
        kind = msg["kind"]
        if kind == "partial":
            asm.add_partial(msg["src"], msg["window"], msg["group"], msg["segments"])
            continue
        ready = (
            asm.mark_closed(msg["src"], msg["until"])
            if kind == "closed"
            else (asm.mark_idle(msg["src"]))
        )
        for window in ready:
            for change in monitor.process(window):
                body = incident_event(change, source=settings.source)
                log.info("%s %s", change.action, change.summary)
                await incidents_topic.send(key=change.dedup_key.encode(), value=body)
