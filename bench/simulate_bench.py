"""Generate throughput of the simulator: events written per wall-clock second.

``python -m bench.simulate_bench [--days D] [--rate R] [--scenario S] [--gzip]`` simulates
``D`` days (default 1) at a peak of ``R`` events/s (default 200) into a temporary directory
(deleted afterwards), the whole path of ``python -m streams simulate`` (generation, line
formatting, writing), and prints::

    simulate: events=10412345 seconds=21.3 events_per_s=488000 max_rss_mb=310

``max_rss_mb`` is the process's peak resident memory: it stays flat as ``--days`` grows
(output is streamed slice by slice).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile

from simulator import build_plan, simulate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.simulate_bench", description=__doc__)
    parser.add_argument("--days", type=float, default=1.0, help="simulated days (default 1)")
    parser.add_argument("--rate", type=float, default=200.0, help="peak events/s (default 200)")
    parser.add_argument("--scenario", default="momo", help="scenario (default momo)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--start", default="2025-10-19T00:00:00Z", help="start (UTC)")
    parser.add_argument("--gzip", action="store_true", help="write .jsonl.gz files")
    args = parser.parse_args(argv)
    plan = build_plan(
        scenario=args.scenario, seed=args.seed, days=args.days, rate=args.rate, start=args.start
    )
    with tempfile.TemporaryDirectory(prefix="radar-simulate-bench-") as out:
        summary = simulate(plan, out, compress=args.gzip)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(
        f"simulate: events={summary.events} seconds={summary.seconds:.2f} "
        f"events_per_s={summary.events_per_second:.0f} max_rss_mb={rss_mb:.0f}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
