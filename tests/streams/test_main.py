"""``python -m streams``'s checks before Faust starts a worker."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from streams.__main__ import check_web_port
from streams.broker import free_port
from streams.errors import RadarError

ROOT = Path(__file__).resolve().parents[2]


def _listening() -> socket.socket:
    s = socket.socket()
    s.bind(("0.0.0.0", 0))
    s.listen()
    return s


def test_a_free_web_port_passes() -> None:
    check_web_port(free_port())


def test_a_taken_web_port_is_named_with_the_fix() -> None:
    with _listening() as held:
        port = held.getsockname()[1]
        with pytest.raises(RadarError) as err:
            check_web_port(port)
    text = str(err.value)
    assert f"RADAR_WEB_PORT={port} cannot be bound" in text
    assert f"set RADAR_WEB_PORT to a free one, e.g. {port + 1}" in text


def test_a_worker_whose_web_port_is_taken_exits_1_before_starting() -> None:
    # Before: Faust joined the group, then stopped with an OSError traceback (rc 1).
    with _listening() as held:
        port = held.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "streams", "worker"], cwd=ROOT, capture_output=True,
            text=True, timeout=60, env={**os.environ, "RADAR_WEB_PORT": str(port)},
        )  # fmt: skip
    assert result.returncode == 1, result.stderr[-2000:]
    assert f"error: RADAR_WEB_PORT={port} cannot be bound" in result.stderr
    assert "Traceback" not in result.stderr
