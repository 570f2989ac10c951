"""The data of a bench run: simulated traffic of every input topic, generated once.

:func:`generate` runs the simulator (:func:`simulator.simulate`, what ``python -m streams
simulate`` runs) for a scenario starting at 08:00 UTC (morning traffic, every input topic mixed
as the simulator makes them, with the scenario's outage placed inside the span), reads the files
back merged by event time and keeps the first ``events`` records and the rest of the last one's
window (cut at a window boundary, so every topic is cut at the same event time and the last
window is whole). The kept records are written again as
traffic files into ``directory/traffic`` with the labels, so ``evaluate`` reads exactly the data
that the broker benchmarks publish.

:func:`closing_records` makes one extra record per (counted input topic, partition), a copy of
the topic's last record moved to ``window + lateness + window`` after the last event. Published
after the data to every partition, they move every partition's watermark past the last window of
the data, so the worker closes every window of the data by event time alone (no wait for its
wall-clock idle rule) and the benchmarks know when the work is complete.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detectors.signals import FAMILIES
from simulator import build_plan, simulate
from streams.replay import ErrorLog, file_records, merge_by_time
from streams.settings import INPUT_TOPICS
from streams.traffic import TrafficRecord, TrafficWriter, encode_value, to_line, traffic_files

#: Default records per data set: a worker run of ~10 s at the 50k events/s target.
DEFAULT_EVENTS = 400_000
#: Default peak events/s of the simulation: ~650 events/s at 08:00, ~2,000 records per window.
DEFAULT_RATE = 1_000.0
DEFAULT_SCENARIO = "momo"
START = "2025-10-19T08:00:00Z"
START_HOUR = 8.0
#: Events per second (of event time) per unit of ``rate`` in the morning, measured; used only
#: to size the simulation, which is repeated longer when it falls short.
_MORNING_YIELD = 0.5


@dataclass
class Dataset:
    """Records in event-time order, and where they are written as traffic files."""

    directory: Path
    records: list[TrafficRecord]
    scenario: str
    rate: float
    seed: int
    labels: list[dict[str, Any]] = field(default_factory=list)

    @property
    def events(self) -> int:
        return len(self.records)

    @property
    def first_ms(self) -> int:
        return self.records[0].timestamp

    @property
    def last_ms(self) -> int:
        return self.records[-1].timestamp

    @property
    def span_s(self) -> float:
        return (self.last_ms - self.first_ms) / 1000

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(INPUT_TOPICS, 0)
        for r in self.records:
            out[r.topic] = out.get(r.topic, 0) + 1
        return out

    def describe(self) -> str:
        mix = ", ".join(f"{k} {v:,}" for k, v in self.counts().items() if v)
        return (
            f"{self.events:,} events of scenario {self.scenario} (seed {self.seed}, peak rate "
            f"{self.rate:g}/s) over {self.span_s / 60:.1f} min of event time: {mix}"
        )


def generate(
    directory: Path,
    events: int = DEFAULT_EVENTS,
    scenario: str = DEFAULT_SCENARIO,
    rate: float = DEFAULT_RATE,
    seed: int = 1,
    log: Callable[[str], None] | None = None,
    window_ms: int = 10_000,
) -> Dataset:
    """Simulate, keep the first ``events`` records and the rest of that record's window (so
    the last window is whole), write them to ``directory/traffic``."""
    if events < 1_000:
        raise ValueError(f"a bench data set needs at least 1000 events, got {events}")
    say = log or (lambda text: print(text, file=sys.stderr, flush=True))
    raw = directory / "simulated"
    seconds = events / (_MORNING_YIELD * rate) * 1.2
    for _attempt in range(4):
        days = min(seconds / 86_400, 0.66)  # within the day: from 08:00 to ~23:50 at most
        span_h = days * 24
        plan = build_plan(
            scenario=scenario, seed=seed, days=days, rate=rate, start=START,
            onset_hour=START_HOUR + 0.5 * span_h, duration_minutes=max(1.0, span_h * 60 / 6),
        )  # fmt: skip
        say(f"bench data: simulating {scenario} for {days * 24 * 60:.1f} min at rate {rate:g}")
        summary = simulate(plan, raw)
        if summary.events >= events or days >= 0.66:
            break
        seconds *= 1.6 * events / max(summary.events, 1)
    errors = ErrorLog()
    files = [p for p in traffic_files(raw) if p.name.split(".", 1)[0] in INPUT_TOPICS]
    merged = merge_by_time(file_records(p, errors) for p in files)
    records: list[TrafficRecord] = []
    cut_ms: int | None = None  # end of the window of the events-th record: whole windows only
    for record in merged:
        if cut_ms is None and len(records) >= events:
            cut_ms = records[-1].timestamp - records[-1].timestamp % window_ms + window_ms
        if cut_ms is not None and record.timestamp >= cut_ms:
            break
        records.append(record)
    if errors.total:
        raise RuntimeError(f"the simulator wrote unreadable lines: {errors.lines()}")
    if len(records) < events:
        say(f"bench data: the simulation gave {len(records):,} of {events:,} events; using them")
    out = directory / "traffic"
    write_traffic(out, records)
    labels = json.loads((raw / "labels.json").read_text())
    (out / "labels.json").write_text(json.dumps(labels, indent=2))
    shutil.rmtree(raw, ignore_errors=True)
    return Dataset(out, records, scenario, rate, seed, labels)


def write_traffic(directory: Path, records: list[TrafficRecord]) -> None:
    """Traffic files (one per topic) holding exactly ``records``."""
    with TrafficWriter(directory) as writer:
        for r in records:
            writer.write_line(r.topic, to_line(r))


def closing_records(
    records: list[TrafficRecord], partitions: int, window_ms: int, lateness_ms: int
) -> list[tuple[TrafficRecord, int]]:
    """One (record, partition) per counted input topic and partition, past the data's windows.

    Each is a copy of the topic's last record with ``event_time`` (and the Kafka timestamp) at
    ``last event + window + lateness + window``: a partition that reads it closes every window
    of the data, and the closing record's own window stays open. Topics absent from the data
    get none (their partitions are advanced by the worker's idle rule, as in production).
    """
    last: dict[str, TrafficRecord] = {}
    for r in records:
        if r.topic in FAMILIES and (r.topic != "balances" or b'"kind":"change"' in r.value):
            last[r.topic] = r  # a balance change: never an invariant violation
    if not records:
        return []
    end_ms = max(r.timestamp for r in records)
    at = end_ms - end_ms % window_ms + 2 * window_ms + lateness_ms
    out = []
    for topic, r in sorted(last.items()):
        value = json.loads(r.value)
        value["event_time"] = at
        if "event_id" in value:
            value["event_id"] = f"{value['event_id']}-bench-close"
        body = encode_value(value)
        out.extend((TrafficRecord(topic, r.key, at, body), p) for p in range(partitions))
    return out


def events_per_window(dataset: Dataset, window_ms: int) -> float:
    """Average records per event-time window of the data set."""
    windows = max(1, math.ceil((dataset.last_ms - dataset.first_ms + 1) / window_ms))
    return dataset.events / windows
