"""``make run``'s command, shortened: it catches the injected outage, exits 0, leaves nothing."""

from __future__ import annotations

import subprocess
import sys

from tests.integration.conftest import ROOT


def test_demo_catches_the_injected_outage_and_cleans_up() -> None:
    before = subprocess.run(["pgrep", "-f", "tansu.*broker|streams worker"], capture_output=True)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "streams",
            "demo",
            "--minutes",
            "14",
            "--rate",
            "60",
            "--speed",
            "60",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    assert "OPEN" in out and "RESOLVED" in out
    assert "injected outage at wallet/partner_bank=TCB: caught" in out
    assert "incidents elsewhere: none" in out
    after = subprocess.run(["pgrep", "-f", "tansu.*broker|streams worker"], capture_output=True)
    assert set(after.stdout.split()) <= set(before.stdout.split()), "processes left behind"


def test_demo_ctrl_c_stops_everything() -> None:
    import signal
    import time

    before = subprocess.run(["pgrep", "-f", "tansu.*broker|streams worker"], capture_output=True)
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
    after = subprocess.run(["pgrep", "-f", "tansu.*broker|streams worker"], capture_output=True)
    assert set(after.stdout.split()) <= set(before.stdout.split()), "processes left behind"
