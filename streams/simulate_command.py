"""``python -m streams simulate``: labelled traffic files, a thin shell over :mod:`simulator`.

Writes one JSON Lines file per input topic plus ``labels.json`` (and ``benign.json``) into
``--out``; replay them with ``python -m streams replay``. Exit codes: 0 done, 1 the output could
not be written, 2 a bad option (the message names the option, the value and the fix).
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from datetime import UTC, datetime
from typing import IO, Any

from faust.cli import AppCommand, option

from simulator import (
    DEFAULT_START,
    SCENARIO_NAMES,
    PlanError,
    SimulationPlan,
    SimulationSummary,
    build_plan,
)
from simulator import simulate as generate
from streams.app import app

__all__ = ["ProgressBar", "run_simulate", "simulate"]


def _hhmm(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%MZ")


def _duration(ms: int) -> str:
    hours, rest = divmod(ms // 60_000, 60)
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h{rest:02d}m" if days else f"{hours:02d}h{rest:02d}m"


class ProgressBar:
    """A one-line progress bar on a terminal; a line per 10 % elsewhere (e.g. a CI log).

    Shows simulated time done / total, events written and events per second (wall clock).
    """

    WIDTH = 28

    def __init__(self, stream: IO[str], interval_s: float = 0.2) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.interval_s = interval_s
        self.began = time.perf_counter()
        self.last = 0.0
        self.last_decile = -1

    def __call__(self, done_ms: int, total_ms: int, events: int) -> None:
        now = time.perf_counter()
        frac = done_ms / total_ms if total_ms else 1.0
        final = done_ms >= total_ms
        if self.tty:
            if not final and now - self.last < self.interval_s:
                return
        else:
            decile = int(frac * 10)
            if decile == self.last_decile:
                return
            self.last_decile = decile
        self.last = now
        elapsed = max(now - self.began, 1e-9)
        filled = int(frac * self.WIDTH)
        text = (
            f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {frac:4.0%} "
            f"{_duration(done_ms)}/{_duration(total_ms)} simulated, "
            f"{events:,} events, {events / elapsed:,.0f} events/s"
        )
        if self.tty:
            self.stream.write("\r" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


def _summary(plan: SimulationPlan, s: SimulationSummary) -> str:
    lines = [
        f"simulated {plan.scenario} (seed {plan.seed}) from {_hhmm(plan.start)} to "
        f"{_hhmm(plan.end)} ({plan.days:g} day{'' if plan.days == 1 else 's'}) at a peak of "
        f"{plan.rate:g} events/s",
    ]
    for path, (topic, count) in zip(s.files, s.counts.items(), strict=True):
        lines.append(f"  {topic:<13}{count:>12,}  {path}")
    lines.append(
        f"  {'total':<13}{s.events:>12,}  in {s.seconds:.1f} s "
        f"({s.events_per_second:,.0f} events/s)"
    )
    lines.append(f"incidents labelled: {len(s.labels)} ({s.out_dir / 'labels.json'})")
    for label in s.labels:
        segments = ", ".join(
            "/".join(f"{k}={v}" if k != "service" else v for k, v in seg.items())
            for seg in label["segments"]
        )
        lines.append(
            f"  {label['id']:<10} {label['cause']:<31} {_hhmm(label['start'])} .. "
            f"{_hhmm(label['end'])}  {segments}"
        )
    kinds = Counter(b["kind"] for b in s.benign)
    listed = ", ".join(f"{kind} x{n}" for kind, n in kinds.items()) or "none"
    lines.append(f"benign events (not labelled, see benign.json): {len(s.benign)} ({listed})")
    lines.append(f"output: {s.out_dir}")
    return "\n".join(lines)


def run_simulate(
    *,
    scenario: str,
    seed: int,
    days: float | None,
    start: str,
    rate: float,
    out: str | None,
    gzip: bool,
    progress: bool,
    onset_hour: float | None = None,
    duration_minutes: float | None = None,
    magnitude: float | None = None,
    target: str | None = None,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
) -> int:
    """The command's body, callable without Faust; returns the exit code (0, 1 or 2)."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    try:
        plan = build_plan(
            scenario=scenario,
            seed=seed,
            days=days,
            start=start,
            rate=rate,
            onset_hour=onset_hour,
            duration_minutes=duration_minutes,
            magnitude=magnitude,
            target=target,
        )
    except PlanError as exc:
        print(f"error: {exc}", file=stderr, flush=True)
        return 2
    out_dir = out or f"out/{plan.scenario}-{plan.seed}"
    bar = ProgressBar(stderr) if progress else None
    try:
        summary = generate(plan, out_dir, compress=gzip, progress=bar)
    except OSError as exc:
        print(f"error: cannot write the traffic files to {out_dir!r}: {exc}", file=stderr)
        return 1
    print(_summary(plan, summary), file=stdout, flush=True)
    return 0


@app.command(
    option(
        "--scenario",
        default="all",
        show_default=True,
        help=f"Which outage to inject: {', '.join(SCENARIO_NAMES)} (calm: none).",
    ),
    option("--seed", type=int, default=1, show_default=True, help="Random seed."),
    option(
        "--days",
        type=float,
        default=None,
        help="Simulated days (fractions allowed). Default 1, or what 'all' needs (5).",
    ),
    option(
        "--start",
        default=DEFAULT_START,
        show_default=True,
        help="Start of event time: ISO date/time (UTC unless given) or epoch ms.",
    ),
    option(
        "--rate",
        type=float,
        default=50.0,
        show_default=True,
        help="Events per second over all topics at the daily peak.",
    ),
    option("--out", default=None, help="Output directory [default: out/<scenario>-<seed>]."),
    option("--gzip/--no-gzip", default=False, show_default=True, help="Write .jsonl.gz files."),
    option(
        "--progress/--no-progress",
        default=True,
        show_default=True,
        help="Progress bar on stderr.",
    ),
    option("--onset-hour", type=float, default=None, help="UTC hour the incident starts."),
    option("--duration-minutes", type=float, default=None, help="Incident length in minutes."),
    option("--magnitude", type=float, default=None, help="Incident strength in (0, 1]; 1 = full."),
    option(
        "--target",
        default=None,
        help="Hit segment(s), comma separated: banks (mpesa), operator (qiwi), sections (io), "
        "services (momo, shopee).",
    ),
)
async def simulate(self: AppCommand, **options: Any) -> None:
    """Write labelled traffic files (JSON Lines per input topic + labels.json) of an outage."""
    sys.exit(run_simulate(**options))
