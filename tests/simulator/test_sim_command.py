"""The ``simulate`` command: --help, exit code 2 naming a bad option, summary and progress."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from streams.simulate_command import ProgressBar, run_simulate

ROOT = Path(__file__).resolve().parents[2]
#: Until streams/commands.py imports it, the command is registered by importing its module.
ENTRY = "from streams import commands, simulate_command; from streams.app import app; app.main()"


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", ENTRY, "simulate", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_help_lists_the_options(tmp_path: Path) -> None:
    done = _cli("--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for option in (
        "--scenario",
        "--seed",
        "--days",
        "--start",
        "--rate",
        "--out",
        "--gzip / --no-gzip",
        "--progress / --no-progress",
        "--onset-hour",
        "--duration-minutes",
        "--magnitude",
        "--target",
    ):
        assert option in done.stdout, option


def test_bad_values_exit_2_naming_the_option(tmp_path: Path) -> None:
    done = _cli("--scenario", "qiwi", "--rate", "-5", cwd=tmp_path)
    assert done.returncode == 2
    assert "--rate" in done.stderr and "-5" in done.stderr and "--rate 50" in done.stderr
    done = _cli("--seed", "abc", cwd=tmp_path)
    assert done.returncode == 2 and "--seed" in done.stderr
    assert not (tmp_path / "out").exists()


def test_end_to_end_run_writes_files_and_a_summary(tmp_path: Path) -> None:
    out = tmp_path / "traffic"
    done = _cli(
        "--scenario", "io", "--seed", "9", "--start", "2025-10-19T06:45:00Z", "--days", "0.02",
        "--rate", "2", "--onset-hour", "7", "--duration-minutes", "10", "--gzip", "--out",
        str(out), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "section_overload" in done.stdout and str(out) in done.stdout
    assert "events/s" in done.stderr  # the progress bar
    labels = json.loads((out / "labels.json").read_text())
    assert [label["scenario"] for label in labels] == ["io"]
    assert (out / "requests.jsonl.gz").stat().st_size > 0


def test_run_simulate_exit_codes(tmp_path: Path) -> None:
    common = dict(seed=9, days=0.01, start="2025-10-19T12:00:00Z", rate=1.0, gzip=False)
    err = io.StringIO()
    assert (
        run_simulate(scenario="io", out=None, progress=False, magnitude=2.0, stderr=err, **common)
        == 2
    )
    assert "--magnitude" in err.getvalue() and "2.0" in err.getvalue()

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    err = io.StringIO()
    assert (
        run_simulate(scenario="calm", out=str(blocker), progress=False, stderr=err, **common) == 1
    )
    assert "cannot write" in err.getvalue()

    out_text, err = io.StringIO(), io.StringIO()
    code = run_simulate(
        scenario="calm",
        out=str(tmp_path / "ok"),
        progress=True,
        stdout=out_text,
        stderr=err,
        **common,
    )
    assert code == 0
    summary = out_text.getvalue()
    assert "incidents labelled: 0" in summary and "transactions" in summary
    assert "100%" in err.getvalue()


@pytest.mark.parametrize("tty", [False, True])
def test_progress_bar(tty: bool) -> None:
    class Stream(io.StringIO):
        def isatty(self) -> bool:
            return tty

    stream = Stream()
    bar = ProgressBar(stream, interval_s=0.0)
    for minute in range(0, 61):
        bar(minute * 60_000, 3_600_000, minute * 100)
    text = stream.getvalue()
    assert "100%" in text and "6,000 events" in text and "01h00m/01h00m" in text
    if not tty:
        assert len(text.splitlines()) == 11  # a line per 10 %
