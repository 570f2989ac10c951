"""Commands of ``python -m streams`` beyond Faust's own (``worker``, ``agents``, ...)."""

from __future__ import annotations

import signal
import sys
import time
from typing import Any

from faust.cli import AppCommand, option

# Imported for their side effects: the agents and commands register on the app.
from streams import agents, evaluate, record, replay, simulate_command, tail, webhook  # noqa: F401
from streams.app import app
from streams.errors import RadarError


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: Any) -> None:
    raise _Stop()


@app.command(
    option(
        "--port", type=int, default=0, show_default=True, help="Port to listen on (0: a free one)."
    ),
)
async def broker(self: AppCommand, port: int) -> None:
    """Run the embedded broker (Tansu) in the foreground until SIGINT/SIGTERM.

    The first line of output is the bootstrap address (127.0.0.1:PORT).
    """
    from streams.broker import EmbeddedBroker

    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    try:
        with EmbeddedBroker(port=port) as b:
            print(b.bootstrap, flush=True)
            print(f"RADAR_BROKER={b.url} RADAR_BROKER_FLAVOUR=tansu", file=sys.stderr, flush=True)
            while True:
                if b.process is None or b.process.poll() is not None:
                    raise RadarError(f"the broker stopped by itself:\n{b.log_tail()}")
                time.sleep(0.2)
    except _Stop:
        print("broker stopped", file=sys.stderr, flush=True)
    except RadarError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)


@app.command(
    option(
        "--minutes",
        type=float,
        default=20.0,
        show_default=True,
        help="Event-time minutes of traffic.",
    ),
    option(
        "--rate",
        type=float,
        default=120.0,
        show_default=True,
        help="Transactions per event-time second.",
    ),
    option(
        "--speed",
        type=float,
        default=20.0,
        show_default=True,
        help="Event time per wall-clock time.",
    ),
    option("--seed", type=int, default=7, show_default=True, help="Random seed of the traffic."),
    option(
        "--keep-running", is_flag=True, default=False, help="Do not exit when done (Ctrl-C stops)."
    ),
)
async def demo(
    self: AppCommand, minutes: float, rate: float, speed: float, seed: int, keep_running: bool
) -> None:
    """make run: broker, worker, traffic with an injected bank outage; prints incidents."""
    from streams.demo import DemoPlan, run_demo

    if minutes <= 0 or rate <= 0 or speed <= 0:
        print(
            "error: --minutes, --rate and --speed must be positive, "
            f"got {minutes}, {rate}, {speed}",
            file=sys.stderr,
        )
        sys.exit(2)
    try:
        code = run_demo(DemoPlan(seed=seed, minutes=minutes, rate=rate), speed, keep_running)
    except RadarError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
    sys.exit(code)
