"""Run a plan: generate slice by slice, stream the lines to disk, write the labels.

Output directory (``out_dir``)::

    transactions.jsonl  logins.jsonl  otp.jsonl  balances.jsonl  complaints.jsonl
    requests.jsonl  maintenance.jsonl  feedback.jsonl     (.jsonl.gz with compress=True)
    labels.json   the labelled incidents (DESIGN.md's contract)
    benign.json   the unlabelled benign events (what must *not* page anyone)

Every topic gets a file, possibly empty. Lines of each file are in non-decreasing event time.
Memory is bounded by one slice of records plus the records scheduled for later slices (OTP
stages up to ten minutes ahead, pending transfers up to their settlement).
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from simulator.conditions import Conditions
from simulator.generate import TOPICS, Platform
from simulator.plan import SimulationPlan
from simulator.scenarios import Benign, Incident
from streams.traffic import TrafficWriter, line_for

__all__ = ["ProgressCallback", "SimulationSummary", "simulate"]

#: ``progress(simulated_ms_done, simulated_ms_total, events_written)``, called after each slice.
ProgressCallback = Callable[[int, int, int], None]


@dataclass
class SimulationSummary:
    """What a run wrote."""

    out_dir: Path
    counts: dict[str, int]
    labels: list[dict[str, Any]]
    benign: list[dict[str, Any]]
    files: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def events(self) -> int:
        return sum(self.counts.values())

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


#: Lines per write: big enough to amortise the call, small enough that the joined text does
#: not cost fresh memory pages every time (much faster than one write per slice).
WRITE_CHUNK = 1024


def _write_lines(writer: TrafficWriter, topic: str, lines: list[str]) -> None:
    """Write ``lines`` in chunks (``write_line`` adds each chunk's final newline)."""
    for i in range(0, len(lines), WRITE_CHUNK):
        chunk = lines[i : i + WRITE_CHUNK]
        writer.write_line(topic, "\n".join(chunk))
        writer.counts[topic] += len(chunk) - 1


def _ensure_file(writer: TrafficWriter, topic: str) -> Path:
    """The topic's file, created empty (gzip: a valid empty member, mtime 0) if never written."""
    path = writer.path_for(topic)
    if topic not in writer.counts:
        writer.directory.mkdir(parents=True, exist_ok=True)
        if writer.compress:
            with (
                path.open("wb") as raw,
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0),
            ):
                pass
        else:
            path.write_bytes(b"")
    return path


def _queue_records(
    platform: Platform, topic: str, key_field: str, values: list[dict[str, Any]]
) -> None:
    prefix = platform.t.event_prefix + topic[0]
    for value in values:
        n = platform.ids[topic]
        platform.ids[topic] = n + 1
        record = {"event_id": f"{prefix}{n}", **value}
        ts = int(record["event_time"])
        platform.outbox.add(
            topic, np.array([ts]), [line_for(topic, str(record[key_field]), ts, record)]
        )


def simulate(
    plan: SimulationPlan,
    out_dir: str | Path,
    *,
    compress: bool = False,
    progress: ProgressCallback | None = None,
) -> SimulationSummary:
    """Generate the traffic of ``plan`` into ``out_dir`` and return what was written.

    Existing files of the same names (``<topic>.jsonl`` and ``<topic>.jsonl.gz`` of the input
    topics, ``labels.json``, ``benign.json``) are replaced; nothing else in ``out_dir`` is
    touched. Raises ``OSError`` when the directory cannot be written.
    """
    began = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for topic in TOPICS:
        for suffix in (".jsonl", ".jsonl.gz"):
            (out / (topic + suffix)).unlink(missing_ok=True)

    rng = np.random.Generator(np.random.PCG64(plan.seed))
    platform = Platform(plan, rng)
    _queue_records(platform, "maintenance", "service", plan.maintenance_records())
    _queue_records(platform, "feedback", "service", plan.feedback_records())
    effects: list[Incident | Benign] = [*plan.incidents, *plan.benign]

    total = plan.end - plan.start
    written = 0
    with TrafficWriter(out, compress=compress) as writer:
        index = 0
        t0 = plan.start
        while t0 < plan.end:
            t1 = min(t0 + plan.slice_ms, plan.end)
            cond = Conditions()
            mid = (t0 + t1) // 2
            for effect in effects:
                effect.apply(cond, mid)
            platform.step(index, t0, t1, cond)
            for topic, lines in platform.outbox.take(index).items():
                _write_lines(writer, topic, lines)
                written += len(lines)
            if progress is not None:
                progress(t1 - plan.start, total, written)
            index += 1
            t0 = t1
        files = [_ensure_file(writer, topic) for topic in TOPICS]
        counts = {topic: writer.counts.get(topic, 0) for topic in TOPICS}

    labels = plan.labels()
    benign = [ev.describe() for ev in plan.benign]
    (out / "labels.json").write_text(json.dumps(labels, indent=2) + "\n", encoding="utf-8")
    (out / "benign.json").write_text(json.dumps(benign, indent=2) + "\n", encoding="utf-8")
    return SimulationSummary(
        out, counts, labels, benign, files, seconds=time.perf_counter() - began
    )
