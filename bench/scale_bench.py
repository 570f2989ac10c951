"""Scale in segments: memory per (signal, segment) detector, total RSS and speed vs segment count.

``python -m bench.scale_bench [--segments 1000,10000,100000] [--windows W] [--quick]``

Measured on the pure engine (``detectors.engine.DetectionEngine`` fed ``EngineWindow`` s, no
Kafka, no JSON, no windowing): the detection stage alone, which is where per-segment state
lives. For each segment count ``N`` a fresh Python process builds one service with ``N``
partner banks (one transactions cell each, spread over 3 regions and 3 channels), and feeds
``W`` consecutive windows (default 32: past the 6-window warm-up and the 30-window pool of the
5-minute running sum, so every per-segment structure has reached its steady size) in which
every bank has ~20 transactions (18-22 successes, 0-2 failures, 0-1 pending; seeded). The
engine then holds, per bank, the (signal, segment) pairs of ``transactions.success_rate``,
``transactions.settled_share`` and ``transactions.silence``: 3 detectors, 2 pooled detectors,
3 incident lifecycles and the pooled running sums.

* **memory per (signal, segment)**: (RSS after the last window - RSS before the engine was
  made, with the window data already built), after ``gc.collect()``, divided by the number of
  (signal, segment) pairs (``len(engine.detectors)``). It therefore charges each pair its
  share of everything the engine keeps per segment (pooled detectors, lifecycles, pools).
* **total RSS**: the process's resident memory after the last window (``/proc/self/statm``).
* **events/s**: events represented by a window divided by the median wall time of
  ``engine.process`` over the windows after the warm-up; ``ms/window`` shows the same cost
  against the 10 s window (below 10,000 ms the engine keeps up in real time).

It prints one line per segment count::

    scale: segments=10000 pairs=30009 windows=32 ms_per_window=780 events_per_s=256000
           rss_mb=310 bytes_per_pair=3751
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from bench.harness import ROOT, base_env, say
from bench.stats import median

DEFAULT_SEGMENTS = (1_000, 10_000, 100_000)
QUICK_SEGMENTS = (1_000, 10_000)
DEFAULT_WINDOWS = 32
QUICK_WINDOWS = 10
WARMUP_WINDOWS = 6
WINDOW_MS = 10_000
T0_MS = 1_760_860_800_000  # 2025-10-19 08:00 UTC
REGIONS = ("north", "central", "south")
CHANNELS = ("app", "web", "ussd")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(segments: int, windows: int, seed: int = 1) -> dict[str, Any]:
    """One segment count in this process (call it in a fresh process: RSS is process-wide)."""
    from detectors.engine import DetectionEngine, EngineWindow
    from detectors.signals import SEP

    keys = [
        SEP.join(("wallet", f"B{i:06d}", REGIONS[i % 3], CHANNELS[(i // 3) % 3]))
        for i in range(segments)
    ]
    rnd = random.Random(seed)

    def window_counts() -> dict[str, list[int]]:
        return {k: [rnd.randint(18, 22), rnd.randint(0, 2), rnd.randint(0, 1), 0, 0] for k in keys}

    cells = window_counts()
    gc.collect()
    rss0 = _rss_bytes()
    engine = DetectionEngine(window_ms=WINDOW_MS)
    times: list[float] = []
    events: list[int] = []
    anomalies = 0
    for w in range(windows):
        if w:
            cells = window_counts()  # built outside the timed call
        window = EngineWindow(T0_MS + w * WINDOW_MS, {"transactions": {"wallet": cells}})
        t0 = time.perf_counter()
        anomalies += len(engine.process(window))
        times.append(time.perf_counter() - t0)
        events.append(sum(c[0] + c[1] + c[2] for c in cells.values()))
    del window, cells
    gc.collect()
    rss1 = _rss_bytes()
    pairs = len(engine.detectors)
    timed = times[WARMUP_WINDOWS:] or times
    seconds = median(timed)
    return {
        "segments": segments,
        "pairs": pairs,
        "pooled_detectors": len(engine.pooled_detectors),
        "windows": windows,
        "ms_per_window": seconds * 1000,
        "ms_per_window_range": [min(timed) * 1000, max(timed) * 1000],
        "events_per_window": median(events),
        "events_per_s": median(events) / seconds if seconds > 0 else float("nan"),
        "rss_mb": rss1 / 2**20,
        "bytes_per_pair": (rss1 - rss0) / pairs if pairs else float("nan"),
        "anomalies": anomalies,
    }


def run_child(segments: int, windows: int, timeout: float = 1800.0) -> dict[str, Any]:
    """:func:`measure` in a fresh process; its JSON result."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench.scale_bench", "--child", str(segments), "--windows",
         str(windows)],
        cwd=ROOT, env=base_env(), capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"scale child for {segments} segments failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def line(r: dict[str, Any]) -> str:
    return (
        f"scale: segments={r['segments']} pairs={r['pairs']} windows={r['windows']} "
        f"ms_per_window={r['ms_per_window']:.0f} events_per_s={r['events_per_s']:.0f} "
        f"rss_mb={r['rss_mb']:.0f} bytes_per_pair={r['bytes_per_pair']:.0f}"
    )


def run_all(segment_counts: Sequence[int], windows: int) -> list[dict[str, Any]]:
    out = []
    for n in segment_counts:
        t0 = time.monotonic()
        r = run_child(n, windows)
        lo, hi = r["ms_per_window_range"]
        say(
            f"  scale {n:,} segments: {r['pairs']:,} (signal, segment) pairs, "
            f"{r['ms_per_window']:,.0f} ms per window (range {lo:,.0f}..{hi:,.0f}), "
            f"{r['events_per_s']:,.0f} events/s, RSS {r['rss_mb']:,.0f} MB, "
            f"{r['bytes_per_pair']:,.0f} bytes per pair ({time.monotonic() - t0:.0f} s)"
        )
        out.append(r)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--segments", default=",".join(str(n) for n in DEFAULT_SEGMENTS),
        help="comma-separated segment counts (default 1000,10000,100000)",
    )  # fmt: skip
    parser.add_argument(
        "--windows", type=int, default=None,
        help=f"windows fed per count (default {DEFAULT_WINDOWS}; {QUICK_WINDOWS} with --quick)",
    )  # fmt: skip
    parser.add_argument(
        "--quick", action="store_true",
        help=f"segments {','.join(map(str, QUICK_SEGMENTS))}, {QUICK_WINDOWS} windows",
    )  # fmt: skip
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    windows = args.windows or (QUICK_WINDOWS if args.quick else DEFAULT_WINDOWS)
    if windows <= WARMUP_WINDOWS:
        raise SystemExit(f"--windows must be above the {WARMUP_WINDOWS}-window warm-up")
    if args.child is not None:
        print(json.dumps(measure(args.child, windows)), flush=True)
        return 0
    counts = QUICK_SEGMENTS if args.quick else tuple(int(x) for x in args.segments.split(","))
    for r in run_all(counts, windows):
        print(line(r), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
