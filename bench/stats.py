"""Pure helpers of the benchmarks: medians, percentiles, rates, the table and the last line.

No Kafka, no clock: everything here is tested offline (``tests/bench/``).

The last line of ``make bench`` is exactly::

    bench: worker_eps=W raw_eps=R ratio_raw=W/R naive_eps=N ratio_naive=W/N p99_ms=L evaluate_eps=E

where ``W``, ``R``, ``N``, ``E`` are events per second (integers), the ratios are the quotients
(three significant digits) and ``L`` is milliseconds (integer). A figure that could not be
measured (its benchmark failed) is written ``nan``, so the line always has all seven fields.

>>> print(last_line(worker_eps=50_000, raw_eps=200_000, naive_eps=2_500, p99_ms=412.7,
...                  evaluate_eps=1_200_000))  # doctest: +NORMALIZE_WHITESPACE
bench: worker_eps=50000 raw_eps=200000 ratio_raw=0.25 naive_eps=2500 ratio_naive=20
       p99_ms=413 evaluate_eps=1200000
>>> parse_last_line(last_line(50_000, None, 2_500, 412.7, 1_200_000))["ratio_raw"]
nan
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

LAST_LINE_FIELDS = (
    "worker_eps",
    "raw_eps",
    "ratio_raw",
    "naive_eps",
    "ratio_naive",
    "p99_ms",
    "evaluate_eps",
)

_NUMBER = r"(?:nan|-?\d+(?:\.\d+)?(?:e[+-]?\d+)?)"
LAST_LINE_RE = re.compile(
    r"^bench: " + " ".join(f"{name}=({_NUMBER})" for name in LAST_LINE_FIELDS) + r"$"
)


def median(values: Iterable[float]) -> float:
    """Median of the finite values (``nan`` when there are none).

    >>> median([3.0, 1.0, 2.0]), median([4, 1, 3, 2]), median([])
    (2.0, 2.5, nan)
    """
    xs = sorted(v for v in values if v is not None and math.isfinite(v))
    if not xs:
        return math.nan
    mid = len(xs) // 2
    return float(xs[mid]) if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2.0


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), interpolating linearly between the closest ranks.

    The same definition as ``numpy.percentile``'s default (``method="linear"``): the sorted
    values sit at ranks 0..n-1 and the percentile is read at rank ``q/100 * (n-1)``.

    >>> percentile([10, 20, 30, 40], 50), percentile([10, 20, 30, 40], 100)
    (25.0, 40.0)
    >>> percentile(list(range(1, 101)), 99)
    99.01
    """
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be within 0..100, got {q}")
    xs = sorted(values)
    if not xs:
        return math.nan
    rank = q / 100.0 * (len(xs) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(xs) - 1)
    frac = rank - low
    return float(xs[low] + (xs[high] - xs[low]) * frac)


def rate(count: float, seconds: float) -> float:
    """``count / seconds``, ``nan`` when the time is not positive.

    >>> rate(1000, 2.0), rate(5, 0.0)
    (500.0, nan)
    """
    if seconds is None or not seconds > 0 or not math.isfinite(seconds):
        return math.nan
    return count / seconds


def ratio(a: float | None, b: float | None) -> float:
    """``a / b``; ``nan`` if either is missing or ``b`` is not positive."""
    if a is None or b is None or not math.isfinite(a) or not math.isfinite(b) or b <= 0:
        return math.nan
    return a / b


def _int(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "nan"
    return str(round(value))


def _sig3(value: float) -> str:
    """Three significant digits, no exponent, trailing zeros dropped.

    >>> _sig3(0.04213), _sig3(12.345), _sig3(20.0), _sig3(1234.5)
    ('0.0421', '12.3', '20', '1234')
    """
    if not math.isfinite(value):
        return "nan"
    if value == 0:
        return "0"
    digits = max(0, 2 - math.floor(math.log10(abs(value))))
    text = f"{value:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def last_line(
    worker_eps: float | None,
    raw_eps: float | None,
    naive_eps: float | None,
    p99_ms: float | None,
    evaluate_eps: float | None,
) -> str:
    """The exact last line of ``make bench`` (see the module docstring)."""
    return (
        f"bench: worker_eps={_int(worker_eps)} raw_eps={_int(raw_eps)} "
        f"ratio_raw={_sig3(ratio(worker_eps, raw_eps))} naive_eps={_int(naive_eps)} "
        f"ratio_naive={_sig3(ratio(worker_eps, naive_eps))} p99_ms={_int(p99_ms)} "
        f"evaluate_eps={_int(evaluate_eps)}"
    )


def parse_last_line(line: str) -> dict[str, float]:
    """The figures of a last line (``nan`` for unmeasured ones); ``ValueError`` if malformed."""
    found = LAST_LINE_RE.match(line.strip())
    if found is None:
        raise ValueError(
            f"not a bench last line: {line.strip()!r}; expected 'bench: "
            + " ".join(f"{name}=<number|nan>" for name in LAST_LINE_FIELDS)
            + "'"
        )
    return {name: float(v) for name, v in zip(LAST_LINE_FIELDS, found.groups(), strict=True)}


@dataclass(frozen=True)
class Row:
    """One line of the results table."""

    figure: str
    value: str
    target: str = ""
    verdict: str = ""  # "met", "MISSED" or "" (no target)
    note: str = ""


def verdict(value: float | None, target: float, higher_is_better: bool = True) -> str:
    """``met`` / ``MISSED`` against a target, ``n/a`` when the value is missing.

    >>> verdict(60_000, 50_000), verdict(900, 1_000, higher_is_better=False), verdict(None, 1)
    ('met', 'met', 'n/a')
    """
    if value is None or not math.isfinite(value):
        return "n/a"
    ok = value >= target if higher_is_better else value <= target
    return "met" if ok else "MISSED"


def table(rows: Sequence[Row]) -> str:
    """Rows as an aligned plain-text table (the note column is left unpadded).

    >>> print(table([Row("worker", "51000 ev/s", ">= 50000", "met", "median of 3")]))
    figure  value       target    verdict  how
    ------  ----------  --------  -------  -----------
    worker  51000 ev/s  >= 50000  met      median of 3
    """
    header = Row("figure", "value", "target", "verdict", "how")
    cols = [[r.figure, r.value, r.target, r.verdict, r.note] for r in (header, *rows)]
    widths = [max(len(c[i]) for c in cols) for i in range(5)]
    lines = []
    for i, c in enumerate(cols):
        lines.append("  ".join(c[j].ljust(widths[j]) for j in range(5)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def fmt_eps(value: float | None) -> str:
    """Events per second for the table.

    >>> fmt_eps(51234.6), fmt_eps(None)
    ('51,235 ev/s', 'n/a')
    """
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:,.0f} ev/s"


def spread(values: Sequence[float]) -> str:
    """``median [min..max] of n`` for a note.

    >>> spread([3.0, 1.0, 2.0])
    'median of 3, range 1..3'
    """
    xs = [v for v in values if v is not None and math.isfinite(v)]
    if not xs:
        return "no run measured"
    return f"median of {len(xs)}, range {_num(min(xs))}..{_num(max(xs))}"


def _num(value: float) -> str:
    """A figure for notes: thousands separated from 1,000 up, 3 significant digits below.

    >>> _num(52415.3), _num(718.6), _num(0.04213)
    ('52,415', '719', '0.0421')
    """
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return _sig3(value)


def format_figures(figures: Mapping[str, float]) -> str:
    """``key=value`` pairs, values rounded sensibly (a module's own summary line).

    >>> format_figures({"events": 1000, "eps": 1234.56, "ratio": 0.25})
    'events=1000 eps=1235 ratio=0.25'
    """
    parts = []
    for k, v in figures.items():
        if isinstance(v, float) and math.isfinite(v) and abs(v) < 100:
            parts.append(f"{k}={_sig3(v)}")
        else:
            parts.append(f"{k}={_int(v)}")
    return " ".join(parts)
