"""Command line of the detection maths: ``python -m detectors score FILE.csv``.

``score`` reads a CSV export of one KPI (a time column and a value column), scores every row
with `detectors.series.KpiScorer`, strictly online, and writes the same rows with an
``anomaly_score`` column appended. The core (`score_csv`) is plain functions over text streams,
so it is tested without a subprocess.

"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import math
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TextIO

from detectors.series import KpiScorer

__all__ = ["ScoreInputError", "ScoreSummary", "main", "parse_time", "score_csv"]

SCORE_COLUMN = "anomaly_score"
#: Individual warnings printed before they are only counted.
MAX_WARNINGS = 10
_DELIMITERS = (",", ";", "\t", "|")
_NEWLINE = "\n"  # after a header line that had none (a header-only input)
_TIME_HELP = (
    "ISO 8601 (2014-04-01 00:00:00, 2014-04-01T00:00:00Z, 2014-04-01T02:00:00+02:00; naive times "
    "are UTC) or epoch seconds/milliseconds"
)


class ScoreInputError(Exception):
    """The input cannot be scored: the message names the problem and the fix (exit code 2)."""


@dataclass
class ScoreSummary:
    """What `score_csv` did."""

    rows: int = 0
    alarms: int = 0  # rows with a score >= KpiScorer.THRESHOLD
    bad_values: int = 0  # rows scored 0.0 because the value was missing or not a number
    bad_value_lines: list[int] = field(default_factory=list)  # the first few of them
    columns: list[str] = field(default_factory=list)


def parse_time(text: str) -> float:
    """Epoch seconds from an ISO 8601 time or an epoch number (s, ms, µs or ns).

    Numbers are read as seconds below 1e11, milliseconds below 1e14, microseconds below 1e17 and
    nanoseconds above (1e11 s is the year 5138; 1e11 ms is 1973). ISO times without a zone are
    UTC. Raises ValueError when the text is neither.

    >>> parse_time("2014-04-01 00:00:00")
    1396310400.0
    >>> parse_time("2014-04-01T02:00:00+02:00")
    1396310400.0
    >>> parse_time("1396310400000")
    1396310400.0

    """
    s = text.strip()
    try:
        number = float(s)
    except ValueError:
        number = math.nan
    if math.isfinite(number):
        magnitude = abs(number)
        if magnitude >= 1e17:
            return number / 1e9
        if magnitude >= 1e14:
            return number / 1e6
        if magnitude >= 1e11:
            return number / 1e3
        return number
    if s.lower() in ("nan", "inf", "-inf", "+inf", "infinity", "-infinity"):
        raise ValueError(f"not a time: {text!r}")
    moment = datetime.fromisoformat(s)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _records(lines: Iterator[str], quotechar: str = '"') -> Iterator[tuple[int, str]]:
    """(first line number, raw text) of each CSV record; quoted newlines stay in one record."""
    pending: list[str] = []
    start = 0
    quotes = 0
    for number, line in enumerate(lines, start=1):
        if not pending:
            start = number
        pending.append(line)
        quotes += line.count(quotechar)
        if quotes % 2 == 0:
            yield start, "".join(pending)
            pending = []
            quotes = 0
    if pending:
        yield start, "".join(pending)


def _split_terminator(raw: str) -> tuple[str, str]:
    """(record without its line terminator, the terminator)."""
    if raw.endswith("\r\n"):
        return raw[:-2], "\r\n"
    if raw.endswith(("\n", "\r")):
        return raw[:-1], raw[-1]
    return raw, ""


def _parse(record: str, delimiter: str) -> list[str]:
    return next(csv.reader([record], delimiter=delimiter), [])


def _pick_delimiter(header: str, wanted: Sequence[str]) -> str:
    """The delimiter that finds the wanted columns in the header (else the most fields)."""
    best, best_fields = ",", 0
    for delimiter in _DELIMITERS:
        names = [name.strip() for name in _parse(header, delimiter)]
        if all(w in names for w in wanted):
            return delimiter
        if len(names) > best_fields:
            best, best_fields = delimiter, len(names)
    return best


def score_csv(
    source: TextIO,
    sink: TextIO,
    time_column: str = "timestamp",
    value_column: str = "value",
    warnings: TextIO | None = None,
    scorer: KpiScorer | None = None,
) -> ScoreSummary:
    """Copy CSV `source` to `sink` with an ``anomaly_score`` column appended; return a summary.

    Every record is copied byte for byte (quoting, spacing, line endings and columns unchanged)
    and the score is appended with the file's own delimiter, six decimals. Rows are scored in
    file order, strictly online. Missing or non-numeric values score 0.0 and are reported on
    `warnings` (the first `MAX_WARNINGS` individually, then only counted). Blank lines are copied
    as they are and are not rows.

    Raises `ScoreInputError` for an empty input, a missing column (listing the columns found)
    or a time that cannot be parsed (with its line number). Output written before the error
    stays written: `main` writes ``--out`` files through a temporary file for that reason.

    """
    scorer = KpiScorer() if scorer is None else scorer
    summary = ScoreSummary()
    records = _records(iter(source))
    header_line, header = next(records, (0, ""))
    header_text, terminator = _split_terminator(header)
    if not header_text.strip():
        raise ScoreInputError(
            "the input is empty: expected a CSV header line naming a time column and a value "
            f"column (by default {time_column!r} and {value_column!r})"
        )
    delimiter = _pick_delimiter(header_text, (time_column, value_column))
    names = [name.strip() for name in _parse(header_text, delimiter)]
    summary.columns = names
    missing = [c for c in (time_column, value_column) if c not in names]
    if missing:
        option = "--time-column" if time_column in missing else "--value-column"
        raise ScoreInputError(
            f"column {missing[0]!r} not found in the header (line {header_line}); the columns "
            f"are: {', '.join(repr(n) for n in names)}. Name the right one with {option} NAME"
        )
    if SCORE_COLUMN in names and warnings is not None:
        print(
            f"warning: the input already has a {SCORE_COLUMN!r} column; another one is appended "
            "as the last column",
            file=warnings,
        )
    t_index = names.index(time_column)
    v_index = names.index(value_column)
    sink.write(f"{header_text}{delimiter}{SCORE_COLUMN}{terminator or _NEWLINE}")
    update = scorer.update
    threshold = KpiScorer.THRESHOLD
    for line, raw in records:
        text, end = _split_terminator(raw)
        if not text.strip():
            sink.write(raw)
            continue
        fields = text.split(delimiter) if '"' not in text else _parse(text, delimiter)
        if t_index >= len(fields):
            raise ScoreInputError(
                f"line {line}: the row has {len(fields)} fields and no {time_column!r} value; "
                "every row needs a time (fix or drop the row)"
            )
        cell = fields[t_index]
        try:
            t = parse_time(cell)
        except ValueError:
            raise ScoreInputError(
                f"line {line}: cannot read the time {cell!r} in column {time_column!r}; use "
                f"{_TIME_HELP}, or name another column with --time-column"
            ) from None
        value = _value(fields[v_index]) if v_index < len(fields) else None
        if value is None:
            summary.bad_values += 1
            if len(summary.bad_value_lines) < MAX_WARNINGS:
                summary.bad_value_lines.append(line)
                if warnings is not None:
                    shown = fields[v_index] if v_index < len(fields) else "<no field>"
                    print(
                        f"warning: line {line}: value {shown!r} in column {value_column!r} is "
                        "missing or not a number; scored 0.0 and not learned",
                        file=warnings,
                    )
            score = 0.0
        else:
            score = update(t, value)
        summary.rows += 1
        if score >= threshold:
            summary.alarms += 1
        sink.write(f"{text}{delimiter}{score:.6f}{end}")
    if summary.bad_values > MAX_WARNINGS and warnings is not None:
        print(
            f"warning: {summary.bad_values} rows in all had a missing or non-numeric "
            f"{value_column!r} value (only the first {MAX_WARNINGS} are listed above); they "
            "were scored 0.0",
            file=warnings,
        )
    return summary


def _value(cell: str) -> float | None:
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


# --------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m detectors",
        description="outage-radar detection maths, from the command line.",
    )
    commands = parser.add_subparsers(dest="command", required=True, title="commands")
    score = commands.add_parser(
        "score",
        help="append an anomaly_score column to a CSV export of one KPI",
        description=(
            "Score every row of a CSV export of one KPI, strictly online (a row's score uses "
            "only the rows above it and the row itself), and write the same rows with an "
            f"{SCORE_COLUMN!r} column in [0, 1] appended as the last column. Scores mean the "
            "same on every series: alarm at the suggested threshold "
            f"{KpiScorer.THRESHOLD} (a combined p-value of about 1e-3; 1.0 is p <= 1e-6). "
            f"The first {KpiScorer().warmup} rows are a warm-up and score 0.0. Rows are scored "
            "in file order, even when their times are not in order; irregular sampling and gaps "
            "are fine (a large gap resets the short-term state, it is not an anomaly). The file "
            "is streamed: any length works, in constant memory."
        ),
        epilog=(
            "Exit codes: 0 scored; 2 the input cannot be scored (missing file or column, empty "
            "input, unreadable time): the message names the fix. Rows whose value is empty or "
            "not a number score 0.0 and are reported on stderr."
        ),
    )
    score.add_argument(
        "file",
        metavar="FILE",
        help="CSV file with a header line; '-' reads standard input. Delimiter ',', ';', tab "
        "or '|' (found from the header); every column and row is copied unchanged.",
    )
    score.add_argument(
        "--time-column",
        default="timestamp",
        metavar="NAME",
        help=f"column holding the time: {_TIME_HELP} (default: %(default)s)",
    )
    score.add_argument(
        "--value-column",
        default="value",
        metavar="NAME",
        help="column holding the KPI value, a number (default: %(default)s)",
    )
    score.add_argument(
        "--out",
        metavar="PATH",
        help="write the scored CSV here instead of standard output (written through a "
        "temporary file: PATH is only replaced when scoring succeeds)",
    )
    score.add_argument(
        "--threshold-hint",
        action="store_true",
        help=f"after scoring, print to stderr the suggested alarm threshold "
        f"({KpiScorer.THRESHOLD}), what it means and how many rows reached it",
    )
    return parser


def _open_input(path: str) -> TextIO:
    if path == "-":
        return io.TextIOWrapper(
            sys.stdin.buffer, encoding="utf-8-sig", errors="surrogateescape", newline=""
        )
    try:
        return open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")
    except FileNotFoundError:
        raise ScoreInputError(
            f"no such file: {path!r}; give the path of a CSV file, or '-' to read standard input"
        ) from None
    except IsADirectoryError:
        raise ScoreInputError(f"{path!r} is a directory; give the path of a CSV file") from None
    except PermissionError:
        raise ScoreInputError(f"cannot read {path!r}: permission denied") from None


def _score_command(args: argparse.Namespace) -> int:
    source = _open_input(args.file)
    with contextlib.ExitStack() as stack:
        if args.file != "-":
            stack.enter_context(source)
        if args.out:
            directory = os.path.dirname(os.path.abspath(args.out))
            try:
                fd, tmp = tempfile.mkstemp(
                    prefix=".anomaly-score-", suffix=".csv.tmp", dir=directory
                )
            except OSError as error:
                raise ScoreInputError(
                    f"cannot write to {args.out!r} ({error.strerror}); choose another --out path"
                ) from None
            try:
                with open(fd, "w", encoding="utf-8", errors="surrogateescape", newline="") as sink:
                    summary = score_csv(
                        source, sink, args.time_column, args.value_column, sys.stderr
                    )
                os.replace(tmp, args.out)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        else:
            sink = io.TextIOWrapper(
                sys.stdout.buffer, encoding="utf-8", errors="surrogateescape", newline=""
            )
            try:
                summary = score_csv(source, sink, args.time_column, args.value_column, sys.stderr)
                sink.flush()
            finally:
                sink.detach()
    if args.threshold_hint:
        print(
            f"suggested threshold: {KpiScorer.THRESHOLD} (the same for every series; a "
            f"combined p-value of about 1e-3): {summary.alarms} of {summary.rows} rows at or "
            "above it",
            file=sys.stderr,
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "score":
            return _score_command(args)
    except ScoreInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`| head`): not an error. Keep Python from complaining at exit.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 0
    return 2  # pragma: no cover - argparse requires a command


if __name__ == "__main__":
    sys.exit(main())
