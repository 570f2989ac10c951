"""The obvious approach: a Faust agent calling River HalfSpaceTrees per event, same data.

``python -m bench.naive_bench [--events N] [--runs K] [--quick]`` preloads the bench data set
(:mod:`bench.dataset`) into a fresh embedded broker and runs ``python -m bench.naive_app
worker`` (:mod:`bench.naive_app`: per event, JSON parse, features, ``MinMaxScaler |
HalfSpaceTrees`` ``score_one`` then ``learn_one``) ``K`` times, each with its own consumer group,
and prints the median::

    naive: events=400024 runs=3 seconds=80.2 events_per_s=4990 (range ...)

It is timed exactly as the worker (:mod:`bench.worker_bench`): from the process's ``Ready`` to
the moment its committed offsets reach the end of every input partition (commit interval 0.5 s,
so the end is seen at most ~0.6 s late). It has no second stage, so nothing else is waited for.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from bench import dataset as ds
from bench.harness import say
from bench.stats import median, spread
from bench.worker_bench import Loaded, Run, add_data_arguments, apply_quick, load, run_once
from streams.broker import EmbeddedBroker

MODULE = "bench.naive_app"


def run_many(loaded: Loaded, runs: int, commit_interval: float = 0.5) -> list[Run]:
    out = []
    for i in range(runs):
        r = run_once(loaded, f"naive{i}", commit_interval, module=MODULE)
        say(
            f"  naive run {i + 1}/{runs}: {r.events:,} events in {r.seconds:.2f} s = "
            f"{r.eps:,.0f}/s; {r.incidents:,} events reported as anomalous"
        )
        out.append(r)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.naive_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_data_arguments(parser)
    args = parser.parse_args(argv)
    apply_quick(args)
    workdir = Path(tempfile.mkdtemp(prefix="radar-bench-naive-"))
    try:
        data = ds.generate(workdir, args.events, args.scenario, args.rate)
        with EmbeddedBroker() as broker:
            loaded = load(broker, data, workdir, "bench-in")
            runs = run_many(loaded, args.runs)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    eps = [r.eps for r in runs]
    print(
        f"naive: events={runs[0].events} runs={len(runs)} "
        f"seconds={median(r.seconds for r in runs):.2f} events_per_s={median(eps):.0f} "
        f"({spread(eps)})",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
