"""``evaluate --report DIR``: a plot per labelled incident and per false incident, and an index.

Two parts:

* :class:`SeriesRecorder`, the :class:`~detectors.engine.DetectionEngine` observer, keeps the
  scored points the plots need, with memory bounded whatever the length of the input:

  - labels are known up front: from ``margin`` before a label starts to ``margin`` after it
    ends, every series (signal, segment) of the segments the label names is kept, each window
    explained (observed, expected, bounds);
  - incidents are not: every series has a ring buffer of its last ``margin`` of windows (the
    observed value and score of each; the expected value and bounds of every
    ``explain_every``-th window and of every flagged one, since ``explain`` costs far more
    than scoring). When an incident opens, the series it names (at most ``max_series``, the
    strongest first) take the ring's contents and are kept, each window explained, until
    ``margin`` after it resolves. Kept are the incidents near a label (at most
    ``max_per_label`` each) and the first ``max_false`` others;
  - a kept series holds at most ``max_span`` of windows; after that only its last ``margin``
    (so the resolve still shows), and the plot shows the gap.

  So the recorder holds at most ``series x margin`` ring points plus
  ``(labels x named series + pinned incidents x max_series) x (max_span + margin)`` kept ones.

* :func:`write_report` draws the plots (matplotlib, Agg backend, imported only here) and
  ``index.md``.

>>> r = SeriesRecorder([], window_ms=10_000, margin_ms=60_000)
>>> r.ring_len
6
"""

from __future__ import annotations

import os
import re
import tempfile
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from detectors.engine import Segment, Signal
from detectors.incidents import Incident, IncidentUpdate
from streams.errors import RadarError

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from streams.evaluate import Label, Match, RunStats

Key = tuple[str, Segment]  # (signal name, segment)

MINUTE_MS = 60_000


class Point(NamedTuple):
    """One scored window of one series. ``expected``, ``lower`` and ``upper`` are None where
    the window was not explained (ring buffer, between samples); ``observed`` is None for a
    rate without trials."""

    t: int
    observed: float | None
    expected: float | None
    lower: float | None
    upper: float | None
    score: float
    flagged: bool
    trials: int | None = None  # rates: the window's trials (for the pooled rate)


@dataclass
class Series:
    """A kept series: its points in time order, then (past the cap) only its latest ones."""

    key: Key
    points: list[Point] = field(default_factory=list)
    tail: deque[Point] | None = None
    dropped: int = 0  # windows between ``points`` and ``tail`` that were not kept

    @property
    def last_t(self) -> int | None:
        if self.tail:
            return self.tail[-1].t
        return self.points[-1].t if self.points else None

    def all_points(self) -> list[Point]:
        return self.points + list(self.tail or ())

    def max_score(self, lo: int, hi: int) -> float:
        return max((p.score for p in self.all_points() if lo <= p.t <= hi), default=0.0)

    def flagged_in(self, lo: int, hi: int) -> bool:
        return any(p.flagged for p in self.all_points() if lo <= p.t <= hi)


@dataclass
class Pinned:
    """An incident whose series are kept, and why (near which labels, or false)."""

    incident: Incident
    keys: list[Key] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)  # label ids it opened near


def _named_segments(segments: Sequence[Mapping[str, str]]) -> set[Segment]:
    """The engine's segments a label names: ``{"service": s, "operator": o}`` is the operator
    segment of ``s``; a bare service is the service's total."""
    out: set[Segment] = set()
    for seg in segments:
        service = seg.get("service")
        if service is None:
            continue
        dims = [(k, v) for k, v in seg.items() if k != "service"]
        if not dims:
            out.add(Segment(service))
        out.update(Segment(service, k, str(v)) for k, v in dims)
    return out


def _cheap_observed(x: Mapping[str, Any]) -> tuple[bool, float | None]:
    """``(known, observed)`` from a detector input without explaining it: rates and counts
    are plain; other inputs (invariants judge a span) need ``explain``."""
    trials = x.get("trials")
    if trials is not None:
        return True, (x.get("successes", 0) / trials if trials else None)
    count = x.get("count")
    if count is not None and "sum" not in x:  # with a sum, a latency: its mean is explained
        return True, float(count)
    return False, None


def _explained(t: int, x: Mapping[str, Any], score: float, flagged: bool, det: Any) -> Point:
    ev = det.explain(x)
    observed = ev.observed
    return Point(
        t,
        None if observed is None else float(observed),
        float(ev.expected),
        float(ev.lower_bound),
        float(ev.upper_bound),
        float(score),
        flagged,
        _trials(x),
    )


def _trials(x: Mapping[str, Any]) -> int | None:
    trials = x.get("trials")
    return None if trials is None else int(trials)


class SeriesRecorder:
    """The engine observer behind ``--report`` (see the module docstring for what it keeps).

    Parameters
    ----------
    labels
        The labelled incidents (``streams.evaluate.Label``), known before the run.
    window_ms
        The engine's window.
    margin_ms
        Kept before and after each label and incident; also the ring buffer's span.
    explain_every
        In the ring buffer, every n-th window (and every flagged one) is explained.
    max_span_ms
        Kept per series at most (then only the last ``margin_ms``).
    max_false, max_per_label, max_series
        Incidents kept that match no label, kept near one label, series kept per incident.
    pool_ms
        Span of the running sum the plots also show for rates (the engine's ``pool_ms``).
    """

    def __init__(
        self,
        labels: Sequence[Label],
        window_ms: int,
        *,
        margin_ms: int = 30 * MINUTE_MS,
        explain_every: int = 12,
        max_span_ms: int = 12 * 60 * MINUTE_MS,
        max_false: int = 20,
        max_per_label: int = 3,
        max_series: int = 6,
        pool_ms: int = 5 * MINUTE_MS,
    ) -> None:
        self.labels = sorted(labels, key=lambda lab: lab.start)
        self.window_ms = window_ms
        self.margin_ms = margin_ms
        self.ring_len = max(1, margin_ms // window_ms)
        self.explain_every = max(1, explain_every)
        self.max_points = max(1, max_span_ms // window_ms)
        self.max_false = max_false
        self.max_per_label = max_per_label
        self.max_series = max_series
        self.pool_ms = pool_ms
        self.named = {lab.id: _named_segments(lab.segments) for lab in self.labels}
        self.recent: dict[Key, deque[Point]] = {}
        self.kept: dict[Key, Series] = {}
        #: Keep (and explain) a series while an incident holding it is open, or up to a time.
        self.open_holds: Counter[Key] = Counter()
        self.hold_until: dict[Key, int] = {}
        self.named_until: dict[Segment, int] = {}
        self.pinned: dict[int, Pinned] = {}  # id(incident) -> Pinned
        self.per_label: Counter[str] = Counter()
        self.false_pinned = 0
        self.false_unpinned = 0
        self._next_label = 0
        self._updates: list[IncidentUpdate] = []
        self._seen = 0
        self._t: int | None = None
        #: Figures for the report: points scored, explained, held now and at most.
        self.scored = 0
        self.explained = 0
        self.held = 0
        self.peak_held = 0

    # -- feeding ------------------------------------------------------------------------------

    def follow(self, updates: list[IncidentUpdate]) -> None:
        """Watch the pipeline's list of incident updates as it grows (read, never changed)."""
        self._updates = updates
        self._seen = len(updates)

    def __call__(
        self,
        signal: Signal,
        seg: Segment,
        t: int,
        x: dict[str, Any],
        score: float,
        flagged: bool,
        det: Any,
    ) -> None:
        if t != self._t:
            self._advance(t)
        self.scored += 1
        key = (signal.name, seg)
        if (
            self.open_holds.get(key, 0) > 0
            or self.hold_until.get(key, -1) >= t
            or self.named_until.get(seg, -1) >= t
        ):
            self.explained += 1
            self._keep(key, _explained(t, x, score, flagged, det))
            return
        ring = self.recent.get(key)
        if ring is None:
            ring = self.recent[key] = deque(maxlen=self.ring_len)
        known, observed = _cheap_observed(x)
        if not known or flagged or (t // self.window_ms) % self.explain_every == 0:
            self.explained += 1
            point = _explained(t, x, score, flagged, det)
        else:
            point = Point(t, observed, None, None, None, float(score), flagged, _trials(x))
        if len(ring) < self.ring_len:
            self.held += 1
        ring.append(point)

    def finish(self) -> None:
        """End of the run: take in the last incident updates (the final resolves)."""
        self._take_updates()
        self.peak_held = max(self.peak_held, self.held)

    def _advance(self, t: int) -> None:
        self._t = t
        self.peak_held = max(self.peak_held, self.held)
        while self._next_label < len(self.labels):
            lab = self.labels[self._next_label]
            if lab.start - self.margin_ms > t:
                break
            until = lab.end + self.margin_ms
            for seg in self.named[lab.id]:
                self.named_until[seg] = max(self.named_until.get(seg, until), until)
            self._next_label += 1
        if len(self._updates) > self._seen:
            self._take_updates()

    def _keep(self, key: Key, point: Point) -> None:
        series = self.kept.get(key)
        if series is None:
            series = self.kept[key] = Series(key)
        ring = self.recent.pop(key, None)
        if ring:  # the margin before: what the ring buffer still has past the kept points
            last = series.last_t
            for p in ring:
                if last is None or p.t > last:
                    self._append(series, p)
            self.held -= len(ring)
        self._append(series, point)

    def _append(self, series: Series, point: Point) -> None:
        if len(series.points) < self.max_points:
            series.points.append(point)
            self.held += 1
            return
        if series.tail is None:
            series.tail = deque(maxlen=self.ring_len)
        if len(series.tail) == self.ring_len:
            series.dropped += 1
        else:
            self.held += 1
        series.tail.append(point)

    def _take_updates(self) -> None:
        for update in self._updates[self._seen :]:
            self._on_update(update)
        self._seen = len(self._updates)

    def near_labels(self, inc: Incident) -> list[str]:
        """Ids of the labels an incident opened during, on one of their services (as
        :func:`streams.evaluate.match` pairs them)."""
        return [
            lab.id
            for lab in self.labels
            if lab.start - self.window_ms <= inc.opened_at_ms <= lab.end
            and inc.services & lab.services
        ]

    def _on_update(self, update: IncidentUpdate) -> None:
        inc = update.incident
        pinned = self.pinned.get(id(inc))
        if update.action == "open" and pinned is None:
            near = [
                lid for lid in self.near_labels(inc) if self.per_label[lid] < self.max_per_label
            ]
            if near:
                self.per_label.update(near)
            elif self.near_labels(inc):
                return  # enough incidents of that outage kept already
            elif inc.maintenance is not None:
                return  # excused, not a false incident: not plotted
            elif self.false_pinned >= self.max_false:
                self.false_unpinned += 1
                return
            else:
                self.false_pinned += 1
            pinned = self.pinned[id(inc)] = Pinned(inc, labels=near)
        if pinned is None:
            return
        if update.action == "resolve":
            for key in pinned.keys:
                if self.open_holds[key] > 0:
                    self.open_holds[key] -= 1
                until = update.at_ms + self.margin_ms
                self.hold_until[key] = max(self.hold_until.get(key, until), until)
            return
        opens = [a for a in update.anomalies if a.action == "open"]
        for a in sorted(opens, key=lambda a: -float(getattr(a.evidence, "score", 0.0))):
            key = (a.signal.name, a.segment)
            if key in pinned.keys or len(pinned.keys) >= self.max_series:
                continue
            pinned.keys.append(key)
            if inc.is_open:
                self.open_holds[key] += 1
            else:
                until = (inc.resolved_at_ms or update.at_ms) + self.margin_ms
                self.hold_until[key] = max(self.hold_until.get(key, until), until)

    # -- reading ------------------------------------------------------------------------------

    def label_keys(self, label_id: str, lo: int, hi: int) -> list[Key]:
        """Kept series of the segments a label names that have points in ``[lo, hi]``, those
        flagged there first, then by their highest score."""
        named = self.named.get(label_id, set())
        keys = [
            k
            for k, s in self.kept.items()
            if k[1] in named and any(lo <= p.t <= hi for p in s.all_points())
        ]
        return sorted(
            keys,
            key=lambda k: (
                not self.kept[k].flagged_in(lo, hi),
                -self.kept[k].max_score(lo, hi),
                k[0],
                k[1],
            ),
        )

    def figures(self) -> str:
        return (
            f"recorder held at most {self.peak_held:,} of {self.scored:,} scored points "
            f"({len(self.kept)} series kept, {len(self.recent)} ring buffers of "
            f"{self.ring_len} windows; {self.explained:,} explained)"
        )


# -- the report directory ---------------------------------------------------------------------


def prepare_report_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if needed and check a file can be written in it; before
    the run, so a bad ``--report`` fails at once rather than after an hour of evaluation."""
    if path.exists() and not path.is_dir():
        raise RadarError(
            f"--report {path} is an existing file, not a directory; give a directory path "
            "(it is created if missing)"
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise RadarError(
            f"--report {path} cannot be used as the report directory ({exc.strerror or exc}); "
            "give a writable directory path (it is created if missing)"
        ) from None
    return path


def utc(ms: int, fmt: str = "%Y-%m-%dT%H:%M:%SZ") -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime(fmt)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


@dataclass
class Plot:
    path: Path
    heading: str
    line: str


@dataclass
class Written:
    """What :func:`write_report` wrote."""

    directory: Path
    plots: list[Plot]
    index: Path
    notes: list[str]
    figures: str

    def summary(self) -> str:
        n = len(self.plots)
        return (
            f"report: {n} plot{'' if n == 1 else 's'} and index.md in {self.directory} "
            f"({self.figures})"
        )


def _clip(lo: int, hi: int, stats: RunStats, window_ms: int) -> tuple[int, int]:
    """``[lo, hi]`` within the input's time range (a margin past the data shows nothing)."""
    if stats.first_ms is not None and stats.last_ms is not None:
        lo = max(lo, stats.first_ms - stats.first_ms % window_ms)
        hi = min(hi, stats.last_ms + window_ms)
    return lo, max(lo + window_ms, hi)


def _around(
    incidents: Sequence[Incident], lo: int, hi: int, main: Sequence[Incident]
) -> list[Incident]:
    """Incidents other than ``main`` that open or resolve in ``[lo, hi]``."""
    skip = {id(i) for i in main}
    return [
        i
        for i in incidents
        if id(i) not in skip
        and (lo <= i.opened_at_ms <= hi or lo <= (i.resolved_at_ms or lo - 1) <= hi)
    ]


def _segment_text(seg: Mapping[str, str]) -> str:
    """``wallet/partner_bank=ACB``, as :attr:`Segment.label` writes it."""
    rest = "/".join(f"{k}={v}" for k, v in seg.items() if k != "service")
    service = seg.get("service", "")
    return f"{service}/{rest}" if service and rest else service or rest


def _delay(m: Match) -> str:
    return "MISSED" if m.delay_s is None else f"detected after {m.delay_s:.0f} s"


def write_report(
    report_dir: Path,
    recorder: SeriesRecorder,
    matches: Sequence[Match],
    incidents: Sequence[Incident],
    stats: RunStats,
    window_ms: int,
    summary_lines: Sequence[str],
) -> Written:
    """Draw a PNG per labelled incident and per plotted false incident, and ``index.md``."""
    import matplotlib

    matplotlib.use("Agg")
    from streams.evaluate import duplicates, false_incidents, label_line

    margin = recorder.margin_ms
    plots: list[Plot] = []
    notes: list[str] = []
    dups = duplicates(matches, incidents, window_ms)
    labels = [m.label for m in matches]
    for m in matches:
        lab = m.label
        related = [m.incident] if m.incident is not None else []
        related += [
            i
            for i in incidents
            if id(i) in dups
            and id(i) in recorder.pinned
            and lab.id in recorder.pinned[id(i)].labels
        ]
        hi_ms = max([lab.end, *(i.resolved_at_ms or i.opened_at_ms for i in related)])
        lo, hi = lab.start - margin, hi_ms + margin
        # Panels: up to half for the series that name the incidents' cause, then those of the
        # label's segments (flagged first: a wrong cause or a miss shows there), then the rest.
        pinned_keys = [k for i in related for k in recorder.pinned[id(i)].keys]
        causes = {(a.signal.name, a.segment) for i in related for a in i.anomalies
                  if a.action == "open" and a.cause_class == i.cause_class}  # fmt: skip
        named = recorder.label_keys(lab.id, lo, hi)  # flagged first, then by score
        cause_keys = [k for k in pinned_keys if k in causes]
        half = max(1, recorder.max_series // 2)
        keys: list[Key] = []
        for k in [*cause_keys[:half], *named, *cause_keys, *pinned_keys]:
            if k not in keys:
                keys.append(k)
        found = m.incident.cause_class if m.incident is not None else "nothing"
        where = ", ".join(_segment_text(s) for s in lab.segments)
        caught = (
            f"; the incident names {', '.join(s.label for s in m.incident.cause_segments()[:4])}"
            if m.incident is not None
            else ""
        )
        title = (
            f"{lab.id} ({lab.scenario or 'no scenario'}): cause expected {lab.cause}, "
            f"found {found}; {_delay(m)}\nlabelled: {where}{caught}"
        )
        path = report_dir / f"label-{_slug(lab.id)}.png"
        lo, hi = _clip(lo, hi, stats, window_ms)
        windows = [(lb.start, lb.end) for lb in labels if lb.start <= hi and lb.end >= lo]
        others = _around(incidents, lo, hi, related)
        if not _draw(path, title, recorder, keys, (lo, hi), windows, related, others):
            notes.append(
                f"{lab.id}: no plot, no scored window of the series to show from "
                f"{utc(lab.start - margin)} to {utc(hi_ms + margin)} (the input runs from "
                f"{utc(stats.first_ms or 0)} to {utc(stats.last_ms or 0)})"
            )
            continue
        plots.append(Plot(path, f"{lab.id} ({lab.scenario})", label_line(m).strip()))
    false = false_incidents(matches, incidents, window_ms)
    drawn = 0
    for n, inc in enumerate(false, 1):
        pinned = recorder.pinned.get(id(inc))
        if pinned is None:
            continue
        end = inc.resolved_at_ms if inc.resolved_at_ms is not None else stats.last_ms or 0
        lo, hi = inc.opened_at_ms - margin, max(end, inc.opened_at_ms) + margin
        lasted = (
            f"resolved after {(inc.resolved_at_ms - inc.opened_at_ms) / 1000:.0f} s"
            if inc.resolved_at_ms is not None
            else "still open at the end"
        )
        title = (
            f"false incident {n}: {inc.key}, cause {inc.cause_class}; opened "
            f"{utc(inc.opened_at_ms)}, {lasted}"
        )
        path = report_dir / f"false-{n:03d}-{_slug(inc.key)}.png"
        lo, hi = _clip(lo, hi, stats, window_ms)
        windows = [(lb.start, lb.end) for lb in labels if lb.start <= hi and lb.end >= lo]
        others = _around(incidents, lo, hi, [inc])
        if _draw(path, title, recorder, pinned.keys, (lo, hi), windows, [inc], others):
            drawn += 1
            line = (
                f"{inc.key} {inc.cause_class}: {', '.join(inc.signals)} "
                f"({', '.join(s.label for s in inc.segments[:3])})"
            )
            plots.append(Plot(path, f"false incident {n}: {inc.key}", line))
    if len(false) > drawn:
        notes.append(
            f"{len(false) - drawn} of {len(false)} false incidents not plotted (only the first "
            f"{recorder.max_false} are recorded)"
        )
    index = report_dir / "index.md"
    _write_index(index, plots, notes, summary_lines, recorder.figures())
    return Written(report_dir, plots, index, notes, recorder.figures())


def _write_index(
    index: Path, plots: Sequence[Plot], notes: Sequence[str], summary: Sequence[str], figs: str
) -> None:
    out = ["# outage-radar evaluate report", "", "```", *summary, "```", ""]
    labelled = [p for p in plots if p.path.name.startswith("label-")]
    false = [p for p in plots if p.path.name.startswith("false-")]
    for title, group in (("Labelled incidents", labelled), ("False incidents", false)):
        out += [f"## {title}", ""]
        if not group:
            out += ["none plotted", ""]
        for p in group:
            out += [f"### {p.heading}", "", f"`{p.line}`", "", f"![{p.heading}]({p.path.name})", ""]
    if notes:
        out += ["## Not plotted", "", *(f"- {n}" for n in notes), ""]
    out += [f"_{figs}_", ""]
    tmp = index.with_name(index.name + ".tmp")
    tmp.write_text("\n".join(out))
    os.replace(tmp, index)


def _draw(
    path: Path,
    title: str,
    recorder: SeriesRecorder,
    keys: Sequence[Key],
    span: tuple[int, int],
    labelled: Sequence[tuple[int, int]],
    incidents: Sequence[Incident],
    others: Sequence[Incident] = (),
) -> bool:
    """One figure, a panel per series, over ``span``: the label windows shaded, the opening
    and resolve of ``incidents`` marked (and those of ``others``, lighter). False (nothing
    written) without any point in ``span``."""
    from matplotlib.figure import Figure

    lo, hi = span
    shown = []
    for key in keys:
        series = recorder.kept.get(key)
        if series is None:
            continue
        pts = [p for p in series.points if lo <= p.t <= hi]
        tail = [p for p in series.tail or () if lo <= p.t <= hi]
        if pts or tail:
            shown.append((key, pts, tail))
    if not shown:
        return False
    if len(shown) > recorder.max_series:
        title += f"\n(the first {recorder.max_series} of {len(shown)} series are shown)"
        shown = shown[: recorder.max_series]
    fig = Figure(figsize=(11, 1.0 + 2.3 * len(shown)), dpi=100, layout="constrained")
    axes = fig.subplots(len(shown), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (key, pts, tail) in zip(axes, shown, strict=True):
        _panel(ax, key, pts, tail, recorder.window_ms, recorder.pool_ms)
        for start, end in labelled:
            ax.axvspan(*_x((max(start, lo), min(end, hi))), color="orange", alpha=0.15,
                       label="labelled window")  # fmt: skip
        for inc in others:
            _marks(ax, inc, lo, hi, ("purple", "purple"), "other incident ", 0.8)
        for inc in incidents:
            _marks(ax, inc, lo, hi, ("red", "green"), "incident ", 1.2)
    legend: dict[str, Any] = {}  # one legend for every panel: what any of them shows
    for ax in axes:
        for handle, text in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(text, handle)
    axes[0].legend(list(legend.values()), list(legend), loc="upper left",
                   bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False)  # fmt: skip
    _time_axis(axes[-1], lo, hi)
    fig.suptitle(_wrap(title), fontsize=10, x=0.01, ha="left")
    fig.savefig(path)
    return True


def _marks(
    ax: Axes, inc: Incident, lo: int, hi: int, colors: tuple[str, str], name: str, lw: float
) -> None:
    if lo <= inc.opened_at_ms <= hi:
        ax.axvline(_x([inc.opened_at_ms])[0], color=colors[0], lw=lw, label=f"{name}opened")
    if inc.resolved_at_ms is not None and lo <= inc.resolved_at_ms <= hi:
        ax.axvline(_x([inc.resolved_at_ms])[0], color=colors[1], lw=lw, ls="--",
                   label=f"{name}resolved")  # fmt: skip


def _wrap(title: str, width: int = 130) -> str:
    import textwrap

    return "\n".join(textwrap.fill(line, width) for line in title.splitlines())


def _time_axis(ax: Axes, lo: int, hi: int) -> None:
    import matplotlib.dates as mdates

    fmt = "%H:%M" if hi - lo <= 20 * 60 * MINUTE_MS else "%m-%d %H:%M"
    ax.xaxis.set_major_locator(mdates.AutoDateLocator(tz=UTC))
    ax.xaxis.set_major_formatter(mdates.DateFormatter(fmt, tz=UTC))
    ax.set_xlim(*_x((lo, hi)))
    ax.set_xlabel(f"event time (UTC), {utc(lo, '%Y-%m-%d %H:%M')} to {utc(hi, '%Y-%m-%d %H:%M')}")


def _x(times_ms: Sequence[int]) -> Any:
    """Matplotlib date numbers (days since 1970-01-01 UTC, its default epoch) of epoch ms."""
    import numpy as np

    return np.asarray(times_ms, dtype=float) / 86_400_000


def _y(values: Sequence[float | None]) -> Any:
    import numpy as np

    return np.asarray([np.nan if v is None else v for v in values], dtype=float)


def _pooled(rows: Sequence[Point], pool_ms: int) -> tuple[list[int], list[float | None]]:
    """The success rate over each window's last ``pool_ms`` (sum of successes over sum of
    trials), as the engine's pooled detectors judge a quiet segment."""
    times: list[int] = []
    rates: list[float | None] = []
    window: deque[tuple[int, float, int]] = deque()
    ok = n = 0.0
    for p in rows:
        if p.trials is None:
            continue
        if times and p.t - times[-1] > pool_ms:  # nothing scored for a while: break the line
            times.append(times[-1] + 1)
            rates.append(None)
        k = (p.observed or 0.0) * p.trials
        window.append((p.t, k, p.trials))
        ok, n = ok + k, n + p.trials
        while window and window[0][0] <= p.t - pool_ms:
            _, k0, n0 = window.popleft()
            ok, n = ok - k0, n - n0
        times.append(p.t)
        rates.append(ok / n if n > 0 else None)
    return times, rates


def _panel(
    ax: Axes, key: Key, pts: list[Point], tail: list[Point], window_ms: int, pool_ms: int
) -> None:

    signal, seg = key
    gap = [Point(pts[-1].t + window_ms, None, None, None, None, 0.0, False)] if pts and tail else []
    rows = pts + gap + tail
    trials = [p.trials for p in rows if p.trials is not None]
    volume = ""
    if trials:  # a rate: single windows are noisy at low volume, the running sum is not
        ax.plot(_x([p.t for p in rows]), _y([p.observed for p in rows]), color="C0", lw=0,
                marker=".", ms=4, alpha=0.7, label="observed (window)")  # fmt: skip
        pt, pr = _pooled(pts, pool_ms)
        tt, tr = _pooled(tail, pool_ms)
        if tt:
            pt, pr = [*pt, tt[0] - 1], [*pr, None]
        ax.plot(_x(pt + tt), _y(pr + tr), color="C1", lw=1.6,
                label=f"observed ({pool_ms // MINUTE_MS}-min sum)")  # fmt: skip
        volume = f" ({sum(trials) / len(rows):.1f} trials per window on average)"
    else:
        ax.plot(_x([p.t for p in rows]), _y([p.observed for p in rows]), color="C0", lw=0.8,
                marker=".", ms=3, label="observed (window)")  # fmt: skip
    known = [p for p in rows if p.expected is not None]
    if known:
        kt = _x([p.t for p in known])
        ax.fill_between(kt, _y([p.lower for p in known]), _y([p.upper for p in known]),
                        color="grey", alpha=0.18, step="post", lw=0,
                        label="expected bounds (window)")  # fmt: skip
        ax.step(kt, _y([p.expected for p in known]), where="post", color="black", lw=1.0,
                ls="--", label="expected")  # fmt: skip
    flagged = [p for p in rows if p.flagged and p.observed is not None]
    if flagged:
        ax.scatter(_x([p.t for p in flagged]), _y([p.observed for p in flagged]), color="red",
                   s=16, zorder=5, label="flagged window")  # fmt: skip
    ax.set_title(f"{signal} at {seg.label}{volume}", fontsize=9, loc="left")
    ax.set_ylabel("success rate" if trials else "count", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(True, alpha=0.3)
