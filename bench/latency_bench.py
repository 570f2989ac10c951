"""Latency: from the moment a window could first be closed to its incident on the incidents topic.

``python -m bench.latency_bench [--events N] [--runs K] [--speed S] [--quick]`` prints::

    latency: runs=3 samples=61 p50_ms=240 p99_ms=980 (p99 median of 3, range ...)

**Data.** The bench data set (:mod:`bench.dataset`: the simulator's mix of every input topic,
with the scenario's own outage) with *injected outages* so that one run yields many incident
events: the busiest partner bank's successful transactions become ``failed`` (85 %, seeded)
for :data:`OUTAGE_S` seconds of event time every :data:`PERIOD_S` seconds, after a warm-up of
:data:`WARMUP_S` seconds. Each outage opens an incident (or updates one) and its recovery
resolves it. Every incident event (open, update, resolve) is one sample.

**Method.** For each run a fresh worker (``python -m streams worker``, its own group and topics)
is started on an idle broker and, once it is ``Ready``, one process (this one) *paces* the data
set into the input topics: each record is sent when ``(event time - first event time) / S``
wall seconds have passed (``S`` = ``--speed``; 1 is real time), with an aiokafka producer
(``linger_ms=0``). The time of every produce acknowledgement is recorded with its partition and
event time. In the same event loop an aiokafka consumer (``fetch_max_wait_ms=20``, partitions
assigned, no group) reads the incidents topic and records the arrival time of every event.
After the data, the closing records of :func:`bench.dataset.closing_records` are sent and the
run drains for :data:`DRAIN_S` seconds.

An incident event's CloudEvents ``time`` is the end ``E`` of the window whose processing
produced it. The window *could first be closed* when every counted input partition had let
it go by the worker's own rules (``streams/agents/ingest.py``), i.e. at::

    t_close(E) = max over partitions p of min(
        ack of p's first record with event time >= E + L,
        ack of p's last record before that one + RADAR_IDLE_SECONDS)

(``L`` the allowed lateness; the second term is the idle rule: a partition silent that long
no longer holds windows back; a partition with no record before that time holds nothing back).
The **delay** of a sample is its arrival time minus ``t_close(E)``: everything after the data
that closes the window was on the broker: fetch waits, stage 1, the windows topic hop, the idle
timer's 1 s tick, stage 2 (detection, incident manager), the produce of the incident, and the
measuring consumer's fetch (at most ~10 ms on Tansu, whose long polls re-check after half the
wait). All times are ``loop.time()`` of this one process, so no clock is compared across
processes.

A second figure, **from the stream's close**, counts from the first acknowledged record of
*any* partition with event time >= ``E + L`` (when the producer's event time passed the
close): it adds the wait for quiet partitions (complaints, requests) to reach their next
record or their idle deadline, which depends on the traffic and on ``--speed``; at real time
(``--speed 1``) it is longer than at ``--speed 5``.

**Caveats.** ``--speed`` > 1 compresses event time so that many outages fit in a short run;
the worker then carries ``S`` times the simulated rate (printed), well below its throughput.
Per run, p50 and p99 are taken over that run's samples (with ~20 samples, p99 is close to
the maximum); the figures printed are the medians over runs, with their range.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import dataset as ds
from bench.harness import FaustProcess, GroupWatch, say
from bench.stats import median, percentile, spread
from bench.worker_bench import (
    LATENESS_MS,
    PARTITIONS,
    WINDOW_MS,
    Loaded,
    add_data_arguments,
    apply_quick,
    worker_env,
)
from detectors.signals import FAMILIES
from streams.broker import EmbeddedBroker, create_topics
from streams.settings import INPUT_TOPICS
from streams.traffic import TrafficRecord, encode_value

#: Event-time seconds before the first injected outage (detectors warm up in 6 windows).
WARMUP_S = 90
#: Event-time seconds between injected outage onsets, and each outage's length.
PERIOD_S = 60
OUTAGE_S = 20
#: Share of the bank's successful transactions turned into failures during an outage.
FAILING = 0.85
#: Wall seconds to wait for the last incidents after the data and the closers.
DRAIN_S = 8.0
#: The worker's default RADAR_IDLE_SECONDS (the bench does not change it).
IDLE_S = 5.0
DEFAULT_SPEED = 5.0


# ------------------------------------------------------------------------------- the data


def busiest_bank(records: Sequence[TrafficRecord]) -> tuple[str, str] | None:
    """(service, partner bank) with the most transactions, or ``None`` if there are none."""
    counts: Counter[tuple[str, str]] = Counter()
    for r in records:
        if r.topic == "transactions":
            v = json.loads(r.value)
            if v.get("partner_bank"):
                counts[(v["service"], v["partner_bank"])] += 1
    return counts.most_common(1)[0][0] if counts else None


def inject_outages(
    records: Sequence[TrafficRecord],
    service: str,
    bank: str,
    warmup_s: float = WARMUP_S,
    period_s: float = PERIOD_S,
    outage_s: float = OUTAGE_S,
    failing: float = FAILING,
    seed: int = 7,
) -> tuple[list[TrafficRecord], list[tuple[int, int]]]:
    """The records with ``bank``'s successes failing in periodic outages; and the outages.

    >>> r = [TrafficRecord("transactions", b"k", t * 1000, encode_value(
    ...     {"service": "s", "partner_bank": "B", "status": "success", "error_code": None}))
    ...     for t in range(0, 200)]
    >>> out, spans = inject_outages(r, "s", "B", warmup_s=100, period_s=60, outage_s=20,
    ...                             failing=1.0)
    >>> spans
    [(100000, 120000), (160000, 180000)]
    >>> [json.loads(x.value)["status"] for x in out[99:101]], len(out)
    (['success', 'failed'], 200)
    """
    if not records:
        return [], []
    rnd = random.Random(seed)
    first, last = records[0].timestamp, records[-1].timestamp
    spans = []
    onset = first + int(warmup_s * 1000)
    while onset + outage_s * 1000 <= last:
        spans.append((onset, onset + int(outage_s * 1000)))
        onset += int(period_s * 1000)
    starts = [s for s, _ in spans]
    out = []
    for r in records:
        if r.topic == "transactions" and spans:
            i = bisect.bisect_right(starts, r.timestamp) - 1
            if i >= 0 and r.timestamp < spans[i][1]:
                v = json.loads(r.value)
                if (
                    v.get("service") == service
                    and v.get("partner_bank") == bank
                    and v.get("status") == "success"
                    and rnd.random() < failing
                ):
                    v["status"] = "failed"
                    v["error_code"] = "BANK_TIMEOUT"
                    r = TrafficRecord(r.topic, r.key, r.timestamp, encode_value(v))
        out.append(r)
    return out, spans


# ------------------------------------------------------------------------- the measurement


@dataclass
class Sample:
    """One incident event: its window end, its arrival and when the window could close."""

    action: str
    subject: str
    window_end_ms: int
    arrived: float
    close: float | None  # t_close(E) by the worker's rules
    stream_close: float | None  # first ack of any record past E + L

    @property
    def delay_ms(self) -> float | None:
        return None if self.close is None else (self.arrived - self.close) * 1000

    @property
    def stream_delay_ms(self) -> float | None:
        return None if self.stream_close is None else (self.arrived - self.stream_close) * 1000


@dataclass
class Acks:
    """Per counted input partition: acknowledgement times and event times, in send order."""

    times: dict[tuple[str, int], list[float]] = field(default_factory=lambda: defaultdict(list))
    events: dict[tuple[str, int], list[int]] = field(default_factory=lambda: defaultdict(list))

    def add(self, tp: tuple[str, int], at: float, ts: int) -> None:
        self.times[tp].append(at)
        self.events[tp].append(ts)

    def close_time(self, boundary_ms: int, idle_s: float) -> tuple[float | None, float | None]:
        """(``t_close``, first ack past the boundary on any partition) for ``E + L``.

        >>> a = Acks()
        >>> for at, ts in [(1.0, 100), (2.0, 200), (3.0, 300)]:
        ...     a.add(("t", 0), at, ts)
        >>> a.add(("t", 1), 1.5, 150)
        >>> a.close_time(250, idle_s=5.0)  # partition 1 holds it back until idle at 6.5
        (6.5, 3.0)
        >>> a.close_time(250, idle_s=1.0)  # ... or at 2.5, before partition 0 passes
        (3.0, 3.0)
        >>> a.close_time(180, idle_s=1.0)
        (2.5, 2.0)
        """
        close: float | None = None
        stream: float | None = None
        for tp, events in self.events.items():
            # Event times are non-decreasing per partition (sent in event-time order, acks
            # in order per partition), so the first record at or past the boundary is found
            # by bisection; ack times are non-decreasing too.
            times = self.times[tp]
            j = bisect.bisect_left(events, boundary_ms)
            crossing = times[j] if j < len(events) else None
            if crossing is not None and (stream is None or crossing < stream):
                stream = crossing
            if j == 0:
                continue  # nothing before the boundary: this partition holds nothing back
            idle_at = times[j - 1] + idle_s
            free = idle_at if crossing is None else min(crossing, idle_at)
            close = free if close is None else max(close, free)
        return close, stream


def _iso_ms(text: str) -> int:
    return round(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


async def _pace(
    bootstrap: str,
    records: Sequence[TrafficRecord],
    closers: Sequence[tuple[TrafficRecord, int]],
    topics: Mapping[str, str],
    incidents_topic: str,
    speed: float,
    drain_s: float,
) -> tuple[Acks, list[tuple[float, dict[str, Any]]], float]:
    """Send ``records`` paced by event time, then ``closers``; collect incident arrivals.

    Returns the acks, the (arrival, event) pairs and the worst pacing lag in seconds."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    loop = asyncio.get_running_loop()
    counted = {topics[k]: k for k in FAMILIES if k in topics}
    acks = Acks()
    arrivals: list[tuple[float, dict[str, Any]]] = []
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=0, acks=1, enable_idempotence=False
    )
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=20,
        auto_offset_reset="earliest",
    )
    await producer.start()
    await consumer.start()
    stop = asyncio.Event()

    async def read_incidents() -> None:
        parts = consumer.partitions_for_topic(incidents_topic)
        while not parts:
            await consumer._client.force_metadata_update()  # a new topic
            parts = consumer.partitions_for_topic(incidents_topic)
        tps = [TopicPartition(incidents_topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=50)
            now = loop.time()
            for msgs in batches.values():
                for m in msgs:
                    arrivals.append((now, json.loads(m.value)))

    def on_ack(ts: int, fut: asyncio.Future[Any]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            return
        meta = fut.result()
        if meta.topic in counted:
            acks.add((meta.topic, meta.partition), loop.time(), ts)

    reader = asyncio.create_task(read_incidents())
    worst_lag = 0.0
    pending: list[asyncio.Future[Any]] = []
    try:
        await asyncio.sleep(0.5)  # the reader is assigned before the first incident
        base = records[0].timestamp
        t0 = loop.time()
        i, n = 0, len(records)
        while i < n:
            now = loop.time()
            due_ms = base + (now - t0) * speed * 1000
            if records[i].timestamp > due_ms:
                await asyncio.sleep(min(0.005, (records[i].timestamp - due_ms) / speed / 1000))
                continue
            worst_lag = max(worst_lag, (due_ms - records[i].timestamp) / speed / 1000)
            while i < n and records[i].timestamp <= due_ms:
                r = records[i]
                fut = await producer.send(
                    topics[r.topic], r.value, key=r.key, timestamp_ms=r.timestamp
                )
                fut.add_done_callback(lambda f, ts=r.timestamp: on_ack(ts, f))
                pending.append(fut)
                i += 1
            if len(pending) > 5_000:
                await asyncio.gather(*pending)
                pending.clear()
        for r, partition in closers:
            fut = await producer.send(
                topics[r.topic], r.value, key=r.key, partition=partition, timestamp_ms=r.timestamp
            )
            fut.add_done_callback(lambda f, ts=r.timestamp: on_ack(ts, f))
            pending.append(fut)
        await producer.flush()
        await asyncio.gather(*pending)
        await asyncio.sleep(drain_s)
    finally:
        stop.set()
        await reader
        await producer.stop()
        await consumer.stop()
    return acks, arrivals, worst_lag


@dataclass
class LatencyRun:
    samples: list[Sample]
    events: int
    wall_s: float
    worst_pacing_lag_s: float
    deadletters: int

    def delays(self) -> list[float]:
        return [d for s in self.samples if (d := s.delay_ms) is not None]

    def stream_delays(self) -> list[float]:
        return [d for s in self.samples if (d := s.stream_delay_ms) is not None]

    def p(self, q: float, stream: bool = False) -> float:
        xs = self.stream_delays() if stream else self.delays()
        return percentile(xs, q) if xs else float("nan")


def run_once(
    bootstrap: str,
    data: ds.Dataset,
    records: Sequence[TrafficRecord],
    workdir: Path,
    label: str,
    speed: float,
    drain_s: float = DRAIN_S,
) -> LatencyRun:
    """One fresh worker on fresh topics, the records paced into them (see the docstring)."""
    prefix = f"{label}-{uuid.uuid4().hex[:6]}"
    topics = {kind: f"{prefix}-{kind}" for kind in INPUT_TOPICS}
    create_topics(bootstrap, topics.values(), partitions=PARTITIONS)
    loaded = Loaded(bootstrap, topics, {}, data, workdir)
    app_id = f"bench-{prefix}"
    env = worker_env(loaded, app_id, commit_interval=0.5)
    incidents = f"{app_id}-incidents"
    create_topics(bootstrap, [incidents, f"{app_id}-deadletter"])
    closers = ds.closing_records(list(records), PARTITIONS, WINDOW_MS, LATENESS_MS)
    with FaustProcess("streams", env, workdir / f"{app_id}.log") as proc:
        proc.start()
        t0 = time.monotonic()
        acks, arrivals, lag = asyncio.run(
            _pace(bootstrap, records, closers, topics, incidents, speed, drain_s)
        )
        wall = time.monotonic() - t0
        if not proc.alive:
            raise RuntimeError(f"the worker exited during the run; log:\n{proc.log_tail()}")
    with GroupWatch(bootstrap) as watch:
        dead = sum(watch.end_offsets(f"{app_id}-deadletter").values())
    samples = []
    for arrived, event in arrivals:
        end_ms = _iso_ms(event["time"])
        close, stream = acks.close_time(end_ms + LATENESS_MS, IDLE_S)
        samples.append(
            Sample(event["data"]["event_action"], event.get("subject", ""), end_ms, arrived,
                   close, stream)
        )  # fmt: skip
    return LatencyRun(samples, len(records) + len(closers), wall, lag, dead)


def prepare(data: ds.Dataset) -> tuple[list[TrafficRecord], str]:
    """The data set with injected outages, and a description of them."""
    target = busiest_bank(data.records)
    if target is None:
        return list(data.records), "no partner bank in the data: no outage injected"
    records, spans = inject_outages(data.records, *target)
    what = (
        f"{len(spans)} injected outages of {OUTAGE_S} s every {PERIOD_S} s at "
        f"{target[0]}/partner_bank={target[1]} ({FAILING:.0%} of its successes fail)"
    )
    return records, what


def run_many(
    bootstrap: str, data: ds.Dataset, workdir: Path, runs: int, speed: float
) -> list[LatencyRun]:
    records, what = prepare(data)
    say(
        f"  latency: {len(records):,} records over {data.span_s:.0f} s of event time, paced at "
        f"{speed:g}x ({len(records) / max(data.span_s, 1) * speed:,.0f} events/s); {what}"
    )
    out = []
    for i in range(runs):
        r = run_once(bootstrap, data, records, workdir, f"lat{i}", speed)
        say(
            f"  latency run {i + 1}/{runs}: {len(r.samples)} incident events in "
            f"{r.wall_s:.0f} s; delay p50 {r.p(50):.0f} ms, p99 {r.p(99):.0f} ms, max "
            f"{max(r.delays(), default=0):.0f} ms; from the stream's close p50 "
            f"{r.p(50, True):.0f} ms, p99 {r.p(99, True):.0f} ms; pacing lag at most "
            f"{r.worst_pacing_lag_s * 1000:.0f} ms; {r.deadletters} dead letters"
        )
        out.append(r)
    return out


def summary(runs: Sequence[LatencyRun]) -> dict[str, Any]:
    """Medians over runs of the per-run percentiles, and the sample counts."""
    p50 = [r.p(50) for r in runs]
    p99 = [r.p(99) for r in runs]
    s50 = [r.p(50, True) for r in runs]
    s99 = [r.p(99, True) for r in runs]
    return {
        "runs": len(runs),
        "samples": sum(len(r.delays()) for r in runs),
        "p50_ms": median(p50),
        "p99_ms": median(p99),
        "p99_runs": p99,
        "p50_runs": p50,
        "max_ms": max((max(r.delays(), default=float("nan")) for r in runs), default=float("nan")),
        "stream_p50_ms": median(s50),
        "stream_p99_ms": median(s99),
        "stream_p99_runs": s99,
        "worst_pacing_lag_ms": max(r.worst_pacing_lag_s for r in runs) * 1000,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.latency_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_data_arguments(parser)
    parser.add_argument(
        "--speed", type=float, default=DEFAULT_SPEED,
        help=f"event-time seconds per wall second (default {DEFAULT_SPEED:g}; 1 = real time)",
    )  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args(argv)
    apply_quick(args)
    workdir = Path(tempfile.mkdtemp(prefix="radar-bench-latency-"))
    try:
        data = ds.generate(workdir, args.events, args.scenario, args.rate)
        with EmbeddedBroker() as broker:
            runs = run_many(broker.bootstrap, data, workdir, args.runs, args.speed)
    finally:
        if args.keep:
            say(f"  work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    s = summary(runs)
    print(
        f"latency: runs={s['runs']} samples={s['samples']} p50_ms={s['p50_ms']:.0f} "
        f"p99_ms={s['p99_ms']:.0f} stream_p99_ms={s['stream_p99_ms']:.0f} "
        f"(p99 {spread(s['p99_runs'])})",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
