"""Replay throughput: N simulated transactions from a traffic file to the embedded broker.

``python -m bench.replay_bench [--events N] [--runs K]`` starts an embedded broker, writes N
demo transactions (:func:`streams.demo.traffic`) to a temporary traffic file, replays it
``K`` times at ``--speed max`` into a fresh topic each time (the whole path of the
``replay`` command: read, parse, merge, produce, flush) and prints the median::

    replay: events=100000 seconds=10.42 events_per_s=9597
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path

from streams.broker import EmbeddedBroker
from streams.demo import Collapse, DemoPlan, traffic
from streams.progress import Progress
from streams.replay import StopFlag, build_options, quiet_kafka_selector, run_replay
from streams.traffic import line_for


def write_traffic(path: Path, events: int, seed: int = 7) -> int:
    """Write ``events`` demo transactions (120 per event-time second) to ``path``."""
    plan = DemoPlan(seed=seed, minutes=events / 120 / 60 * 1.2 + 1, rate=120, collapse=Collapse())
    written = 0
    with path.open("w", encoding="utf-8") as f:
        for key, ts, value in traffic(plan):
            if written == events:
                break
            f.write(line_for("transactions", key.decode(), ts, value) + "\n")
            written += 1
    return written


def replay_once(broker: EmbeddedBroker, source: Path, topic: str) -> tuple[int, float]:
    """One ``replay --speed max`` into ``topic``; returns (events sent, seconds)."""
    broker.create_topics([topic], partitions=4)
    options = build_options(str(source), speed="max", topic_map=f"transactions={topic}")
    quiet = Progress("replay", stream=io.StringIO(), tty=False)
    started = time.perf_counter()
    code, stats = run_replay(options, StopFlag(), [broker.bootstrap], io.StringIO(), quiet)
    seconds = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"replay failed with exit code {code}: {stats.errors.lines()}")
    return stats.sent, seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="Events per run.")
    parser.add_argument("--runs", type=int, default=3, help="Runs; the median is printed.")
    args = parser.parse_args(argv)
    quiet_kafka_selector()
    with tempfile.TemporaryDirectory(prefix="radar-bench-") as tmp, EmbeddedBroker() as broker:
        source = Path(tmp) / "transactions.jsonl"
        events = write_traffic(source, args.events)
        seconds = []
        for run in range(args.runs):
            sent, took = replay_once(broker, source, f"bench-replay-{run}")
            if sent != events:
                raise SystemExit(f"run {run}: sent {sent} of {events} events")
            seconds.append(took)
        median = statistics.median(seconds)
        print(
            f"replay: events={events} seconds={median:.2f} events_per_s={events / median:.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
