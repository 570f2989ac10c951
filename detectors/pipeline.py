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

Warm start: replay history first, so the detectors judge the first windows of the run against
learned baselines (see :func:`warm_start`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
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

    def warm_start(self, history: Iterable[tuple[str, Mapping[str, Any]]]) -> WarmStart:
        """Pre-train this pipeline's engine on ``history`` before its first record.

        See :func:`warm_start`; declared maintenance windows of the history are kept in this
        pipeline's manager. Raises ``ValueError`` if the pipeline has already counted records
        (the history must come first).
        """
        if self.max_event_ms is not None or self.late:
            raise ValueError(
                "warm_start must run before the first record is added: this pipeline has "
                f"already seen records up to {self.max_event_ms}; build a fresh OfflinePipeline"
            )
        return warm_start(history, self.engine, self.lateness_ms, self.manager)

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


@dataclass(frozen=True)
class WarmStart:
    """What :func:`warm_start` learned.

    Attributes
    ----------
    engine
        The pre-trained engine (the one passed in, trained in place).
    events
        History records counted into windows (maintenance declarations and late records not
        included).
    late
        History records too late for their window (as the worker would dead-letter them).
    windows
        History windows the engine scored and learned from.
    first_ms, last_ms
        Event time of the first and last history record, or None without any.
    incidents
        Incidents the history raised: discarded, never reported or counted.
    """

    engine: DetectionEngine
    events: int
    late: int
    windows: int
    first_ms: int | None
    last_ms: int | None
    incidents: int


def warm_start(
    history: Iterable[tuple[str, Mapping[str, Any]]],
    engine: DetectionEngine,
    lateness_ms: int = 5_000,
    manager: IncidentManager | None = None,
) -> WarmStart:
    """Pre-train ``engine`` in place by replaying ``history`` through the detection path.

    ``history`` is ``(family, validated record)`` pairs in event-time order, exactly what
    :meth:`OfflinePipeline.add` takes (the worker and ``evaluate`` both read it their own way:
    no file or broker here). Every window is scored and learned as in a live run, with the
    engine's own windowing (``engine.window_ms``) and ``lateness_ms``. Afterwards:

    * kept: what the detectors learned (baselines, seasonal profiles, overdispersion, the
      recent violations of invariants, which they date themselves);
    * discarded: the history's incidents (a throwaway manager correlates them; only their
      number is returned), the engine's lifecycles (an anomaly still open at the end of the
      history does not carry over: if the outage goes on, the first later windows open it
      afresh) and the pooled and spanned running sums (they would mix history windows into the
      first later ones, across whatever gap separates them);
    * carried into ``manager`` (if given): maintenance windows declared in the history, since
      a declaration made earlier still covers later incidents.

    The engine's observer is not called for history windows. The later records must come
    after the history in event time; the caller checks it (it knows both ranges).

    >>> from detectors.engine import DetectionEngine
    >>> def logins(t: int, ok: bool) -> tuple[str, dict[str, Any]]:
    ...     return "logins", {"event_time": t, "service": "s", "region": "r",
    ...                       "outcome": "success" if ok else "failure"}
    >>> engine = DetectionEngine(10_000)
    >>> w = warm_start((logins(t, t % 10_000 != 0) for t in range(0, 600_000, 500)), engine)
    >>> (w.events, w.windows, w.first_ms, w.last_ms, w.incidents)
    (1200, 60, 0, 599500, 0)
    >>> engine.lifecycles, engine.pools, engine.spans
    ({}, {}, {})
    """
    observer, engine.observer = engine.observer, None
    before = engine.windows_seen
    first_ms: int | None = None
    last_ms: int | None = None
    try:
        replay = OfflinePipeline(engine.window_ms, lateness_ms, engine=engine)
        for family, record in history:
            ts = record.get("event_time")
            if isinstance(ts, int):
                first_ms = ts if first_ms is None else first_ms
                last_ms = ts if last_ms is None else max(last_ms, ts)
            replay.add(family, record)
        replay.finish()
    finally:
        engine.observer = observer
    return end_history(replay, before, first_ms, last_ms, manager)


def end_history(
    replay: OfflinePipeline,
    windows_before: int,
    first_ms: int | None,
    last_ms: int | None,
    manager: IncidentManager | None = None,
) -> WarmStart:
    """The end of a warm start: ``replay`` (a pipeline of its own around the engine to
    pre-train) has run over the whole history, with the engine's observer off. Forgets what
    :func:`warm_start` says is discarded, carries the maintenance windows into ``manager``
    and reports what was learned (``first_ms``/``last_ms``: the history's first and latest
    event times; ``windows_before``: the engine's ``windows_seen`` before the history).
    Shared by :func:`warm_start` and readers that replay the history their own way."""
    engine = replay.engine
    # Episodes end with the history; learned baselines stay.
    engine.lifecycles.clear()
    engine.open_level.clear()
    engine.recovery.clear()
    engine.unflagged.clear()
    engine.flagged_at.clear()
    engine.pools.clear()
    engine.spans.clear()
    if manager is not None:
        for service, windows in replay.manager.maintenance.items():
            manager.maintenance.setdefault(service, {}).update(windows)
    return WarmStart(
        engine=engine,
        events=replay.counted,
        late=replay.late,
        windows=engine.windows_seen - windows_before,
        first_ms=first_ms,
        last_ms=last_ms,
        incidents=len(replay.manager.incidents),
    )
