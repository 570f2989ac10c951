"""Offline detection speed: ``python -m streams evaluate`` on the bench data set, events/s.

``python -m bench.evaluate_bench [--events N] [--runs K] [--quick]`` writes the bench data set
(:mod:`bench.dataset`: every input topic mixed as the simulator makes them, with its labels)
as traffic files and runs the real command ``python -m streams evaluate --input DIR
--no-progress`` on them ``K`` times, each in a fresh process. The figure is the command's own
``events_per_s`` (its last line): records read, parsed, validated against the JSON Schemas,
counted into windows and run through the detection engine and the incident manager, divided by
the time of that loop (process start-up and imports excluded; the whole process's wall time is
printed too). It prints the median::

    evaluate: events=400000 runs=3 events_per_s=55000 process_s=9.1 (median of 3, range ...)
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench import dataset as ds
from bench.harness import ROOT, base_env, say
from bench.stats import median, spread

LAST_LINE = re.compile(r"^evaluate: .*events_per_s=(\d+(?:\.\d+)?)$", re.MULTILINE)


@dataclass
class EvalRun:
    events_per_s: float
    process_s: float
    last_line: str


def parse(output: str) -> tuple[float, str]:
    """The ``events_per_s`` of an ``evaluate`` output and its last line.

    >>> parse("x\\nevaluate: detected=1/1 false_per_day=0.00 median_delay_s=10 "
    ...       "cause_correct=1/1 events_per_s=55726\\n")[0]
    55726.0
    """
    found = LAST_LINE.search(output)
    if found is None:
        raise RuntimeError(f"no 'evaluate: ... events_per_s=' line in:\n{output[-2000:]}")
    return float(found.group(1)), found.group(0)


def run_once(traffic: Path, timeout: float = 1800.0) -> EvalRun:
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "streams", "evaluate", "--input", str(traffic), "--no-progress"],
        cwd=ROOT, env=base_env(), capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    took = time.monotonic() - t0
    if proc.returncode != 0:
        raise RuntimeError(
            f"evaluate exited with {proc.returncode}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        )
    eps, line = parse(proc.stdout)
    return EvalRun(eps, took, line)


def run_many(data: ds.Dataset, runs: int) -> list[EvalRun]:
    out = []
    for i in range(runs):
        r = run_once(data.directory)
        say(
            f"  evaluate run {i + 1}/{runs}: {r.events_per_s:,.0f} events/s "
            f"(process {r.process_s:.1f} s); {r.last_line}"
        )
        out.append(r)
    return out


def main(argv: list[str] | None = None) -> int:
    from bench.worker_bench import add_data_arguments, apply_quick

    parser = argparse.ArgumentParser(
        prog="python -m bench.evaluate_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_data_arguments(parser)
    args = parser.parse_args(argv)
    apply_quick(args)
    workdir = Path(tempfile.mkdtemp(prefix="radar-bench-evaluate-"))
    try:
        data = ds.generate(workdir, args.events, args.scenario, args.rate)
        runs = run_many(data, args.runs)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    eps = [r.events_per_s for r in runs]
    print(
        f"evaluate: events={data.events} runs={len(runs)} events_per_s={median(eps):.0f} "
        f"process_s={median(r.process_s for r in runs):.1f} ({spread(eps)})",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
