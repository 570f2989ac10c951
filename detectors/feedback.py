"""Operator feedback on incidents: what each verdict changes in the detectors.

A record of the feedback topic names an incident by its dedup key and gives a verdict. It
changes what the detectors do for the incident's (signal, segment) members, and the change is
visible in later incidents (their anomalies carry a ``note``):

* ``confirmed``: a real outage. Nothing changes in the detectors; the incident says so.
* ``expected``: a known cause (a campaign, a migration). The incident is downgraded to info and
  says so; the detectors are unchanged (the next campaign is news again).
* ``false_alarm``: the members need one more consecutive anomalous window to open again (up to
  :data:`MAX_EXTRA_WINDOWS` more, one per false alarm); an open incident is resolved now.
* ``new_normal``: the members' detectors, and those of overlapping segments of the same
  signal, forget their baseline and learn the current level
  (:meth:`~detectors.engine.DetectionEngine.rebaseline`); an open incident is resolved now.

Event time, not arrival: a verdict takes effect at the first window that ends after its
``event_time`` (:class:`FeedbackQueue`), so a replay at any speed gives the same incidents.

>>> q = FeedbackQueue()
>>> q.add({"event_id": "f1", "event_time": 25_000, "dedup_key": "outage-radar/wallet/1",
...        "verdict": "false_alarm"})
True
>>> q.add({"event_id": "f1", "event_time": 25_000, "dedup_key": "outage-radar/wallet/1",
...        "verdict": "false_alarm"})  # a redelivery
False
>>> q.due(20_000), [f.key for f in q.due(30_000)]
([], ['wallet/1'])
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from detectors.engine import DetectionEngine
    from detectors.incidents import IncidentManager, IncidentUpdate

VERDICTS = ("confirmed", "false_alarm", "expected", "new_normal")
#: Incident events carry ``dedup_key = DEDUP_PREFIX + incident key``.
DEDUP_PREFIX = "outage-radar/"
#: A member needs at most this many more anomalous windows in a row after false alarms.
MAX_EXTRA_WINDOWS = 3


@dataclass(frozen=True)
class Feedback:
    """One verdict on one incident (a validated record of the feedback topic)."""

    event_id: str
    event_time: int
    key: str  # the incident key (the dedup key without its prefix)
    verdict: str
    author: str | None = None

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Feedback:
        verdict = str(record["verdict"])
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
        key = str(record["dedup_key"])
        return cls(
            event_id=str(record["event_id"]),
            event_time=int(record["event_time"]),
            key=key.removeprefix(DEDUP_PREFIX),
            verdict=verdict,
            author=None if record.get("author") is None else str(record["author"]),
        )


def feedback_service(record: Mapping[str, Any]) -> str | None:
    """The service of the incident a feedback record is about (incident keys start with it).

    >>> feedback_service({"dedup_key": "outage-radar/wallet/1760861410000"})
    'wallet'
    >>> feedback_service({"event_id": "m1"}) is None
    True
    """
    key = record.get("dedup_key")
    if not isinstance(key, str):
        return None
    return key.removeprefix(DEDUP_PREFIX).split("/", 1)[0] or None


class FeedbackQueue:
    """Verdicts waiting for the window their event time falls in; redeliveries dropped."""

    def __init__(self, remember: int = 10_000) -> None:
        self._heap: list[tuple[int, int, Feedback]] = []
        self._seen: dict[str, None] = {}
        self._remember = remember
        self._n = 0

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, record: Mapping[str, Any]) -> bool:
        """Queue a feedback record; False when its ``event_id`` was seen already."""
        fb = Feedback.from_record(record)
        if fb.event_id in self._seen:
            return False
        self._seen[fb.event_id] = None
        if len(self._seen) > self._remember:  # bounded: forget the oldest ids
            del self._seen[next(iter(self._seen))]
        self._n += 1
        heapq.heappush(self._heap, (fb.event_time, self._n, fb))
        return True

    def due(self, window_end_ms: int) -> list[Feedback]:
        """The verdicts given before ``window_end_ms``, oldest first, taken off the queue."""
        out = []
        while self._heap and self._heap[0][0] < window_end_ms:
            out.append(heapq.heappop(self._heap)[2])
        return out


def apply_feedback(
    engine: DetectionEngine, manager: IncidentManager, fb: Feedback, at_ms: int
) -> tuple[list[IncidentUpdate], str]:
    """Apply one verdict at ``at_ms`` (a window end); returns the incident updates it causes
    and one line saying what it did (for the log)."""
    inc = manager.find(fb.key)
    if inc is None:
        return [], (
            f"feedback {fb.event_id}: no incident {fb.key!r} is known to this worker "
            f"(verdict {fb.verdict} ignored); check the dedup_key against the incidents topic"
        )
    inc.verdict = fb.verdict
    members = {(a.signal.name, a.segment) for a in inc.anomalies}
    if fb.verdict == "false_alarm":
        engine.require_more_evidence(members, because=f"false alarm on {inc.key}")
    elif fb.verdict == "new_normal":
        engine.rebaseline(members, because=f"new normal after {inc.key}")
    if not inc.is_open:
        return [], f"feedback {fb.event_id}: {fb.verdict} recorded on resolved incident {inc.key}"
    if fb.verdict in ("false_alarm", "new_normal"):
        engine.close(members)
        return [manager.resolve_now(inc, at_ms)], (
            f"feedback {fb.event_id}: {fb.verdict}: incident {inc.key} resolved"
        )
    return [manager.announce(inc, at_ms)], f"feedback {fb.event_id}: {inc.key} {fb.verdict}"
