"""``python -m streams evaluate``: matching, the last line's contract, errors, a real run."""

from __future__ import annotations

import json
import os
import random
import re
import struct
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from detectors.engine import Anomaly, DetectionEngine, Segment
from detectors.incidents import Incident
from streams.errors import RadarError
from streams.evaluate import Label, RunStats, evaluate_main, last_line, load_labels, match

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


def test_evaluate_jobs_below_one_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RadarError, match=r"--jobs must be at least 1, got 0; use 1"):
        evaluate_main(str(tmp_path), None, None, False, jobs=0)


# -- --report and --warm-start, on small synthetic login traffic ------------------------------

MIN = 60_000
HISTORY_START = 1_760_832_000_000  # 2025-10-19T00:00Z
INPUT_START = HISTORY_START + 120 * MIN


def write_logins(
    out: Path, start: int, minutes: int, outages: list[tuple[int, int]], seed: int
) -> tuple[int, int]:
    """Login attempts at service wallet (regions north and south, about 3 a second, 2 % failing)
    as a traffic file in ``out``; during ``outages`` 90 % of the north's fail. Returns the first
    and last event time."""
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    t, end, n, times = float(start), start + minutes * MIN, 0, []
    with (out / "logins.jsonl").open("w") as f:
        while (t := t + rng.expovariate(3.0) * 1000) < end:
            ms, region = int(t), rng.choice(["north", "south"])
            broken = region == "north" and any(a <= ms < b for a, b in outages)
            n += 1
            ok = rng.random() > (0.9 if broken else 0.02)
            value = {
                "event_id": f"e{seed}-{n}",
                "event_time": ms,
                "service": "wallet",
                "region": region,
                "outcome": "success" if ok else "failure",
            }
            record = {"topic": "logins", "key": f"wallet|{region}", "timestamp": ms, "value": value}
            f.write(json.dumps(record) + "\n")
            times.append(ms)
    return times[0], times[-1]


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """History: 90 minutes with an outage of the north at 01:00; input: 02:00 to 04:00 with two
    outages of the north, at 03:00 (labelled) and 03:35 (not labelled: a false incident)."""
    root = tmp_path_factory.mktemp("traffic")
    h0 = HISTORY_START
    history = write_logins(root / "history", h0, 90, [(h0 + 60 * MIN, h0 + 70 * MIN)], seed=1)
    s = INPUT_START
    outages = [(s + 60 * MIN, s + 70 * MIN), (s + 95 * MIN, s + 105 * MIN)]
    span = write_logins(root / "input", s, 120, outages, seed=2)
    label = {
        "id": "L1",
        "scenario": "synthetic",
        "start": s + 60 * MIN,
        "end": s + 70 * MIN,
        "segments": [{"service": "wallet", "region": "north"}],
        "cause": "login_outage",
    }
    (root / "input" / "labels.json").write_text(json.dumps([label]))
    return {"root": root, "history": history, "input": span}


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _evaluate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams", "evaluate", "--no-progress", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", f"{path}: not a PNG"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def test_evaluate_report_and_warm_start(traffic: dict[str, Any]) -> None:
    root = traffic["root"]
    alone = _evaluate("--input", str(root / "history"))
    assert alone.returncode == 0, alone.stderr
    assert "; 1 incidents; labels: none" in alone.stdout  # the history's own outage
    report = root / "report" / "nested"
    result = _evaluate("--input", str(root / "input"), "--warm-start", str(root / "history"),
                       "--report", str(report))  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    first, last = traffic["history"]
    events = len((root / "history" / "logins.jsonl").read_text().splitlines())
    assert lines[0].startswith(
        f"warm start: learned {events} "
        f"history events in 540 windows from {_utc(first)} to {_utc(last)} ("
    )
    assert lines[0].endswith("1 history incidents not counted)")
    # The input's two outages only: the history's incident is neither listed nor counted.
    assert "; 2 incidents; labels:" in lines[1]
    assert "false incidents: 1 over" in result.stdout
    assert LAST.match(lines[-1]) and "detected=1/1 " in lines[-1]
    assert f"report: 2 plots and index.md in {report} (" in result.stdout
    pngs = sorted(report.glob("*.png"))
    assert [p.name.split("-")[0] for p in pngs] == ["false", "label"]
    for png in pngs:
        width, height = _png_size(png)
        assert width >= 800 and height >= 250 and png.stat().st_size > 20_000
    index = (report / "index.md").read_text()
    for png in pngs:
        assert f"]({png.name})" in index
    assert "detected after" in index and lines[0] in index and lines[-1] in index


def _timeless(out: str) -> list[str]:
    """Output lines without the figures that time the run."""
    return [re.sub(r"\bin [\d.]+ s|\(\d[\d,]* events/s|events_per_s=\d+", "T", line)
            for line in out.splitlines()]  # fmt: skip


def test_evaluate_record_by_record_when_the_columns_would_not_fit(
    traffic: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from streams import evaluate, fastload

    root = traffic["root"]
    args = (str(root / "input"), None, None, False, None, str(root / "history"), 1)
    used: list[str] = []
    for name in ("run", "run_records"):
        original = getattr(evaluate, name)
        monkeypatch.setattr(evaluate, name, lambda *a, _f=original, _n=name, **k: (
            used.append(_n), _f(*a, **k))[1])  # fmt: skip
    assert evaluate_main(*args, mode="columns") == 0
    columns = capsys.readouterr()
    assert evaluate_main(*args, mode="records") == 0
    records = capsys.readouterr()
    assert used == ["run", "run_records"]
    assert _timeless(records.out) == _timeless(columns.out) and "detected=1/1" in columns.out
    assert not columns.err and not records.err
    # auto: ~38,000 records (input and warm start) by columns need ~0.23 GB
    monkeypatch.setattr(fastload, "available_memory", lambda: 0.25e9)
    assert evaluate_main(*args) == 0
    tight = capsys.readouterr()
    assert used[-1] == "run_records" and _timeless(tight.out) == _timeless(columns.out)
    assert tight.err.startswith("evaluate: by columns these ~0.0 million records would take")
    assert "more than 80% of the 0.2 GB available: reading them record by record" in tight.err
    monkeypatch.setattr(fastload, "available_memory", lambda: 0.3e9)
    assert evaluate_main(*args) == 0
    assert used[-1] == "run" and not capsys.readouterr().err
    monkeypatch.setattr(fastload, "available_memory", lambda: None)  # unknown: by columns
    assert evaluate_main(*args) == 0
    assert used[-1] == "run"


def test_evaluate_report_dir_that_is_a_file_exits_2_before_the_run(
    traffic: dict[str, Any], tmp_path: Path
) -> None:
    file = tmp_path / "report.md"
    file.write_text("not a directory")
    result = _evaluate("--input", str(traffic["root"] / "input"), "--report", str(file))
    assert result.returncode == 2
    assert f"--report {file} is an existing file, not a directory" in result.stderr
    assert "evaluated" not in result.stdout  # failed fast, before the run
    result = _evaluate("--input", str(traffic["root"] / "input"), "--report", str(file / "x"))
    assert result.returncode == 2
    assert f"--report {file / 'x'} cannot be used as the report directory" in result.stderr


def test_evaluate_warm_start_overlapping_the_input_exits_2_with_both_ranges(
    traffic: dict[str, Any], tmp_path: Path
) -> None:
    late = write_logins(tmp_path / "late", INPUT_START - 30 * MIN, 60, [], seed=3)
    result = _evaluate(
        "--input", str(traffic["root"] / "input"), "--warm-start", str(tmp_path / "late")
    )
    assert result.returncode == 2, result.stdout + result.stderr
    first, last = traffic["input"]
    assert (
        f"--warm-start history {tmp_path / 'late'} runs from {_utc(late[0])} to {_utc(late[1])}, "
        f"but the input {traffic['root'] / 'input'} runs from {_utc(first)} to {_utc(last)}"
    ) in result.stderr
    assert "the history must end before the input starts" in result.stderr


# -- the worker's warm start (RADAR_WARM_START) ----------------------------------------------


def test_worker_warm_start_pretrains_the_detection_agent(
    traffic: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from detectors.incidents import IncidentManager
    from streams.__main__ import warm_start_worker
    from streams.agents import detection

    engine, manager = DetectionEngine(10_000), IncidentManager()
    monkeypatch.setattr(detection, "engine", engine)
    monkeypatch.setattr(detection, "manager", manager)
    north = engine.detector(
        next(s for s in engine.signals if s.name == "logins.success_rate"),
        Segment("wallet", "region", "north"),
    )
    assert not north.warm
    from streams import evaluate, progress

    monkeypatch.setattr(progress, "LOG_INTERVAL", 0.0)  # a progress line at every count
    monkeypatch.setattr(evaluate, "SHOW_EVERY", 100)
    warm_start_worker(str(traffic["root"] / "history"))
    events = len((traffic["root"] / "history" / "logins.jsonl").read_text().splitlines())
    assert engine.windows_seen == 540 and north.warm
    # Learned, but the history's own outage is neither an incident nor still open.
    assert engine.lifecycles == {} and manager.incidents == []
    err = capsys.readouterr().err
    assert f"warm start: learned {events} history events in 540 windows" in err
    assert "warm start: 100 records, " in err and events > 200  # progress while it learns


def test_worker_warm_start_without_valid_history_says_so(tmp_path: Path) -> None:
    from detectors.incidents import IncidentManager
    from streams.evaluate import learn_history

    (tmp_path / "logins.jsonl").write_text('{"topic": "logins", "timestamp": 1, "value": {}}\n')
    with pytest.raises(RadarError) as err:
        learn_history(tmp_path, DetectionEngine(10_000), IncidentManager(), 5_000)
    assert f"RADAR_WARM_START history {tmp_path} holds no valid event to learn from (1 invalid" in (
        str(err.value)
    )
    assert "or unset RADAR_WARM_START" in str(err.value)


def test_worker_with_a_missing_warm_start_path_exits_1_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    result = subprocess.run(
        [sys.executable, "-m", "streams", "worker"], cwd=ROOT, capture_output=True, text=True,
        timeout=60, env={**os.environ, "RADAR_WARM_START": str(missing)},
    )  # fmt: skip
    assert result.returncode == 1
    assert f"RADAR_WARM_START={str(missing)!r} does not exist" in result.stderr
