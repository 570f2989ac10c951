"""``make run``'s command, shortened: it catches the injected outage, exits 0, leaves nothing."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from streams.settings import Settings
from tests.integration.conftest import ROOT


def _left_behind(out: str) -> list[str]:
    """Of the processes the demo says it started (its broker by port, its worker by pid),
    those still running once it has ended. Only its own: other tests may be running brokers
    and workers meanwhile."""
    port = re.search(r"embedded broker \(Tansu\) on [\d.]+:(\d+)", out)
    pid = re.search(r"worker started \(pid (\d+)\)", out)
    assert port and pid, out[-3000:]

    def pgrep(pattern: str) -> list[str]:
        return subprocess.run(
            ["pgrep", "-f", pattern], capture_output=True, text=True
        ).stdout.split()

    brokers = pgrep(f"tansu.*broker.*:{port.group(1)}( |$)")
    workers = [p for p in pgrep("streams worker") if p == pid.group(1)]
    return [f"broker pid {b}" for b in brokers] + [f"worker pid {w}" for w in workers]


@contextmanager
def _default_web_port_taken() -> Iterator[None]:
    """Faust's default web port (6066) busy, as with a worker already running: the demo's
    worker must not need it. Held here unless something else holds it already."""
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", Settings().web_port))
            s.listen()
        except OSError:
            pass  # taken already: the same situation
        yield


def test_demo_catches_the_injected_outage_and_cleans_up() -> None:
    with _default_web_port_taken():
        result = subprocess.run(
            [sys.executable, "-m", "streams", "demo", "--minutes", "14", "--rate", "60",
             "--speed", "60"],
            cwd=ROOT, capture_output=True, text=True, timeout=240,
        )  # fmt: skip
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    assert "OPEN" in out and "RESOLVED" in out
    assert "injected outage at wallet/partner_bank=TCB: caught" in out
    assert "incidents elsewhere: none" in out
    assert _left_behind(out) == []


def test_demo_ctrl_c_stops_everything() -> None:
    import signal

    with subprocess.Popen(
        [sys.executable, "-m", "streams", "demo"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "worker started" in line:
                break
        time.sleep(3)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert "SIGINT: stopping" in out and "summary after" in out, "".join(lines) + out
    assert _left_behind("".join(lines) + out) == []
