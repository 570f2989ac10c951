"""Tests for ``python -m detectors score`` (detectors/__main__.py)."""

from __future__ import annotations

import csv
import io
import math
import os
import random
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from detectors.__main__ import MAX_WARNINGS, ScoreInputError, main, parse_time, score_csv
from detectors.series import KpiScorer

T0 = 1_396_310_400  # 2014-04-01 00:00:00 UTC
ROWS = 700


def kpi_values(rows: int = ROWS, seed: int = 3) -> list[float]:
    rng = random.Random(seed)
    values = [100 + 40 * math.sin(2 * math.pi * i / 288) + rng.gauss(0, 3) for i in range(rows)]
    values[600] = 0.0  # a dropout
    return values


def iso(t: float, sep: str = " ") -> str:
    return datetime.fromtimestamp(t, UTC).strftime(f"%Y-%m-%d{sep}%H:%M:%S")


def write_csv(
    path: Path, times: list[str], values: list[str], header: str = "timestamp,value"
) -> Path:
    lines = [header] + [f"{t},{v}" for t, v in zip(times, values, strict=True)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def default_csv(tmp_path: Path) -> Path:
    values = kpi_values()
    return write_csv(
        tmp_path / "kpi.csv",
        [iso(T0 + 300 * i) for i in range(ROWS)],
        [f"{v:.4f}" for v in values],
    )


def expected_scores(values: list[float]) -> list[float]:
    scorer = KpiScorer()
    return [round(scorer.update(T0 + 300 * i, v), 6) for i, v in enumerate(values)]


def run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def read_rows(text: str, delimiter: str = ",") -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))


# ---------------------------------------------------------------- the output


def test_output_keeps_every_column_and_row_and_appends_the_score_last(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = default_csv(tmp_path)
    code, out, err = run_main(["score", str(path)], capsys)
    assert code == 0, err
    rows = read_rows(out)
    original = read_rows(path.read_text(encoding="utf-8"))
    assert rows[0] == ["timestamp", "value", "anomaly_score"]
    assert len(rows) == len(original) == ROWS + 1
    assert [r[:-1] for r in rows] == original
    scores = [float(r[-1]) for r in rows[1:]]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert all(len(r[-1].split(".")[1]) == 6 for r in rows[1:])
    values = [float(r[1]) for r in original[1:]]
    assert scores == expected_scores(values)
    assert scores[600] >= KpiScorer.THRESHOLD


def test_odd_columns_and_quoting_round_trip_byte_for_byte() -> None:
    lines = [
        'id,"timestamp","the value","note, with comma"\r\n',
        '1,2014-04-01 00:00:00,1.5,"she said ""hi"""\r\n',
        '2,2014-04-01 00:05:00,  2.5 ,"two\r\nlines"\r\n',
        "3,2014-04-01 00:10:00,,plain\r\n",
        "\r\n",
        "4,2014-04-01 00:15:00,4.0,  spaced  \r\n",
        "5,2014-04-01 00:20:00,5.0,é ü ✓",
    ]
    sink = io.StringIO(newline="")
    warnings = io.StringIO()
    summary = score_csv(
        io.StringIO("".join(lines), newline=""), sink, "timestamp", "the value", warnings
    )
    out = sink.getvalue()
    expected = [
        'id,"timestamp","the value","note, with comma",anomaly_score\r\n',
        '1,2014-04-01 00:00:00,1.5,"she said ""hi""",0.000000\r\n',
        '2,2014-04-01 00:05:00,  2.5 ,"two\r\nlines",0.000000\r\n',
        "3,2014-04-01 00:10:00,,plain,0.000000\r\n",
        "\r\n",
        "4,2014-04-01 00:15:00,4.0,  spaced  ,0.000000\r\n",
        "5,2014-04-01 00:20:00,5.0,é ü ✓,0.000000",
    ]
    assert out == "".join(expected)
    assert summary.rows == 5
    assert summary.bad_values == 1
    assert "line 5" in warnings.getvalue()  # after a quoted newline: lines count physically
    assert summary.columns == ["id", "timestamp", "the value", "note, with comma"]


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_the_file_delimiter_is_kept(delimiter: str) -> None:
    text = f"timestamp{delimiter}value{delimiter}host\n" + "".join(
        f"{iso(T0 + 60 * i)}{delimiter}{i % 7}{delimiter}h,{i}\n" for i in range(20)
    )
    sink = io.StringIO()
    score_csv(io.StringIO(text), sink)
    rows = read_rows(sink.getvalue(), delimiter)
    assert rows[0] == ["timestamp", "value", "host", "anomaly_score"]
    assert all(len(r) == 4 for r in rows)
    assert rows[5][2] == "h,4"


def test_time_and_value_columns_can_be_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    values = kpi_values()
    path = write_csv(
        tmp_path / "named.csv",
        [iso(T0 + 300 * i, "T") + "Z" for i in range(ROWS)],
        [f"{v:.4f},x" for v in values],
        header="when,latency_ms,extra",
    )
    code, out, err = run_main(
        ["score", str(path), "--time-column", "when", "--value-column", "latency_ms"], capsys
    )
    assert code == 0, err
    rows = read_rows(out)
    assert rows[0] == ["when", "latency_ms", "extra", "anomaly_score"]
    assert [float(r[-1]) for r in rows[1:]] == expected_scores([float(r[1]) for r in rows[1:]])


@pytest.mark.parametrize(
    "render",
    [
        lambda t: iso(t),
        lambda t: iso(t, "T"),
        lambda t: iso(t, "T") + "Z",
        lambda t: datetime.fromtimestamp(t + 7200, UTC).strftime("%Y-%m-%dT%H:%M:%S+02:00"),
        lambda t: str(t),
        lambda t: f"{t}.0",
        lambda t: str(t * 1000),
    ],
    ids=["iso_space", "iso_t", "iso_z", "iso_offset", "epoch_s", "epoch_s_float", "epoch_ms"],
)
def test_iso_and_epoch_times_give_the_same_scores(render: object) -> None:
    values = kpi_values()
    text = "timestamp,value\n" + "".join(
        f"{render(T0 + 300 * i)},{v:.4f}\n"  # type: ignore[operator]
        for i, v in enumerate(values)
    )
    sink = io.StringIO()
    score_csv(io.StringIO(text), sink)
    scores = [float(r[-1]) for r in read_rows(sink.getvalue())[1:]]
    assert scores == expected_scores([round(v, 4) for v in values])


def test_parse_time_units() -> None:
    assert parse_time("1396310400") == T0
    assert parse_time("1396310400000") == T0
    assert parse_time("1396310400000000") == T0
    assert parse_time("1396310400000000000") == T0
    assert parse_time(" 2014-04-01 ") == T0
    with pytest.raises(ValueError):
        parse_time("01/04/2014 00:00")
    with pytest.raises(ValueError):
        parse_time("nan")


def test_rows_out_of_time_order_are_scored_in_file_order() -> None:
    text = "timestamp,value\n" + "".join(f"{T0 + 60 * ((i * 7) % 50)},{i % 5}\n" for i in range(50))
    sink = io.StringIO()
    assert score_csv(io.StringIO(text), sink).rows == 50


# --------------------------------------------------------------- bad values


def test_bad_values_score_zero_with_a_warning_per_line_then_a_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    values = [f"{v:.3f}" for v in kpi_values()]
    bad = list(range(200, 200 + 3 * (MAX_WARNINGS + 5), 3))
    for i in bad:
        values[i] = "n/a" if i % 2 else ""
    path = write_csv(tmp_path / "bad.csv", [iso(T0 + 300 * i) for i in range(ROWS)], values)
    code, out, err = run_main(["score", str(path)], capsys)
    assert code == 0
    rows = read_rows(out)
    assert all(rows[i + 1][-1] == "0.000000" for i in bad)
    assert len(rows) == ROWS + 1
    lines = [line for line in err.splitlines() if line.startswith("warning: line")]
    assert len(lines) == MAX_WARNINGS
    assert lines[0].startswith(f"warning: line {bad[0] + 2}: value ")
    assert f"{len(bad)} rows in all" in err


# ------------------------------------------------------------------- errors


def test_a_missing_column_exits_2_and_lists_the_columns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = default_csv(tmp_path)
    code, _, err = run_main(["score", str(path), "--value-column", "latency"], capsys)
    assert code == 2
    assert "'latency' not found" in err
    assert "'timestamp', 'value'" in err
    assert "--value-column" in err
    code, _, err = run_main(["score", str(path), "--time-column", "ts"], capsys)
    assert code == 2
    assert "'ts' not found" in err and "--time-column" in err


def test_a_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(["score", str(tmp_path / "nope.csv")], capsys)
    assert code == 2
    assert "no such file" in err


@pytest.mark.parametrize("text", ["", "\n", "\n\n"], ids=["empty", "newline", "blank_lines"])
def test_an_empty_file_exits_2(
    text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "empty.csv"
    path.write_text(text)
    code, _, err = run_main(["score", str(path)], capsys)
    assert code == 2
    assert "empty" in err


def test_a_header_only_file_gives_a_header_only_output() -> None:
    sink = io.StringIO()
    assert score_csv(io.StringIO("timestamp,value\n"), sink).rows == 0
    assert sink.getvalue() == "timestamp,value,anomaly_score\n"


def test_an_unparseable_time_exits_2_with_its_line_and_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    times = [iso(T0 + 300 * i) for i in range(10)]
    times[6] = "01/04/2014 00:30"
    path = write_csv(tmp_path / "t.csv", times, ["1.0"] * 10)
    code, _, err = run_main(["score", str(path)], capsys)
    assert code == 2
    assert "line 8" in err and "'01/04/2014 00:30'" in err and "ISO 8601" in err


def test_a_row_without_a_time_field_exits_2() -> None:
    with pytest.raises(ScoreInputError, match="line 3"):
        score_csv(io.StringIO("value,timestamp\n1,2014-04-01\n2\n"), io.StringIO())


# ------------------------------------------------------------- stdin, --out


def test_stdin_dash_through_the_real_entry_point(tmp_path: Path) -> None:
    path = default_csv(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "detectors", "score", "-", "--threshold-hint"],
        input=path.read_bytes(),
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    rows = read_rows(result.stdout.decode())
    assert len(rows) == ROWS + 1 and rows[0][-1] == "anomaly_score"
    assert b"suggested threshold: 0.5" in result.stderr


def test_out_writes_the_file_and_nothing_on_stdout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = default_csv(tmp_path)
    target = tmp_path / "scored.csv"
    code, out, err = run_main(["score", str(path), "--out", str(target)], capsys)
    assert code == 0, err
    assert out == ""
    rows = read_rows(target.read_text(encoding="utf-8"))
    assert len(rows) == ROWS + 1 and rows[0][-1] == "anomaly_score"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".anomaly-score-")] == []


def test_a_failed_run_leaves_an_existing_out_file_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_csv(tmp_path / "t.csv", ["2014-04-01", "not a time"], ["1", "2"])
    target = tmp_path / "scored.csv"
    target.write_text("precious\n")
    code, _, _ = run_main(["score", str(path), "--out", str(target)], capsys)
    assert code == 2
    assert target.read_text() == "precious\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scored.csv", "t.csv"]


def test_out_can_be_the_input_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = default_csv(tmp_path)
    code, _, err = run_main(["score", str(path), "--out", str(path)], capsys)
    assert code == 0, err
    assert len(read_rows(path.read_text())) == ROWS + 1


def test_help_documents_every_option_the_threshold_and_the_order(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["score", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for option in ("--time-column", "--value-column", "--out", "--threshold-hint", "FILE"):
        assert option in text
    assert "threshold 0.5" in text
    assert "file order" in text
    assert "'-' reads standard input" in text


def test_a_utf8_bom_does_not_hide_the_first_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbftimestamp,value\n2014-04-01 00:00:00,1\n")
    code, out, err = run_main(["score", str(path)], capsys)
    assert code == 0, err
    assert out.splitlines()[0] == "timestamp,value,anomaly_score"


def test_non_utf8_bytes_are_copied_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"timestamp,value,city\n2014-04-01 00:00:00,1,S\xe3o Paulo\n")
    result = subprocess.run(
        [sys.executable, "-m", "detectors", "score", str(path)],
        capture_output=True,
        check=False,
        timeout=60,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    assert result.returncode == 0, result.stderr
    assert (
        result.stdout
        == b"timestamp,value,city,anomaly_score\n2014-04-01 00:00:00,1,S\xe3o Paulo,0.000000\n"
    )


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    assert "score" in capsys.readouterr().err


def test_the_cli_module_doctests_pass() -> None:
    # pytest's --doctest-modules does not collect __main__.py files: run them here.
    import doctest

    import detectors.__main__ as cli

    result = doctest.testmod(cli, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 3
    assert result.failed == 0
