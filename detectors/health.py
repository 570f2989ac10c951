"""The detector watching itself: an input it cannot see is an incident, never health.

:class:`InputWatch` is fed, every few seconds of wall-clock time, when each input topic last
delivered a record and how far the worker is behind on it (consumer lag, in records). It opens a
"detector blind" incident for a topic that

* has delivered records before and none for ``stale_ms`` (the producer, the network or the
  topic stopped: the engine's event-time silence signals cannot fire when no window closes), or
* is more than ``max_lag`` records behind (the worker cannot keep up: what it reports is old),

and resolves it once records flow again / the lag falls below half the bound. This is the one
place where wall-clock time decides: staleness *is* about the wall clock.

>>> watch = InputWatch(stale_ms=300_000, max_lag=100_000)
>>> watch.check(1_000_000, {"logins": 990_000}, {"logins": 0})
[]
>>> [u.action for u in watch.check(1_400_000, {"logins": 990_000}, {"logins": 0})]
['open']
>>> update = watch.check(1_405_000, {"logins": 1_404_000}, {"logins": 0})[0]
>>> update.action, update.incident.cause_class, update.incident.key
('resolve', 'detector_blind', 'worker/stale-logins/990000')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from detectors.engine import Anomaly, Segment, Signal
from detectors.incidents import Incident, IncidentUpdate

#: The segment service of the worker's own health incidents.
SELF = "outage-radar"


@dataclass(frozen=True)
class BlindEvidence:
    """What the watch saw: seconds without records (stale) or records behind (lag)."""

    observed: float
    expected: float  # the bound
    lower_bound: float | None
    upper_bound: float
    score: float  # observed / bound
    volume: float = 0.0


def _signal(name: str, what: str, words: str) -> Signal:
    return Signal(
        name, "worker", ("topic",),
        make=lambda w: None,
        x=lambda counts, t: {},
        what=what,
        cause_class=lambda seg: "detector_blind",
        cause=lambda seg: words.format(v=seg.value),
    )  # fmt: skip


STALE = _signal(
    "worker.input_stale",
    "seconds without records",
    "detector blind: input topic {v} stopped delivering records",
)
LAGGING = _signal(
    "worker.consumer_lag",
    "records behind",
    "detector blind: the worker is falling behind on input topic {v}",
)


class InputWatch:
    """Stale input topics and consumer lag, as "detector blind" incidents (wall clock, ms)."""

    def __init__(self, stale_ms: int, max_lag: int) -> None:
        if stale_ms <= 0:
            raise ValueError(f"stale_ms must be > 0, got {stale_ms!r}")
        if max_lag <= 0:
            raise ValueError(f"max_lag must be > 0 records, got {max_lag!r}")
        self.stale_ms = stale_ms
        self.max_lag = max_lag
        self.open: dict[tuple[str, str], Incident] = {}  # (signal, topic) -> incident

    def check(
        self,
        now_ms: int,
        last_record_ms: Mapping[str, int | None],
        lag: Mapping[str, int],
    ) -> list[IncidentUpdate]:
        """One look at the inputs; returns the blind incidents that open or resolve."""
        out: list[IncidentUpdate] = []
        for topic in sorted(set(last_record_ms) | set(lag)):
            last = last_record_ms.get(topic)
            if last is not None:
                silent = now_ms - last
                out += self._judge(
                    STALE, topic, now_ms, since=last, observed=silent / 1000,
                    bound=self.stale_ms / 1000, bad=silent >= self.stale_ms,
                    good=silent < self.stale_ms,
                )  # fmt: skip
            behind = lag.get(topic)
            if behind is not None:
                out += self._judge(
                    LAGGING, topic, now_ms, since=now_ms, observed=float(behind),
                    bound=float(self.max_lag), bad=behind > self.max_lag,
                    good=behind <= self.max_lag // 2,
                )  # fmt: skip
        return out

    def adopt(self, key: str, opened_at_ms: int) -> bool:
        """Take over an open blind incident published before a restart (its ``key``, as in
        ``worker/stale-logins/990000``), so that it resolves when its input recovers instead
        of being left open for ever. False if ``key`` is not a blind incident's.

        >>> watch = InputWatch(stale_ms=300_000, max_lag=100_000)
        >>> watch.adopt("worker/stale-logins/990000", 1_400_000)
        True
        >>> [(u.action, u.incident.key) for u in watch.check(1_500_000, {"logins": 1_499_000}, {})]
        [('resolve', 'worker/stale-logins/990000')]
        >>> watch.adopt("wallet/partner_bank=VCB/1", 0)
        False
        """
        head, _, rest = key.partition("/")
        kind, _, tail = rest.partition("-")
        topic, _, since = tail.rpartition("/")
        signal = {"stale": STALE, "lag": LAGGING}.get(kind)
        if head != "worker" or signal is None or not topic or not since.isdigit():
            return False
        seg = Segment(SELF, "topic", topic)
        inc = Incident(key=key, opened_at_ms=opened_at_ms)
        inc.cause_class, inc.cause = "detector_blind", signal.cause(seg)
        evidence = BlindEvidence(0.0, 0.0, None, 0.0, 0.0)
        inc.anomalies.append(
            Anomaly("open", signal, seg, opened_at_ms, opened_at_ms, opened_at_ms, evidence, 1)
        )
        inc.open_members.add((signal.name, seg))
        self.open[(signal.name, topic)] = inc
        return True

    def _judge(
        self, signal: Signal, topic: str, now_ms: int, *, since: int, observed: float,
        bound: float, bad: bool, good: bool,
    ) -> Sequence[IncidentUpdate]:  # fmt: skip
        member = (signal.name, topic)
        seg = Segment(SELF, "topic", topic)
        evidence = BlindEvidence(observed, bound, None, bound, observed / bound)
        inc = self.open.get(member)
        if inc is None and bad:
            kind = "stale" if signal is STALE else "lag"
            inc = Incident(key=f"worker/{kind}-{topic}/{since}", opened_at_ms=now_ms)
            inc.cause_class, inc.cause = "detector_blind", signal.cause(seg)
            a = Anomaly("open", signal, seg, now_ms, now_ms, now_ms, evidence, 1)
            inc.anomalies.append(a)
            inc.open_members.add((signal.name, seg))
            self.open[member] = inc
            return [IncidentUpdate("open", inc, now_ms, (a,))]
        if inc is not None and good:
            a = Anomaly("resolve", signal, seg, inc.opened_at_ms, now_ms, now_ms, evidence, 1)
            inc.anomalies.append(a)
            inc.open_members.clear()
            inc.resolved_at_ms = now_ms
            del self.open[member]
            return [IncidentUpdate("resolve", inc, now_ms, (a,))]
        return []
