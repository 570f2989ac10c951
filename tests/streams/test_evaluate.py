"""``python -m streams evaluate``: matching, the last line's contract, errors, a real run."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from detectors.engine import Anomaly, DetectionEngine, Segment
from detectors.incidents import Incident
from streams.errors import RadarError
from streams.evaluate import Label, RunStats, last_line, load_labels, match

ROOT = Path(__file__).resolve().parents[2]
LAST = re.compile(
    r"^evaluate: detected=(\d+)/(\d+) false_per_day=([\d.]+) median_delay_s=(\S+) "
    r"cause_correct=(\d+)/(\d+) events_per_s=(\d+)$"
)
T0 = 1_760_860_800_000


def _incident(service: str, opened: int, signal: str, segment: Segment, cause: str) -> Incident:
    sig = next(s for s in DetectionEngine(10_000).signals if s.name == signal)

    class Ev:
        score = 9.0

    inc = Incident(key=f"{service}/{opened}", opened_at_ms=opened, cause_class=cause)
    inc.anomalies.append(Anomaly("open", sig, segment, opened, opened - 10_000, opened, Ev(), 1))
    return inc


def test_matching_delay_segment_cause_and_false_incidents() -> None:
    acb = {"service": "wallet", "partner_bank": "ACB"}
    labels = [
        Label("m1", "mpesa", T0, T0 + 3_600_000, [acb], "partner_bank_transfer_delay"),
        Label("q1", "qiwi", T0 + 86_400_000, T0 + 90_000_000, [{"service": "pay"}], "x"),
    ]
    right = _incident(
        "wallet", T0 + 50_000, "transactions.settled_share",
        Segment("wallet", "partner_bank", "ACB"), "partner_bank_transfer_delay",
    )  # fmt: skip
    unrelated = _incident(
        "shop", T0 + 10_000, "logins.success_rate", Segment("shop"), "login_outage"
    )
    matches = match(labels, [unrelated, right], window_ms=10_000)
    assert matches[0].incident is right and matches[0].delay_s == 50
    assert matches[0].segment_correct and matches[0].cause_correct
    assert matches[1].incident is None
    stats = RunStats(events=1000, first_ms=T0, last_ms=T0 + 2 * 86_400_000, seconds=0.5)
    line = last_line(matches, [unrelated, right], stats, 10_000)
    assert line == (
        "evaluate: detected=1/2 false_per_day=0.50 median_delay_s=50 cause_correct=1/2 "
        "events_per_s=2000"
    )
    # A second incident of the same outage is a duplicate, not a false one.
    again = _incident(
        "wallet", T0 + 600_000, "transactions.success_rate",
        Segment("wallet", "partner_bank", "ACB"), "partner_bank_failure",
    )  # fmt: skip
    line = last_line(matches, [unrelated, right, again], stats, 10_000)
    assert "false_per_day=0.50 " in line


def test_labels_errors_name_the_problem(tmp_path: Path) -> None:
    bad = tmp_path / "labels.json"
    bad.write_text('{"id": 1}')
    with pytest.raises(RadarError, match="JSON list"):
        load_labels(bad)
    bad.write_text('[{"id": "a", "start": 1}]')
    with pytest.raises(RadarError, match="item 0 needs id, start, end"):
        load_labels(bad)
    assert load_labels(None) == []


def test_evaluate_cli_on_simulated_traffic(tmp_path: Path) -> None:
    out = tmp_path / "qiwi"
    made = subprocess.run(
        [sys.executable, "-m", "streams", "simulate", "--scenario", "qiwi", "--seed", "9191",
         "--days", "0.1", "--onset-hour", "1.5", "--duration-minutes", "40", "--rate", "10",
         "--no-progress", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    result = subprocess.run(
        [sys.executable, "-m", "streams", "evaluate", "--input", str(out), "--no-progress"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    found = LAST.match(lines[-1])
    assert found, lines[-1]
    assert found.group(2) == str(len(json.loads((out / "labels.json").read_text())))
    assert int(found.group(7)) > 0


def test_evaluate_cli_missing_input_exits_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "streams", "evaluate", "--input", str(tmp_path / "nope")],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "does not exist" in result.stderr
