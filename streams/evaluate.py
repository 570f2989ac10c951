"""``python -m streams evaluate``: the worker's detection and incident logic on traffic files,
without Kafka, at full speed, scored against labels.

Prints, per labelled incident, whether it was detected, the delay from its start, and whether
the segment and the cause are right; then the false incidents per simulated day. The last line
is exactly::

    evaluate: detected=X/Y false_per_day=F median_delay_s=D cause_correct=C/Y events_per_s=R
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from faust.cli import AppCommand, option

from detectors.incidents import Incident
from detectors.pipeline import OfflinePipeline
from streams.app import app, settings
from streams.errors import RadarError
from streams.progress import Progress
from streams.replay import ErrorLog, file_records, merge_by_time
from streams.schemas import validator
from streams.settings import INPUT_TOPICS
from streams.traffic import TrafficRecord, traffic_files


@dataclass(frozen=True)
class Label:
    id: str
    scenario: str
    start: int
    end: int
    segments: list[dict[str, str]]
    cause: str

    @property
    def services(self) -> set[str]:
        return {s["service"] for s in self.segments if "service" in s}


@dataclass
class Match:
    label: Label
    incident: Incident | None

    @property
    def detected(self) -> bool:
        return self.incident is not None

    @property
    def delay_s(self) -> float | None:
        if self.incident is None:
            return None
        return max(0, self.incident.opened_at_ms - self.label.start) / 1000

    @property
    def segment_correct(self) -> bool:
        if self.incident is None:
            return False
        named = [s.as_dict() for s in self.incident.cause_segments()]
        return any(label.items() <= seg.items() for label in self.label.segments for seg in named)

    @property
    def cause_correct(self) -> bool:
        return self.incident is not None and self.incident.cause_class == self.label.cause


def load_labels(path: Path | None) -> list[Label]:
    """Labels from ``labels.json``; a missing file is an error, ``None`` means no labels."""
    if path is None:
        return []
    try:
        raw = json.loads(path.read_text())
    except OSError as exc:
        raise RadarError(f"cannot read labels {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise RadarError(f"labels {path} are not JSON ({exc})") from None
    if not isinstance(raw, list):
        raise RadarError(
            f"labels {path} must be a JSON list of incidents, got {type(raw).__name__}"
        )
    labels = []
    for i, item in enumerate(raw):
        try:
            labels.append(
                Label(str(item["id"]), str(item.get("scenario", "")), int(item["start"]),
                      int(item["end"]), list(item["segments"]), str(item["cause"]))
            )  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise RadarError(
                f"labels {path}: item {i} needs id, start, end (epoch ms), segments and cause "
                f"({type(exc).__name__}: {exc})"
            ) from None
    return labels


def match(labels: Sequence[Label], incidents: Sequence[Incident], window_ms: int) -> list[Match]:
    """Each label's incident: the first one opening during it on one of its services."""
    out = []
    for label in labels:
        found = [
            inc
            for inc in incidents
            if label.start - window_ms <= inc.opened_at_ms <= label.end
            and inc.services & label.services
        ]
        out.append(Match(label, min(found, key=lambda i: i.opened_at_ms) if found else None))
    return out


@dataclass
class RunStats:
    events: int = 0
    invalid: int = 0
    first_ms: int | None = None
    last_ms: int | None = None
    seconds: float = 0.0

    @property
    def days(self) -> float:
        if self.first_ms is None or self.last_ms is None:
            return 0.0
        return max(self.last_ms - self.first_ms, 1) / 86_400_000


def _records(source: Path, errors: ErrorLog) -> Iterator[TrafficRecord]:
    files = [p for p in traffic_files(source) if p.name.split(".", 1)[0] in INPUT_TOPICS]
    if not files:
        raise RadarError(f"{source} holds no traffic file of an input topic ({INPUT_TOPICS})")
    return merge_by_time(file_records(p, errors) for p in files)


def run(source: Path, window_ms: int, lateness_ms: int, progress: bool = True) -> tuple[
    OfflinePipeline, RunStats, ErrorLog
]:  # fmt: skip
    """Run the detection path over ``source``; nothing is sent anywhere."""
    from fastjsonschema import JsonSchemaValueException

    pipeline = OfflinePipeline(window_ms, lateness_ms)
    errors = ErrorLog()
    stats = RunStats()
    checks = {kind: validator(kind) for kind in INPUT_TOPICS}
    t0 = time.perf_counter()
    bar = Progress("evaluate") if progress else None
    for record in _records(source, errors):
        kind = record.topic
        try:
            value = json.loads(record.value)
            checks[kind](value)
        except (ValueError, JsonSchemaValueException) as exc:
            stats.invalid += 1
            errors.add("invalid", f"{kind} record at {record.timestamp}: {exc}")
            continue
        stats.events += 1
        if stats.first_ms is None:
            stats.first_ms = record.timestamp
        stats.last_ms = record.timestamp
        pipeline.add(kind, value)
        if bar is not None and stats.events % 10_000 == 0:
            bar.update(stats.events)
    pipeline.finish()
    if bar is not None:
        bar.finish()
    stats.seconds = time.perf_counter() - t0
    return pipeline, stats, errors


def duplicates(matches: Sequence[Match], incidents: Sequence[Incident], window_ms: int) -> set[int]:
    """Incidents (by ``id``) other than a label's first that open during it on its services:
    the same outage reported twice (not a false alarm, but not one incident either)."""
    first = {id(m.incident) for m in matches if m.incident is not None}
    out = set()
    for inc in incidents:
        if id(inc) in first:
            continue
        for m in matches:
            lab = m.label
            if lab.start - window_ms <= inc.opened_at_ms <= lab.end and inc.services & lab.services:
                out.add(id(inc))
    return out


def report_lines(
    matches: Sequence[Match], incidents: Sequence[Incident], stats: RunStats, window_ms: int
) -> list[str]:
    lines = []
    matched = {id(m.incident) for m in matches if m.incident is not None}
    matched |= (dups := duplicates(matches, incidents, window_ms))
    for m in matches:
        lab = m.label
        where = ", ".join("/".join(f"{k}={v}" for k, v in s.items()) for s in lab.segments)
        if m.incident is None:
            lines.append(f"  {lab.id:<12} {lab.cause:<32} MISSED    ({where})")
            continue
        inc = m.incident
        lines.append(
            f"  {lab.id:<12} {lab.cause:<32} detected after {m.delay_s:>6.0f} s; "
            f"segment {'right' if m.segment_correct else 'WRONG'} "
            f"({', '.join(s.label for s in inc.cause_segments()[:4])}); "
            f"cause {'right' if m.cause_correct else 'WRONG'} ({inc.cause_class})"
        )
    false = [i for i in incidents if id(i) not in matched and i.maintenance is None]
    excused = sum(1 for i in incidents if id(i) not in matched and i.maintenance is not None)
    lines.append(
        f"  false incidents: {len(false)} over {stats.days:.2f} simulated days "
        f"(not counted: {excused} inside declared maintenance, reported as such; "
        f"{len(dups)} more incidents of a labelled outage)"
    )
    for inc in false[:20]:
        lines.append(
            f"    {inc.key:<28} {inc.cause_class:<30} {', '.join(inc.signals)} "
            f"({', '.join(s.label for s in inc.segments[:3])})"
        )
    if len(false) > 20:
        lines.append(f"    ... and {len(false) - 20} more")
    return lines


def last_line(
    matches: Sequence[Match], incidents: Sequence[Incident], stats: RunStats, window_ms: int
) -> str:
    detected = [m for m in matches if m.detected]
    delays = [m.delay_s for m in detected if m.delay_s is not None]
    matched = {id(m.incident) for m in detected} | duplicates(matches, incidents, window_ms)
    false = sum(1 for i in incidents if id(i) not in matched and i.maintenance is None)
    per_day = false / stats.days if stats.days else float(false)
    median = statistics.median(delays) if delays else float("nan")
    eps = stats.events / stats.seconds if stats.seconds else 0.0
    return (
        f"evaluate: detected={len(detected)}/{len(matches)} false_per_day={per_day:.2f} "
        f"median_delay_s={median:.0f} cause_correct={sum(m.cause_correct for m in matches)}"
        f"/{len(matches)} events_per_s={eps:.0f}"
    )


def evaluate_main(
    input_dir: str, labels: str | None, window_seconds: float | None, progress: bool
) -> int:
    source = Path(input_dir)
    label_path = Path(labels) if labels else None
    if label_path is None and (source / "labels.json").exists():
        label_path = source / "labels.json"
    window_ms = round((window_seconds or settings.window_seconds) * 1000)
    if window_ms <= 0:
        raise RadarError(f"--window-seconds must be positive, got {window_seconds}")
    label_list = load_labels(label_path)
    pipeline, stats, errors = run(source, window_ms, settings.lateness_ms, progress)
    incidents = pipeline.manager.incidents
    matches = match(label_list, incidents, window_ms)
    print(
        f"evaluated {stats.events} events ({stats.invalid} invalid, {pipeline.late} late) in "
        f"{stats.seconds:.1f} s; {len(incidents)} incidents; labels: "
        f"{label_path if label_path else 'none (every incident counts as false)'}"
    )
    for line in errors.lines():
        print(f"  {line}", file=sys.stderr)
    for line in report_lines(matches, incidents, stats, window_ms):
        print(line)
    print(last_line(matches, incidents, stats, window_ms), flush=True)
    return 0


@app.command(
    option("--input", "input_dir", required=True, help="Directory (or file) of traffic files."),
    option("--labels", default=None, help="labels.json (default: INPUT/labels.json if there)."),
    option("--window-seconds", type=float, default=None, help="Window (default: the setting)."),
    option("--progress/--no-progress", default=True, help="Progress on stderr."),
)
async def evaluate(
    self: AppCommand,
    input_dir: str,
    labels: str | None,
    window_seconds: float | None,
    progress: bool,
) -> None:
    """Run detection offline on traffic files and score it against labels."""
    try:
        code = evaluate_main(input_dir, labels, window_seconds, progress)
    except RadarError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code)
