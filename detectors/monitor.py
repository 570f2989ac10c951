"""Per-service transaction monitoring: rollups, detection, attribution, incident lifecycle.

Fed complete windows (see :mod:`detectors.windows`), one service at a time, in window
order. For each window it

1. rolls the per-cell counts (a cell is service x partner bank x region x channel) up to
   the segments an operator talks about: the whole service, each partner bank, each region
   and each channel;
2. scores every segment's success rate with its own :class:`~detectors.rates.SuccessRateDrop`
   (score first, then learn; anomalous windows are not learned);
3. attributes: a flagged segment whose drop disappears once the cells of another flagged
   segment are removed is *explained* by it, so a collapse at one bank is reported at that
   bank, not also at every region, channel and the service it touches;
4. runs an :class:`~detectors.lifecycle.IncidentLifecycle` per segment and returns the
   incidents that opened or resolved.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from detectors.lifecycle import IncidentLifecycle
from detectors.rates import RateEvidence, SuccessRateDrop
from detectors.windows import AssembledWindow, Counts, add_counts

#: Counters kept per cell for the transactions signal, in this order.
TXN_COUNTERS: tuple[str, ...] = ("success", "failed", "pending", "completed_late")
TXN_INDEX: dict[str, int] = {name: i for i, name in enumerate(TXN_COUNTERS)}

#: The dimensions of a transaction cell, in key order. Missing values are written "-".
CELL_DIMENSIONS: tuple[str, ...] = ("service", "partner_bank", "region", "channel")
#: Rollup dimensions, most specific cause first (used to break ties in attribution).
ROLLUPS: tuple[str | None, ...] = ("partner_bank", "region", "channel", None)
_SEP = "\x1f"
MISSING = "-"

SIGNAL = "transaction_success_rate"


def cell_key(service: str, partner_bank: str | None, region: str, channel: str) -> str:
    """The key of one cell, stable on the wire.

    >>> cell_key("wallet", None, "north", "app").split("\\x1f")
    ['wallet', '-', 'north', 'app']
    """
    return _SEP.join((service, partner_bank or MISSING, region, channel))


def split_cell(key: str) -> dict[str, str]:
    return dict(zip(CELL_DIMENSIONS, key.split(_SEP), strict=True))


@dataclass(frozen=True)
class Segment:
    """A rollup of cells: the service, or the service restricted on one dimension."""

    service: str
    dimension: str | None = None
    value: str | None = None

    @property
    def label(self) -> str:
        if self.dimension is None:
            return self.service
        return f"{self.service}/{self.dimension}={self.value}"

    def as_dict(self) -> dict[str, str]:
        d = {"service": self.service}
        if self.dimension is not None and self.value is not None:
            d[self.dimension] = self.value
        return d


@dataclass(frozen=True)
class IncidentChange:
    """An incident that opened or resolved in one window, with its evidence."""

    action: str  # "open" | "resolve"
    signal: str
    segment: Segment
    dedup_key: str
    opened_at_ms: int
    window_start_ms: int
    window_end_ms: int
    evidence: RateEvidence
    severity: str
    cause: str
    cause_class: str
    summary: str
    windows_open: int


@dataclass
class _Rollup:
    counts: Counts
    cells: set[str] = field(default_factory=set)


def _rate_input(counts: Counts) -> dict[str, int]:
    ok = counts[TXN_INDEX["success"]]
    return {"successes": ok, "trials": ok + counts[TXN_INDEX["failed"]]}


_PRIORITY = {dim: i for i, dim in enumerate(ROLLUPS)}


class TransactionMonitor:
    """Success-rate monitoring of every segment of every service, with incidents.

    Parameters
    ----------
    window_ms
        Window length (for the window end written on incidents).
    detector_params
        Keyword arguments for each segment's :class:`SuccessRateDrop`.
    lifecycle_params
        Keyword arguments for each segment's :class:`IncidentLifecycle`.
    normal_score
        A window scoring below this (or with a drop under half of ``min_drop``) counts as
        clearly normal for the resolve hold-down.
    """

    def __init__(
        self,
        window_ms: int,
        detector_params: Mapping[str, Any] | None = None,
        lifecycle_params: Mapping[str, Any] | None = None,
        normal_score: float = 2.0,
    ) -> None:
        self.window_ms = window_ms
        self.detector_params = dict(detector_params or {})
        self.lifecycle_params = dict(lifecycle_params or {})
        self.normal_score = normal_score
        self.detectors: dict[Segment, SuccessRateDrop] = {}
        self.lifecycles: dict[Segment, IncidentLifecycle] = {}
        self.windows_seen = 0

    def detector(self, segment: Segment) -> SuccessRateDrop:
        det = self.detectors.get(segment)
        if det is None:
            det = self.detectors[segment] = SuccessRateDrop(**self.detector_params)
        return det

    def process(self, window: AssembledWindow) -> list[IncidentChange]:
        """Score one complete window of every service; return incidents opened/resolved."""
        self.windows_seen += 1
        changes: list[IncidentChange] = []
        for service in sorted(window.groups):
            changes.extend(self._process_service(window, service, window.groups[service]))
        return changes

    def _process_service(
        self, window: AssembledWindow, service: str, cells: Mapping[str, Counts]
    ) -> list[IncidentChange]:
        rollups = self._rollup(service, cells)
        flagged: dict[Segment, RateEvidence] = {}
        evidence: dict[Segment, RateEvidence] = {}
        for seg, roll in rollups.items():
            det = self.detector(seg)
            x = _rate_input(roll.counts)
            evidence[seg] = det.explain(x)
            if det.is_anomalous(x):
                flagged[seg] = evidence[seg]
        roots = self._attribute(flagged, rollups, cells)
        changes = []
        end_ms = window.start_ms + self.window_ms
        for seg in sorted(rollups, key=lambda s: s.label):
            det = self.detector(seg)
            x = _rate_input(rollups[seg].counts)
            ev = evidence[seg]
            # Clearly normal: not flagged, judged by a warm baseline, and no real drop.
            normal = (
                seg not in flagged
                and ev.warm
                and (ev.score < self.normal_score or ev.drop < det.min_drop / 2)
            )
            life = self.lifecycles.get(seg)
            if life is None:
                life = self.lifecycles[seg] = IncidentLifecycle(**self.lifecycle_params)
            transition = life.update(end_ms, anomalous=seg in roots, normal=normal)
            det.learn_one(x)  # protected: a flagged window is not learned
            if transition is not None:
                changes.append(self._change(transition, seg, window.start_ms, end_ms, ev))
        return changes

    def _rollup(self, service: str, cells: Mapping[str, Counts]) -> dict[Segment, _Rollup]:
        out: dict[Segment, _Rollup] = {}
        for key, counts in cells.items():
            dims = split_cell(key)
            for dim in ROLLUPS:
                seg = Segment(service) if dim is None else Segment(service, dim, dims[dim])
                if dim is not None and dims[dim] == MISSING:
                    continue
                roll = out.get(seg)
                if roll is None:
                    roll = out[seg] = _Rollup([0] * len(counts))
                add_counts(roll.counts, counts)
                roll.cells.add(key)
        return out

    def _attribute(
        self,
        flagged: Mapping[Segment, RateEvidence],
        rollups: Mapping[Segment, _Rollup],
        cells: Mapping[str, Counts],
    ) -> set[Segment]:
        """The flagged segments that no other flagged segment explains."""

        def explains(b: Segment, a: Segment) -> bool:
            # Does removing b's cells from a make a look normal again?
            shared = rollups[a].cells & rollups[b].cells
            if not shared:
                return False
            residual = list(rollups[a].counts)
            for key in shared:
                for i, v in enumerate(cells[key]):
                    residual[i] -= v
            return not self.detector(a).is_anomalous(_rate_input(residual))

        roots = set()
        for a in flagged:
            explained = False
            for b in flagged:
                if b == a or not explains(b, a):
                    continue
                mutual = explains(a, b)
                if not mutual or _PRIORITY[b.dimension] < _PRIORITY[a.dimension]:
                    explained = True
                    break
            if not explained:
                roots.add(a)
        return roots

    def _change(
        self, transition: Any, seg: Segment, start_ms: int, end_ms: int, ev: RateEvidence
    ) -> IncidentChange:
        severity = _severity(ev)
        cause_class, cause = _cause(seg)
        observed = "n/a" if ev.observed_rate is None else f"{ev.observed_rate:.1%}"
        failed = ev.trials - ev.successes
        if transition.action == "open":
            summary = (
                f"Transaction success rate collapsed at {seg.label}: {observed} vs "
                f"{ev.expected_rate:.1%} expected ({failed} of {ev.trials} failed)"
            )
        else:
            summary = (
                f"Transaction success rate recovered at {seg.label}: {observed} vs "
                f"{ev.expected_rate:.1%} expected"
            )
        return IncidentChange(
            action=transition.action,
            signal=SIGNAL,
            segment=seg,
            dedup_key=f"{SIGNAL}/{seg.label}/{transition.opened_at_ms}",
            opened_at_ms=transition.opened_at_ms,
            window_start_ms=start_ms,
            window_end_ms=end_ms,
            evidence=ev,
            severity=severity if transition.action == "open" else "info",
            cause=cause,
            cause_class=cause_class,
            summary=summary,
            windows_open=transition.windows_open,
        )


def _severity(ev: RateEvidence) -> str:
    if ev.drop >= 0.5:
        return "critical"
    if ev.drop >= 0.2:
        return "error"
    return "warning"


def _cause(seg: Segment) -> tuple[str, str]:
    if seg.dimension == "partner_bank":
        return "partner_bank_failure", f"transactions through partner bank {seg.value} failing"
    if seg.dimension == "region":
        return "regional_failure", f"transactions in region {seg.value} failing"
    if seg.dimension == "channel":
        return "channel_failure", f"transactions on channel {seg.value} failing"
    return "service_failure", f"transactions failing across {seg.service}"
