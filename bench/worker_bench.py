"""Our worker's throughput: events/s from the input topics to the incidents topic, one process.

``python -m bench.worker_bench [--events N] [--runs K] [--quick]`` generates a data set
(:mod:`bench.dataset`: the simulator's mix of every input topic), preloads it into the input
topics of a fresh embedded broker, and runs ``python -m streams worker`` ``K`` times on it, each
run with its own consumer group (``RADAR_APP_ID``) and its own windows, account state, incidents
and dead-letter topics, so every run reads the same records from offset 0. It prints the median::

    worker: events=400024 runs=3 seconds=8.1 events_per_s=49400 (range 47000..51200)

**Method.** A run's time goes from the moment the worker logs ``Ready`` (topics created, group
joined, partitions assigned: the agents start fetching) to the moment the worker has processed
everything: its committed offsets reach the end of every input partition *and* of every
partition of its windows topic (stage 2 has consumed every partial count and every "closed"
marker, i.e. ran detection and published incidents for every window of the data); see
:func:`bench.harness.wait_until_processed`. The data set ends with one closing record per
(topic, partition) past the last window (:func:`bench.dataset.closing_records`), so every window
closes by event time, not by the wall-clock idle rule.

**Error bars.** Faust commits every ``broker_commit_interval``; the bench sets Faust's own
``BROKER_COMMIT_INTERVAL`` environment variable to ``--commit-interval`` (default 0.5 s, Faust's
default is 2.8 s) so the end is seen at most ~0.6 s late (commit interval + poll); the figure is
therefore a slight *under*-estimate of the throughput. The start is exact to ~50 ms (log poll).
The start-up itself (imports, topic creation, the ~3 s group join on Tansu) is not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench import dataset as ds
from bench.harness import TP, FaustProcess, GroupWatch, base_env, preload, say, wait_until_processed
from bench.stats import median, rate, spread
from streams.broker import EmbeddedBroker, create_topics, free_port
from streams.settings import INPUT_TOPICS, Settings

PARTITIONS = 4
WINDOW_MS = 10_000
LATENESS_MS = 5_000


@dataclass
class Loaded:
    """A data set published into the input topics of a broker."""

    bootstrap: str
    topics: dict[str, str]  # input kind -> topic name
    ends: dict[TP, int]
    data: ds.Dataset
    workdir: Path

    @property
    def events(self) -> int:
        return sum(self.ends.values())


def load(broker: EmbeddedBroker, data: ds.Dataset, workdir: Path, prefix: str) -> Loaded:
    """Create ``<prefix>-<kind>`` input topics and publish the data set and its closers."""
    topics = {kind: f"{prefix}-{kind}" for kind in INPUT_TOPICS}
    create_topics(broker.bootstrap, topics.values(), partitions=PARTITIONS)
    closers = ds.closing_records(data.records, PARTITIONS, WINDOW_MS, LATENESS_MS)
    t0 = time.monotonic()
    last = [t0]

    def progress(n: int) -> None:
        if time.monotonic() - last[0] > 5:
            last[0] = time.monotonic()
            say(f"  preload: {n:,} of {data.events:,} records")

    ends = preload(broker.bootstrap, data.records, topics, closers, progress)
    took = time.monotonic() - t0
    total = sum(ends.values())
    say(f"  preloaded {total:,} records in {took:.1f} s ({total / took:,.0f}/s)")
    return Loaded(broker.bootstrap, topics, ends, data, workdir)


@dataclass
class Run:
    events: int
    seconds: float
    incidents: int
    deadletters: int
    log_path: Path

    @property
    def eps(self) -> float:
        return rate(self.events, self.seconds)


def worker_env(loaded: Loaded, app_id: str, commit_interval: float) -> dict[str, str]:
    env = base_env()
    env.update(
        {
            "RADAR_BROKER": f"kafka://{loaded.bootstrap}",
            "RADAR_BROKER_FLAVOUR": "tansu",
            "RADAR_APP_ID": app_id,
            "RADAR_PARTITIONS": str(PARTITIONS),
            "RADAR_DATA_DIR": str(loaded.workdir / app_id),
            # Faust binds its web port even with the web server off: one per worker.
            "RADAR_WEB_PORT": str(free_port()),
            "RADAR_WINDOW_SECONDS": str(WINDOW_MS / 1000),
            "RADAR_LATENESS_SECONDS": str(LATENESS_MS / 1000),
            "RADAR_TOPIC_INCIDENTS": f"{app_id}-incidents",
            "RADAR_TOPIC_DEADLETTER": f"{app_id}-deadletter",
            "RADAR_TOPIC_WINDOWS": f"{app_id}-windows",
            # Its own account state too: another run's would tell it every account at once.
            "RADAR_TOPIC_ACCOUNT_STATE": f"{app_id}-account-state",
            # Faust's own setting (not ours): commit often, so the end is seen promptly.
            "BROKER_COMMIT_INTERVAL": str(commit_interval),
        }
    )
    for kind, name in loaded.topics.items():
        env[f"RADAR_TOPIC_{kind.upper()}"] = name
    Settings.from_env({k: v for k, v in env.items() if k.startswith("RADAR_")})  # validate
    return env


def run_once(
    loaded: Loaded,
    label: str,
    commit_interval: float = 0.5,
    timeout: float = 900.0,
    module: str = "streams",
) -> Run:
    """One ``python -m MODULE worker`` process over the whole preloaded data set (see the
    module docstring); ``module`` is ``streams`` (our worker) or ``bench.naive_app``."""
    app_id = f"bench-{label}-{uuid.uuid4().hex[:6]}"
    env = worker_env(loaded, app_id, commit_interval)
    log_path = loaded.workdir / f"{app_id}.log"
    create_topics(loaded.bootstrap, [f"{app_id}-{t}" for t in ("incidents", "deadletter")])
    with GroupWatch(loaded.bootstrap) as watch, FaustProcess(module, env, log_path) as proc:
        started = proc.start()

        def progress(done: int, total: int) -> None:
            took = time.monotonic() - started
            say(f"  {label}: {done:,} of {total:,} input records committed ({took:.0f} s)")

        internal = [f"{app_id}-windows"] if module == "streams" else []
        done = wait_until_processed(
            watch, app_id, loaded.ends, internal, timeout_s=timeout,
            alive=lambda: proc.alive, progress=progress,
        )  # fmt: skip
        seconds = done - started
        incidents = sum(watch.end_offsets(f"{app_id}-incidents").values())
        dead = sum(watch.end_offsets(f"{app_id}-deadletter").values())
    return Run(loaded.events, seconds, incidents, dead, log_path)


def run_many(loaded: Loaded, runs: int, commit_interval: float = 0.5) -> list[Run]:
    out = []
    for i in range(runs):
        r = run_once(loaded, f"worker{i}", commit_interval)
        say(
            f"  worker run {i + 1}/{runs}: {r.events:,} events in {r.seconds:.2f} s = "
            f"{r.eps:,.0f}/s; {r.incidents} incident events, {r.deadletters} dead letters"
        )
        if r.deadletters:
            say(f"  note: the worker dead-lettered {r.deadletters} records; see {r.log_path}")
        out.append(r)
    return out


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--events", type=int, default=ds.DEFAULT_EVENTS,
        help=f"records in the data set (default {ds.DEFAULT_EVENTS:,})",
    )  # fmt: skip
    parser.add_argument(
        "--rate", type=float, default=ds.DEFAULT_RATE,
        help=f"simulator peak rate, events/s (default {ds.DEFAULT_RATE:g})",
    )  # fmt: skip
    parser.add_argument(
        "--scenario", default=ds.DEFAULT_SCENARIO,
        help=f"simulator scenario (default {ds.DEFAULT_SCENARIO})",
    )  # fmt: skip
    parser.add_argument("--runs", type=int, default=3, help="runs; the median is printed")
    parser.add_argument(
        "--quick", action="store_true", help="100,000 events and 1 run (a smoke test)"
    )


def apply_quick(args: argparse.Namespace) -> None:
    if args.quick:
        args.events = min(args.events, 100_000)
        args.runs = 1
    if args.runs < 1:
        raise SystemExit(f"--runs must be at least 1, got {args.runs}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.worker_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_data_arguments(parser)
    parser.add_argument(
        "--commit-interval", type=float, default=0.5,
        help="Faust's BROKER_COMMIT_INTERVAL for the worker, seconds (default 0.5)",
    )  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args(argv)
    apply_quick(args)
    workdir = Path(tempfile.mkdtemp(prefix="radar-bench-worker-"))
    try:
        data = ds.generate(workdir, args.events, args.scenario, args.rate)
        say(f"  {data.describe()}")
        with EmbeddedBroker() as broker:
            loaded = load(broker, data, workdir, "bench-in")
            runs = run_many(loaded, args.runs, args.commit_interval)
    finally:
        if not args.keep:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
        else:
            say(f"  work directory kept: {workdir}")
    eps = [r.eps for r in runs]
    secs = median(r.seconds for r in runs)
    print(
        f"worker: events={runs[0].events} runs={len(runs)} seconds={secs:.2f} "
        f"events_per_s={median(eps):.0f} ({spread(eps)})",
        flush=True,
    )
    print(json.dumps({"worker_eps": median(eps), "runs": eps}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
