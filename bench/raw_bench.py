"""The limit: how fast a bare aiokafka consumer reads the same topics from the same broker.

``python -m bench.raw_bench [--events N] [--runs K] [--quick]`` preloads the bench data set
(:mod:`bench.dataset`) into the input topics of a fresh embedded broker and reads every input
partition from offset 0 to its end with one aiokafka consumer (partitions assigned, no group, no
decoding, no work: it only counts records), ``K`` times; it prints the median::

    raw: events=400024 runs=3 seconds=1.71 events_per_s=234000 (range ...)

The time runs from the first fetch to the record that completes the last partition. This is
the most any consumer in Python can do on this broker and machine; the worker's figure is read
against it (``ratio_raw``).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from bench import dataset as ds
from bench.harness import TP, say
from bench.stats import median, rate, spread
from streams.broker import EmbeddedBroker


def consume_all(bootstrap: str, ends: Mapping[TP, int], timeout_s: float = 300.0) -> float:
    """Read every partition of ``ends`` from 0 to its end; returns the seconds it took."""
    return asyncio.run(_consume(bootstrap, ends, timeout_s))


async def _consume(bootstrap: str, ends: Mapping[TP, int], timeout_s: float) -> float:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        group_id=None,
        fetch_max_wait_ms=100,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for (t, p), end in sorted(ends.items()) if end > 0]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        left = {(tp.topic, tp.partition): ends[(tp.topic, tp.partition)] for tp in tps}
        remaining = sum(left.values())
        started = time.perf_counter()
        deadline = started + timeout_s
        while remaining > 0:
            if time.perf_counter() > deadline:
                raise TimeoutError(
                    f"the raw consumer still missed {remaining:,} records after {timeout_s:.0f} s"
                )
            batches = await consumer.getmany(timeout_ms=500, max_records=50_000)
            for tp, records in batches.items():
                key = (tp.topic, tp.partition)
                n = min(len(records), left[key])
                left[key] -= n
                remaining -= n
        return time.perf_counter() - started
    finally:
        await consumer.stop()


def run_many(bootstrap: str, ends: Mapping[TP, int], runs: int) -> list[float]:
    """Events/s of ``runs`` full reads."""
    total = sum(ends.values())
    out = []
    for i in range(runs):
        seconds = consume_all(bootstrap, ends)
        eps = rate(total, seconds)
        say(f"  raw run {i + 1}/{runs}: {total:,} records in {seconds:.2f} s = {eps:,.0f}/s")
        out.append(eps)
    return out


def main(argv: list[str] | None = None) -> int:
    from bench.worker_bench import add_data_arguments, apply_quick, load

    parser = argparse.ArgumentParser(
        prog="python -m bench.raw_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_data_arguments(parser)
    args = parser.parse_args(argv)
    apply_quick(args)
    workdir = Path(tempfile.mkdtemp(prefix="radar-bench-raw-"))
    try:
        data = ds.generate(workdir, args.events, args.scenario, args.rate)
        with EmbeddedBroker() as broker:
            loaded = load(broker, data, workdir, "bench-in")
            eps = run_many(loaded.bootstrap, loaded.ends, args.runs)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    total = sum(loaded.ends.values())
    print(
        f"raw: events={total} runs={len(eps)} seconds={total / median(eps):.2f} "
        f"events_per_s={median(eps):.0f} ({spread(eps)})",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
