"""The worker watching its own inputs: "detector blind" incidents (detectors.health).

Every few seconds of wall-clock time, for each counted input topic: when it last delivered a
record (``ingest.last_seen``) and how many records the worker is behind on it (high watermark
minus fetch position over the assigned partitions; the high watermark carried by fetches is
right on Tansu too). A topic silent for ``RADAR_STALE_SECONDS`` after delivering records, or
more than ``RADAR_MAX_LAG`` records behind, raises an incident on the incidents topic, resolved
when records flow again or the lag halves. Silence never reads as health.
"""

from __future__ import annotations

import logging
import time

from detectors.health import InputWatch
from detectors.signals import FAMILIES
from streams.agents import ingest
from streams.agents.detection import open_before, restored
from streams.app import app, settings
from streams.incident_events import DEDUP_PREFIX, incident_event
from streams.topics import KIND_OF_TOPIC, incidents_topic

log = logging.getLogger(__name__)

watch = InputWatch(stale_ms=round(settings.stale_seconds * 1000), max_lag=settings.max_lag)
adopted: list[bool] = []  # non-empty once the previous run's open blind incidents are adopted


async def input_health() -> tuple[dict[str, int | None], dict[str, int]]:
    """(last record per topic kind in wall-clock epoch ms, lag per topic kind in records)."""
    now_wall, now_mono = time.time() * 1000, time.monotonic()
    last: dict[str, int | None] = {}
    for (kind, _partition), seen in ingest.last_seen.items():
        at = round(now_wall - (now_mono - seen) * 1000)
        last[kind] = max(at, last.get(kind) or at)
    lag: dict[str, int] = {}
    for tp in app.consumer.assignment():
        family = KIND_OF_TOPIC.get(tp.topic)
        if family is None or family not in FAMILIES:
            continue
        fetched = await ingest.high_and_position(tp)
        if fetched is None:  # revoked meanwhile
            continue
        high, position = fetched
        if high is not None and position is not None:
            lag[family] = lag.get(family, 0) + max(0, high - position)
    return last, lag


@app.timer(interval=max(0.5, min(5.0, settings.stale_seconds / 3)))
async def watch_inputs() -> None:
    if not restored.is_set():
        return
    if not adopted:
        # Blind incidents the previous run left open resolve here once their input recovers.
        for key, opened_at_ms in open_before.items():
            if watch.adopt(key.removeprefix(DEDUP_PREFIX), opened_at_ms):
                log.info("adopted %s, open since before the restart", key)
        adopted.append(True)
    last, lag = await input_health()
    for update in watch.check(round(time.time() * 1000), last, lag):
        body = incident_event(update, source=settings.source)
        log.warning("%s %s", update.action, body["data"]["payload"]["summary"])
        await incidents_topic.send(key=body["data"]["dedup_key"].encode(), value=body)
