"""The whole detection path without Kafka: records in event-time order -> incidents.

``evaluate`` and tests use it; the worker runs the same pieces split over two agents. Records
arrive merged by event time (one ordered stream), so one watermark for all families closes
every family's windows together, exactly as the worker's stage 2 completes a window once every
partition of every topic has closed it.

>>> p = OfflinePipeline(window_ms=10_000)
>>> p.add("logins", {"event_time": 1_000, "service": "s", "region": "r", "outcome": "success"})
>>> p.finish()
[]
>>> p.engine.windows_seen
1
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from detectors.engine import DetectionEngine, EngineWindow
from detectors.incidents import IncidentManager, IncidentUpdate
from detectors.signals import FAMILIES, Extractor
from detectors.windows import ClosedWindow, PartitionWindows


class OfflinePipeline:
    """Windows, detection and incidents for one event-time-ordered stream of records.

    Parameters
    ----------
    window_ms, lateness_ms
        As the worker's ``RADAR_WINDOW_SECONDS`` and ``RADAR_LATENESS_SECONDS``.
    engine, manager
        Pre-built (e.g. pre-trained) ones; fresh ones by default.
    """

    def __init__(
        self,
        window_ms: int,
        lateness_ms: int = 5_000,
        engine: DetectionEngine | None = None,
        manager: IncidentManager | None = None,
    ) -> None:
        self.window_ms = window_ms
        self.lateness_ms = lateness_ms
        self.engine = engine or DetectionEngine(window_ms)
        self.manager = manager or IncidentManager()
        self.extractor = Extractor()
        self.windows = {
            name: PartitionWindows(window_ms, lateness_ms, width=len(f.counters))
            for name, f in FAMILIES.items()
        }
        self.max_event_ms: int | None = None
        self.closed_until_ms: int | None = None
        self.late = 0
        self.counted = 0
        self.updates: list[IncidentUpdate] = []

    def add(self, family: str, record: Mapping[str, Any]) -> None:
        """Count one validated record of ``family`` (other families are ignored here)."""
        windows = self.windows.get(family)
        if windows is None:
            if family == "maintenance":
                self.manager.declare_maintenance(record)
            return
        ts = record["event_time"]
        ok = True
        for _service, key, index, amount in self.extractor.updates(family, record):
            ok = windows.add(ts, key, index, amount) and ok
        if not ok:
            self.late += 1
            return
        self.counted += 1
        if self.max_event_ms is None or ts > self.max_event_ms:
            self.max_event_ms = ts
            boundary = ts - self.lateness_ms
            boundary -= boundary % self.window_ms
            if self.closed_until_ms is None or boundary > self.closed_until_ms:
                self._close(boundary)

    def finish(self) -> list[IncidentUpdate]:
        """End of input: close every window; returns all incident updates of the run."""
        if self.max_event_ms is not None:
            self._close(self.max_event_ms - self.max_event_ms % self.window_ms + self.window_ms)
        return self.updates

    def _close(self, boundary_ms: int) -> None:
        self.closed_until_ms = boundary_ms
        merged: dict[int, EngineWindow] = {}
        for family, windows in self.windows.items():
            closed: list[ClosedWindow] = windows.close_until(boundary_ms)
            for cw in closed:
                window = merged.setdefault(cw.start_ms, EngineWindow(cw.start_ms))
                by_service = window.families.setdefault(family, {})
                for key, counts in cw.segments.items():
                    by_service.setdefault(key.split("\x1f", 1)[0], {})[key] = counts
        for start in sorted(merged):
            window = merged[start]
            anomalies = self.engine.process(window)
            self.updates.extend(self.manager.process(start + self.window_ms, anomalies))
