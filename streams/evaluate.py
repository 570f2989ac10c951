"""``python -m streams evaluate``: the worker's detection and incident logic on traffic files,
without Kafka, at full speed, scored against labels.

Prints, per labelled incident, whether it was detected, the delay from its start, and whether
the segment and the cause are right; then the false incidents per simulated day. The last line
is exactly::

    evaluate: detected=X/Y false_per_day=F median_delay_s=D cause_correct=C/Y events_per_s=R

``--warm-start HISTORY`` first replays earlier traffic files through the same detection path
(what :func:`detectors.pipeline.warm_start` does, read by columns as the input is, in
:mod:`streams.fastload`) so the detectors judge the first windows of the input
against learned baselines; the history's incidents are not counted. ``--report DIR`` also writes
a plot per labelled incident and per false incident, and ``DIR/index.md`` (see
:mod:`streams.report`); without it, matplotlib is not even imported.
"""

from __future__ import annotations

import itertools
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from faust.cli import AppCommand, option

from detectors.engine import DetectionEngine
from detectors.incidents import Incident, IncidentManager
from detectors.pipeline import OfflinePipeline, WarmStart
from detectors.pipeline import warm_start as pretrain
from streams.app import app, settings
from streams.errors import RadarError
from streams.gcwork import fewer_collections
from streams.progress import Progress
from streams.replay import ErrorLog, file_records, merge_by_time
from streams.schemas import validator
from streams.settings import INPUT_TOPICS
from streams.traffic import TrafficRecord, traffic_files

if TYPE_CHECKING:
    from streams.report import SeriesRecorder


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


def _validated(
    records: Iterable[TrafficRecord], stats: RunStats, errors: ErrorLog
) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(family, value)`` of the records that pass their topic's schema, as the worker's
    ingest agent would accept them; the others are counted in ``stats`` and ``errors``."""
    from fastjsonschema import JsonSchemaValueException

    checks = {kind: validator(kind) for kind in INPUT_TOPICS}
    for record in records:
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
        yield kind, value


def utc(ms: int | None) -> str:
    """``2025-10-19T08:00:00Z`` (seconds) for an epoch-ms event time; ``-`` for None."""
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class History:
    """What ``--warm-start`` read and learned."""

    source: Path
    stats: RunStats
    errors: ErrorLog
    learned: WarmStart

    def line(self) -> str:
        w = self.learned
        return (
            f"warm start: learned {w.events} history events in {w.windows} windows from "
            f"{utc(w.first_ms)} to {utc(w.last_ms)} ({self.source}; {self.stats.invalid} "
            f"invalid, {w.late} late; {w.incidents} history incidents not counted)"
        )


class _Overlap(Exception):
    def __init__(self, at_ms: int) -> None:
        self.at_ms = at_ms


def _last_timestamp(records: Iterable[TrafficRecord], last: int | None) -> int | None:
    for record in records:
        last = record.timestamp if last is None else max(last, record.timestamp)
    return last


def warm_from(
    history: Path,
    pipeline: OfflinePipeline,
    input_source: Path,
    input_first_ms: int | None,
    input_rest: Iterable[TrafficRecord],
) -> History:
    """Pre-train ``pipeline`` on the traffic files of ``history`` (read and validated as the
    input is). The history must end before the input starts (event time): otherwise a
    :class:`RadarError` gives both time ranges. ``input_rest`` is only read for that message."""
    errors = ErrorLog()
    stats = RunStats()
    records = _records(history, errors)

    def before_input() -> Iterator[TrafficRecord]:
        for record in records:
            if input_first_ms is not None and record.timestamp >= input_first_ms:
                raise _Overlap(record.timestamp)
            yield record

    t0 = time.perf_counter()
    try:
        learned = pipeline.warm_start(_validated(before_input(), stats, errors))
    except _Overlap as overlap:
        # An error path: read both to their ends, so the message gives the whole ranges.
        first = overlap.at_ms if stats.first_ms is None else stats.first_ms
        history_end = _last_timestamp(records, max(overlap.at_ms, stats.last_ms or 0))
        input_end = _last_timestamp(input_rest, input_first_ms)
        raise overlap_error(
            history, first, history_end, input_source, input_first_ms, input_end
        ) from None
    stats.seconds = time.perf_counter() - t0
    _check_learned(history, learned, stats, "--warm-start", "drop --warm-start")
    return History(history, stats, errors, learned)


def overlap_error(
    history: Path,
    first: int | None,
    history_end: int | None,
    input_source: Path,
    input_first: int | None,
    input_end: int | None,
) -> RadarError:
    """The error of a ``--warm-start`` history that does not end before the input starts."""
    return RadarError(
        f"--warm-start history {history} runs from {utc(first)} to {utc(history_end)}, "
        f"but the input {input_source} runs from {utc(input_first)} to {utc(input_end)}: "
        "the history must end before the input starts (event time). Give history that "
        f"ends before {utc(input_first)} (e.g. `python -m streams record --until ...` or "
        "`simulate --start ... --days ...` for an earlier span), or an input that starts "
        f"after {utc(history_end)}"
    )


def _check_learned(
    history: Path, learned: WarmStart, stats: RunStats, option: str, instead: str
) -> None:
    if learned.windows == 0:
        raise RadarError(
            f"{option} history {history} holds no valid event to learn from "
            f"({stats.invalid} invalid records); give traffic files of the input topics "
            f"({', '.join(INPUT_TOPICS)}) from before the input, or {instead}"
        )


def learn_history(history: Path, engine: DetectionEngine, manager: IncidentManager,
                  lateness_ms: int) -> History:  # fmt: skip
    """The worker's warm start (``RADAR_WARM_START``): pre-train ``engine`` on the traffic files
    of ``history``, read and validated as ``evaluate`` reads them; maintenance windows they
    declare go to ``manager``. Raises :class:`RadarError` if there is nothing to learn.

    Record by record, in constant memory: the worker lives on after it, and days of history
    read by columns as ``evaluate --warm-start`` reads them (twice as fast) would set its peak
    memory (measured on a day at ``--rate 20``, 1,326,102 records: 34.8 s and 906 MB peak RSS
    by columns, 65.5 s and 163 MB record by record)."""
    errors = ErrorLog()
    stats = RunStats()
    t0 = time.perf_counter()
    bar = Progress("warm start", unit="records")
    with fewer_collections():
        learned = pretrain(
            _validated(_shown(_records(history, errors), bar), stats, errors),
            engine, lateness_ms, manager,
        )  # fmt: skip
    bar.finish()
    stats.seconds = time.perf_counter() - t0
    _check_learned(history, learned, stats, "RADAR_WARM_START", "unset RADAR_WARM_START")
    return History(history, stats, errors, learned)


#: Records between two counts told to a record-by-record progress report.
SHOW_EVERY = 10_000


def _shown(records: Iterable[TrafficRecord], bar: Progress) -> Iterator[TrafficRecord]:
    """``records``, their count told to ``bar`` every :data:`SHOW_EVERY`."""
    every = SHOW_EVERY
    for n, record in enumerate(records, 1):
        if n % every == 0:
            bar.update(n)
        yield record


def run(
    source: Path,
    window_ms: int,
    lateness_ms: int,
    progress: bool = True,
    *,
    warm_start: Path | None = None,
    recorder: SeriesRecorder | None = None,
    on_history: Callable[[History], None] | None = None,
    jobs: int = 1,
) -> tuple[OfflinePipeline, RunStats, ErrorLog]:
    """Run the detection path over ``source``: the columnar fast path
    (:func:`streams.fastload.run_fast`), which gives exactly what :func:`run_records` gives
    (tested) at several times its speed; ``jobs`` processes read the files. The garbage
    collector runs less often meanwhile (:func:`streams.gcwork.fewer_collections`)."""
    from streams.fastload import run_fast

    with fewer_collections():  # see streams.gcwork for what it saves
        return run_fast(
            source, window_ms, lateness_ms, progress,
            warm_start=warm_start, recorder=recorder, on_history=on_history, jobs=jobs,
        )  # fmt: skip


def run_records(
    source: Path,
    window_ms: int,
    lateness_ms: int,
    progress: bool = True,
    *,
    warm_start: Path | None = None,
    recorder: SeriesRecorder | None = None,
    on_history: Callable[[History], None] | None = None,
) -> tuple[OfflinePipeline, RunStats, ErrorLog]:
    """Run the detection path over ``source`` record by record, as the worker's stages do;
    nothing is sent anywhere.

    ``warm_start``: traffic files replayed first, to pre-train the detectors (they must end
    before ``source`` starts); ``on_history(History)`` is called once that is done.
    ``recorder``: the engine's observer, for ``--report`` (it also follows the incident
    updates); None costs nothing.
    """
    engine = DetectionEngine(window_ms, observer=recorder)
    pipeline = OfflinePipeline(window_ms, lateness_ms, engine=engine)
    errors = ErrorLog()
    stats = RunStats()
    records = _records(source, errors)
    if warm_start is not None:
        head = next(records, None)
        first_ms = head.timestamp if head is not None else None
        if head is not None:
            records = itertools.chain([head], records)
        history = warm_from(warm_start, pipeline, source, first_ms, records)
        if on_history is not None:
            on_history(history)
    if recorder is not None:
        recorder.follow(pipeline.updates)
    t0 = time.perf_counter()
    bar = Progress("evaluate") if progress else None
    for kind, value in _validated(records, stats, errors):
        pipeline.add(kind, value)
        if bar is not None and stats.events % 10_000 == 0:
            bar.update(stats.events)
    pipeline.finish()
    if recorder is not None:
        recorder.finish()
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


def false_incidents(
    matches: Sequence[Match], incidents: Sequence[Incident], window_ms: int
) -> list[Incident]:
    """Incidents of no label (neither a label's first nor a duplicate), outside declared
    maintenance: the false alarms."""
    matched = {id(m.incident) for m in matches if m.incident is not None}
    matched |= duplicates(matches, incidents, window_ms)
    return [i for i in incidents if id(i) not in matched and i.maintenance is None]


def label_line(m: Match) -> str:
    """The report's line for one label: detected or missed, delay, segment and cause."""
    lab = m.label
    if m.incident is None:
        where = ", ".join("/".join(f"{k}={v}" for k, v in s.items()) for s in lab.segments)
        return f"  {lab.id:<12} {lab.cause:<32} MISSED    ({where})"
    inc = m.incident
    return (
        f"  {lab.id:<12} {lab.cause:<32} detected after {m.delay_s:>6.0f} s; "
        f"segment {'right' if m.segment_correct else 'WRONG'} "
        f"({', '.join(s.label for s in inc.cause_segments()[:4])}); "
        f"cause {'right' if m.cause_correct else 'WRONG'} ({inc.cause_class})"
    )


def report_lines(
    matches: Sequence[Match], incidents: Sequence[Incident], stats: RunStats, window_ms: int
) -> list[str]:
    lines = [label_line(m) for m in matches]
    matched = {id(m.incident) for m in matches if m.incident is not None}
    matched |= (dups := duplicates(matches, incidents, window_ms))
    false = false_incidents(matches, incidents, window_ms)
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


#: How ``evaluate`` reads: by columns (:func:`run`; its memory grows with the input), record
#: by record (:func:`run_records`; constant memory, 2.4 times slower on a simulated day), or
#: ``auto``: by columns when their estimated peak fits in 80 % of the memory available.
MODES = ("auto", "columns", "records")
#: The share of the available memory ``auto`` lets the columns take.
MEMORY_SHARE = 0.8


def choose_mode(mode: str, files: list[Path], available: float | None) -> tuple[str, str | None]:
    """``columns`` or ``records`` for reading ``files`` (the input's and the warm start's)
    with ``available`` bytes of memory (None: unknown, so by columns), and why records when
    ``auto`` chose them.

    >>> choose_mode("auto", [], 1e9)
    ('columns', None)
    >>> mode, why = choose_mode("auto", [], 1e6)
    >>> mode, why.split(":")[0].split(", ")[1]
    ('records', 'more than 80% of the 0.0 GB available')
    >>> choose_mode("records", [], 1e12)
    ('records', None)
    """
    from streams.fastload import BASE_BYTES, COLUMN_BYTES_PER_RECORD, columns_bytes

    if mode not in MODES:
        raise RadarError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode != "auto":
        return mode, None
    need = columns_bytes(files)
    if available is None or need <= MEMORY_SHARE * available:
        return "columns", None
    records = (need - BASE_BYTES) / COLUMN_BYTES_PER_RECORD
    return "records", (
        f"by columns these ~{records / 1e6:.1f} million records would take ~{need / 1e9:.1f} "
        f"GB, more than {MEMORY_SHARE:.0%} of the {available / 1e9:.1f} GB available: reading "
        "them record by record (constant memory, ~2.4x slower; --mode columns to insist)"
    )


def evaluate_main(
    input_dir: str,
    labels: str | None,
    window_seconds: float | None,
    progress: bool,
    report: str | None = None,
    warm_start: str | None = None,
    jobs: int | None = None,
    mode: str = "auto",
) -> int:
    from streams.fastload import available_memory, default_jobs

    source = Path(input_dir)
    if jobs is None:
        jobs = default_jobs()
    if jobs < 1:
        raise RadarError(f"--jobs must be at least 1, got {jobs}; use 1 to read in one process")
    history = Path(warm_start) if warm_start is not None else None
    files = traffic_files(source) + (traffic_files(history) if history is not None else [])
    mode, why = choose_mode(mode, files, available_memory())
    if why is not None:
        print(f"evaluate: {why}", file=sys.stderr, flush=True)
    label_path = Path(labels) if labels else None
    if label_path is None and (source / "labels.json").exists():
        label_path = source / "labels.json"
    window_ms = round((window_seconds or settings.window_seconds) * 1000)
    if window_ms <= 0:
        raise RadarError(f"--window-seconds must be positive, got {window_seconds}")
    label_list = load_labels(label_path)
    recorder = None
    report_dir = None
    if report is not None:
        from streams.report import SeriesRecorder, prepare_report_dir

        report_dir = prepare_report_dir(Path(report))  # before the run: fail fast
        recorder = SeriesRecorder(label_list, window_ms)
    summary: list[str] = []

    def say(line: str) -> None:
        summary.append(line)
        print(line, flush=True)

    def learned(history: History) -> None:
        say(history.line())
        for line in history.errors.lines():
            print(f"  history: {line}", file=sys.stderr)

    if mode == "records":
        pipeline, stats, errors = run_records(
            source, window_ms, settings.lateness_ms, progress,
            warm_start=history, recorder=recorder, on_history=learned,
        )  # fmt: skip
    else:
        pipeline, stats, errors = run(
            source, window_ms, settings.lateness_ms, progress,
            warm_start=history, recorder=recorder, on_history=learned, jobs=jobs,
        )  # fmt: skip
    incidents = pipeline.manager.incidents
    matches = match(label_list, incidents, window_ms)
    say(
        f"evaluated {stats.events} events ({stats.invalid} invalid, {pipeline.late} late) in "
        f"{stats.seconds:.1f} s; {len(incidents)} incidents; labels: "
        f"{label_path if label_path else 'none (every incident counts as false)'}"
    )
    for line in errors.lines():
        print(f"  {line}", file=sys.stderr)
    for line in report_lines(matches, incidents, stats, window_ms):
        say(line)
    last = last_line(matches, incidents, stats, window_ms)
    if recorder is not None and report_dir is not None:
        from streams.report import write_report

        t0 = time.perf_counter()
        written = write_report(
            report_dir, recorder, matches, incidents, stats, window_ms, [*summary, last]
        )
        print(f"{written.summary()} in {time.perf_counter() - t0:.1f} s", flush=True)
    print(last, flush=True)
    return 0


@app.command(
    option("--input", "input_dir", required=True, help="Directory (or file) of traffic files."),
    option("--labels", default=None, help="labels.json (default: INPUT/labels.json if there)."),
    option("--window-seconds", type=float, default=None, help="Window (default: the setting)."),
    option("--progress/--no-progress", default=True, help="Progress on stderr."),
    option(
        "--report", default=None, metavar="DIR",
        help="Also write a plot per labelled and per false incident, and DIR/index.md.",
    ),
    option(
        "--warm-start", "warm_start", default=None, metavar="HISTORY",
        help="Traffic files (directory or file) from before the input: replayed first so the "
        "detectors start warm; their incidents are not counted.",
    ),
    option(
        "--jobs", type=int, default=None, metavar="N",
        help="Processes that read and count the input files by columns (default: the cores, "
        "at most 4; 1 reads in this process, one decoded piece of a file (64 MB) at a time).",
    ),
    option(
        "--mode", type=click.Choice(MODES), default="auto", show_default=True,
        help="columns: fast, memory grows with the input (~500 bytes a record); records: "
        "record by record in constant memory, ~2.4x slower; auto: columns if they fit in "
        f"{MEMORY_SHARE:.0%} of the memory available.",
    ),
)  # fmt: skip
async def evaluate(
    self: AppCommand,
    input_dir: str,
    labels: str | None,
    window_seconds: float | None,
    progress: bool,
    report: str | None,
    warm_start: str | None,
    jobs: int | None,
    mode: str,
) -> None:
    """Run detection offline on traffic files and score it against labels."""
    try:
        code = evaluate_main(
            input_dir, labels, window_seconds, progress, report, warm_start, jobs, mode
        )
    except RadarError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code)
