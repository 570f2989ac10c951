"""``make bench``: every benchmark on this machine, one run, a table and one last line.

``python -m bench [--quick] [--runs K] [--events N] [--only NAMES]``

1. One data set (:mod:`bench.dataset`: the simulator's mix of every input topic, default
   400,000 records) is generated and written as traffic files.
2. One embedded broker is started; the data set is published once into its input topics.
   Then, ``K`` times (default 3), side by side in this order so that a change of machine load
   hits all three alike: the bare aiokafka consumer (:mod:`bench.raw_bench`, *the limit*),
   ``python -m streams worker`` (:mod:`bench.worker_bench`, *our worker*) and the naive Faust
   agent with River HalfSpaceTrees per event (:mod:`bench.naive_bench`), each on the same
   preloaded records.
3. On the same broker: the event-to-incident latency after window close
   (:mod:`bench.latency_bench`, ``K`` runs of the data set paced with injected outages) and
   the ``replay`` command's throughput (:mod:`bench.replay_bench`).
4. Without a broker: ``python -m streams evaluate`` on the same traffic files
   (:mod:`bench.evaluate_bench`), the simulator (:mod:`bench.simulate_bench`) and the detection
   engine at 1k, 10k and 100k segments (:mod:`bench.scale_bench`).

Figures are medians of the ``K`` runs with their range; the 1-minute load average
(``os.getloadavg()``) is recorded before and after each benchmark, since other work may share
the machine. A target missed says ``MISSED`` in the verdict column: the figures are never
tuned. The last line is exactly (see :mod:`bench.stats`)::

    bench: worker_eps=W raw_eps=R ratio_raw=W/R naive_eps=N ratio_naive=W/N p99_ms=L evaluate_eps=E

``--quick`` (100,000 records, 1 run, smaller offline benchmarks) is a smoke test of a few
minutes. Each benchmark is also a module of its own (``python -m bench.<name> --help``).
Figures are measured, never asserted by tests.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import platform
import re
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import dataset as ds
from bench import evaluate_bench, latency_bench, naive_bench, raw_bench, scale_bench, worker_bench
from bench.harness import say
from bench.stats import Row, fmt_eps, last_line, median, ratio, spread, table, verdict

TARGET_WORKER_EPS = 50_000
TARGET_RATIO_RAW = 0.25
TARGET_RATIO_NAIVE = 8.0
TARGET_P99_MS = 1_000
TARGET_BYTES_PER_PAIR = 50 * 1024
TARGET_EVALUATE_EPS = 1_000_000

BENCHES = ("throughput", "latency", "replay", "evaluate", "simulate", "scale")


def load1() -> float:
    return os.getloadavg()[0]


class Section:
    """Times a benchmark, records the load around it, turns an exception into a failure."""

    def __init__(self, name: str, failures: list[str]) -> None:
        self.name = name
        self.failures = failures
        self.load = (math.nan, math.nan)
        self.seconds = math.nan

    def __enter__(self) -> Section:
        say(f"== {self.name} (load average {load1():.2f})")
        self._t0 = time.monotonic()
        self._load0 = load1()
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        self.seconds = time.monotonic() - self._t0
        self.load = (self._load0, load1())
        if exc is not None:
            if isinstance(exc, KeyboardInterrupt):
                return False
            say(f"{self.name}: FAILED: {type(exc).__name__}: {exc}")
            say("".join(traceback.format_exception(exc)[-6:]))
            self.failures.append(self.name)
        say(f"   {self.name}: {self.seconds:.0f} s, load average {self.load[1]:.2f}")
        return True

    @property
    def note(self) -> str:
        a, b = self.load
        return f"load {a:.1f}->{b:.1f}"


def _pct(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:.1%}"


def _times(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:.2f}x"


def _ms(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:,.0f} ms"


def _captured(run: Callable[[list[str]], Any], argv: list[str]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        run(argv)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small data, 1 run: a smoke test")
    parser.add_argument("--runs", type=int, default=None, help="runs per figure (default 3)")
    parser.add_argument(
        "--events", type=int, default=None,
        help=f"records in the data set (default {ds.DEFAULT_EVENTS:,}; 100,000 with --quick)",
    )  # fmt: skip
    parser.add_argument(
        "--speed", type=float, default=latency_bench.DEFAULT_SPEED,
        help="pace of the latency runs, event-time seconds per wall second",
    )  # fmt: skip
    parser.add_argument(
        "--only", default=",".join(BENCHES), help=f"comma-separated subset of {','.join(BENCHES)}"
    )
    parser.add_argument("--json", default=None, help="also write every figure to this file")
    args = parser.parse_args(argv)
    runs = args.runs or (1 if args.quick else 3)
    events = args.events or (100_000 if args.quick else ds.DEFAULT_EVENTS)
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    if unknown := only - set(BENCHES):
        parser.error(f"--only: unknown {', '.join(sorted(unknown))}; choose from {BENCHES}")
    if runs < 1:
        parser.error("--runs must be at least 1")

    started = time.monotonic()
    load_start = os.getloadavg()
    say(
        f"bench: {'quick' if args.quick else 'full'} mode, {runs} run(s) per figure, "
        f"{events:,} records; {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load average {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}"
    )
    failures: list[str] = []
    fig: dict[str, Any] = {"runs": runs, "events": events, "quick": args.quick}
    rows: list[Row] = []
    workdir = Path(tempfile.mkdtemp(prefix="radar-bench-"))
    try:
        with Section("data", failures):
            data = ds.generate(workdir, events, log=say)
            say(f"  {data.describe()}")
        if "data" in failures:
            raise SystemExit(1)
        fig["data"] = data.describe()
        need_broker = only & {"throughput", "latency", "replay"}
        with contextlib.ExitStack() as stack:
            broker = None
            if need_broker:
                from streams.broker import EmbeddedBroker

                broker = stack.enter_context(EmbeddedBroker())
                say(f"  embedded broker at {broker.bootstrap}")
            if "throughput" in only and broker is not None:
                _throughput(broker, data, workdir, runs, failures, fig, rows)
            if "latency" in only and broker is not None:
                _latency(broker, data, workdir, runs, args.speed, failures, fig, rows)
            if "replay" in only and broker is not None:
                _replay(
                    broker, workdir, runs, 20_000 if args.quick else 100_000, failures, fig, rows
                )
        if "evaluate" in only:
            _evaluate(data, runs, failures, fig, rows)
        if "simulate" in only:
            _simulate(runs, args.quick, failures, fig, rows)
        if "scale" in only:
            _scale(args.quick, failures, fig, rows)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    load_end = os.getloadavg()
    took = time.monotonic() - started
    fig["load_start"], fig["load_end"], fig["seconds"] = load_start, load_end, took
    fig["date"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print()
    print(
        f"outage-radar bench, {fig['date']}, {'quick' if args.quick else 'full'} mode: "
        f"{runs} run(s) per figure (value = median, 'how' gives the range), "
        f"{os.cpu_count()} CPUs; load average (1/5/15 min) at start "
        f"{load_start[0]:.2f}/{load_start[1]:.2f}/{load_start[2]:.2f}, at end "
        f"{load_end[0]:.2f}/{load_end[1]:.2f}/{load_end[2]:.2f}; {took / 60:.1f} min"
    )
    print(f"data: {fig['data']}")
    print(table(rows))
    if failures:
        print(f"FAILED: {', '.join(failures)} (figures shown as n/a / nan)")
    if args.json:
        Path(args.json).write_text(json.dumps(fig, indent=2, default=str))
    print(
        last_line(
            fig.get("worker_eps"),
            fig.get("raw_eps"),
            fig.get("naive_eps"),
            fig.get("p99_ms"),
            fig.get("evaluate_eps"),
        ),
        flush=True,
    )
    return 1 if failures else 0


# ------------------------------------------------------------------------------ sections


def _throughput(
    broker: Any,
    data: ds.Dataset,
    workdir: Path,
    runs: int,
    failures: list[str],
    fig: dict[str, Any],
    rows: list[Row],
) -> None:
    raw: list[float] = []
    worker: list[worker_bench.Run] = []
    naive: list[worker_bench.Run] = []
    with Section("throughput: raw / worker / naive", failures) as sec:
        loaded = worker_bench.load(broker, data, workdir, "bench-in")
        for i in range(runs):
            say(f"  -- round {i + 1}/{runs}")
            raw.extend(raw_bench.run_many(loaded.bootstrap, loaded.ends, 1))
            w = worker_bench.run_once(loaded, f"worker{i}")
            say(
                f"  worker run {i + 1}/{runs}: {w.events:,} events in {w.seconds:.2f} s = "
                f"{w.eps:,.0f}/s; {w.incidents} incident events, {w.deadletters} dead letters"
            )
            worker.append(w)
            n = worker_bench.run_once(loaded, f"naive{i}", module=naive_bench.MODULE)
            say(
                f"  naive run {i + 1}/{runs}: {n.events:,} events in {n.seconds:.2f} s = "
                f"{n.eps:,.0f}/s; {n.incidents:,} events reported as anomalous"
            )
            naive.append(n)
    weps = [r.eps for r in worker]
    neps = [r.eps for r in naive]
    w, r, n = median(weps), median(raw), median(neps)
    # Ratios per round (same load, side by side), then their median.
    rr = [ratio(a.eps, b) for a, b in zip(worker, raw, strict=False)]
    rn = [ratio(a.eps, b.eps) for a, b in zip(worker, naive, strict=False)]
    fig.update(
        worker_eps=w, raw_eps=r, naive_eps=n, worker_runs=weps, raw_runs=raw, naive_runs=neps,
        worker_incident_events=[x.incidents for x in worker],
        worker_deadletters=[x.deadletters for x in worker],
    )  # fmt: skip
    events = sum(loaded.ends.values()) if "loaded" in locals() else 0
    how = f"{events:,} records; {sec.note}"
    rows.append(
        Row("raw aiokafka consumer (the limit)", fmt_eps(r), "", "", f"{spread(raw)}; {how}")
    )
    rows.append(
        Row(
            "worker, 1 process, input -> incidents", fmt_eps(w), f">= {TARGET_WORKER_EPS:,}",
            verdict(w, TARGET_WORKER_EPS), f"{spread(weps)}; Ready -> all committed",
        )
    )  # fmt: skip
    rows.append(
        Row(
            "worker / raw", _pct(ratio(w, r)), f">= {TARGET_RATIO_RAW:.0%}",
            verdict(ratio(w, r), TARGET_RATIO_RAW), f"per round: {', '.join(map(_pct, rr))}",
        )
    )  # fmt: skip
    rows.append(Row("naive Faust + HalfSpaceTrees/event", fmt_eps(n), "", "", f"{spread(neps)}"))
    rows.append(
        Row(
            "worker / naive", _times(ratio(w, n)), f">= {TARGET_RATIO_NAIVE:g}x",
            verdict(ratio(w, n), TARGET_RATIO_NAIVE), f"per round: {', '.join(map(_times, rn))}",
        )
    )  # fmt: skip


def _latency(
    broker: Any,
    data: ds.Dataset,
    workdir: Path,
    runs: int,
    speed: float,
    failures: list[str],
    fig: dict[str, Any],
    rows: list[Row],
) -> None:
    result: list[latency_bench.LatencyRun] = []
    with Section("latency", failures) as sec:
        result = latency_bench.run_many(broker.bootstrap, data, workdir, runs, speed)
    s = latency_bench.summary(result) if result else {}
    p50, p99 = s.get("p50_ms", math.nan), s.get("p99_ms", math.nan)
    fig.update(p50_ms=p50, p99_ms=p99, latency=s)
    samples = s.get("samples", 0)
    rows.append(
        Row("latency after window close, p50", _ms(p50), "", "",
            f"{spread(s.get('p50_runs', []))}; {samples} incident events, paced at {speed:g}x")
    )  # fmt: skip
    rows.append(
        Row("latency after window close, p99", _ms(p99), f"<= {TARGET_P99_MS:,} ms",
            verdict(p99, TARGET_P99_MS, higher_is_better=False),
            f"{spread(s.get('p99_runs', []))}; max {_ms(s.get('max_ms', math.nan))}; {sec.note}")
    )  # fmt: skip
    rows.append(
        Row("  ... from the stream's close, p99", _ms(s.get("stream_p99_ms", math.nan)), "", "",
            f"{spread(s.get('stream_p99_runs', []))}; + wait for quiet partitions (info)")
    )  # fmt: skip


def _replay(
    broker: Any,
    workdir: Path,
    runs: int,
    events: int,
    failures: list[str],
    fig: dict[str, Any],
    rows: list[Row],
) -> None:
    from bench import replay_bench
    from streams.replay import quiet_kafka_selector

    eps: list[float] = []
    with Section("replay", failures) as sec:
        quiet_kafka_selector()
        source = workdir / "replay-transactions.jsonl"
        n = replay_bench.write_traffic(source, events)
        for i in range(runs):
            sent, took = replay_bench.replay_once(broker, source, f"bench-replay-{i}")
            if sent != n:
                raise RuntimeError(f"replay run {i}: sent {sent} of {n} events")
            eps.append(sent / took)
            say(f"  replay run {i + 1}/{runs}: {sent:,} events in {took:.2f} s = {eps[-1]:,.0f}/s")
    fig.update(replay_eps=median(eps), replay_runs=eps)
    rows.append(
        Row("replay --speed max -> broker", fmt_eps(median(eps)), "", "",
            f"{spread(eps)}; {events:,} transactions; {sec.note}")
    )  # fmt: skip


def _evaluate(
    data: ds.Dataset, runs: int, failures: list[str], fig: dict[str, Any], rows: list[Row]
) -> None:
    result: list[evaluate_bench.EvalRun] = []
    with Section("evaluate", failures) as sec:
        result = evaluate_bench.run_many(data, runs)
    eps = [r.events_per_s for r in result]
    e = median(eps)
    fig.update(evaluate_eps=e, evaluate_runs=eps)
    rows.append(
        Row("streams evaluate (offline)", fmt_eps(e), f">= {TARGET_EVALUATE_EPS:,}",
            verdict(e, TARGET_EVALUATE_EPS),
            f"{spread(eps)}; same data set; {sec.note}")
    )  # fmt: skip


def _simulate(
    runs: int, quick: bool, failures: list[str], fig: dict[str, Any], rows: list[Row]
) -> None:
    from bench import simulate_bench

    argv = ["--days", "1"] + (["--rate", "20"] if quick else [])
    eps: list[float] = []
    with Section("simulate", failures) as sec:
        for i in range(runs):
            out = _captured(simulate_bench.main, argv)
            found = re.search(r"events=(\d+) .*events_per_s=(\d+)", out)
            if found is None:
                raise RuntimeError(f"simulate bench printed no figure: {out!r}")
            eps.append(float(found.group(2)))
            say(f"  simulate run {i + 1}/{runs}: {out.strip()}")
    fig.update(simulate_eps=median(eps), simulate_runs=eps)
    rows.append(
        Row("simulate (1 day, written)", fmt_eps(median(eps)), "", "",
            f"{spread(eps)}; {' '.join(argv)}; {sec.note}")
    )  # fmt: skip


def _scale(quick: bool, failures: list[str], fig: dict[str, Any], rows: list[Row]) -> None:
    counts = scale_bench.QUICK_SEGMENTS if quick else scale_bench.DEFAULT_SEGMENTS
    windows = scale_bench.QUICK_WINDOWS if quick else scale_bench.DEFAULT_WINDOWS
    result: list[dict[str, Any]] = []
    with Section("scale", failures) as sec:
        result = scale_bench.run_all(counts, windows)
    fig["scale"] = result
    how = f"pure engine, {windows} windows, 1 run; {sec.note}"
    for r in result:
        seg = f"{r['segments']:,} segments"
        lo, hi = r["ms_per_window_range"]
        rows.append(
            Row(f"{seg}: memory per (signal, segment)", f"{r['bytes_per_pair'] / 1024:,.1f} KB",
                f"<= {TARGET_BYTES_PER_PAIR // 1024} KB",
                verdict(r["bytes_per_pair"], TARGET_BYTES_PER_PAIR, higher_is_better=False),
                f"{r['pairs']:,} pairs; {how}")
        )  # fmt: skip
        rows.append(Row(f"{seg}: total RSS", f"{r['rss_mb']:,.0f} MB", "", "", ""))
        rows.append(
            Row(f"{seg}: engine events/s", fmt_eps(r["events_per_s"]), "", "",
                f"{r['ms_per_window']:,.0f} ms per 10 s window (range {lo:,.0f}..{hi:,.0f}), "
                f"{r['events_per_window']:,.0f} events/window")
        )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
