"""``make bench``: every benchmark, one after the other, on this machine.

Each benchmark is also a module of its own (``python -m bench.<name> --help``). Figures are
measured, never asserted: speed targets are checked by reading these, not by timed tests.
"""

from __future__ import annotations

import sys
import time

from bench import replay_bench, simulate_bench

BENCHES = (
    ("simulate", simulate_bench.main),
    ("replay", replay_bench.main),
)


def main() -> int:
    failed = []
    for name, run in BENCHES:
        print(f"== {name}", flush=True)
        t0 = time.monotonic()
        try:
            run([])
        except Exception as exc:  # report and go on with the other benchmarks
            print(f"{name}: FAILED: {type(exc).__name__}: {exc}", flush=True)
            failed.append(name)
        print(f"   ({time.monotonic() - t0:.0f} s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
