"""NAB-style evaluation of `detectors.series.KpiScorer` on a seeded synthetic labelled corpus.

``python -m bench.score_eval [--seeds N] [--family NAME] [--threshold T] [--verbose]``

Generates a varied set of synthetic KPI series with labelled anomaly onsets, scores each one
strictly online with a fresh `KpiScorer`, and scores the detections the way the Numenta Anomaly
Benchmark does:

* one anomaly window per label, centred on it, all windows of a series together covering 10 % of
  its rows (``int(0.1 * rows / anomalies)`` rows each);
* the first ``min(15 % of rows, 750)`` rows are probationary: not scored;
* the earliest detection in a window earns ``A_tp * S(y) / S(-1)`` with the scaled sigmoid
  ``S(y) = 2 / (1 + exp(5 y)) - 1`` of its relative position ``y`` in the window (-1 at the left
  edge, 0 at the right edge); later detections in the same window earn nothing more;
* every detection outside a window costs ``A_fp * S(y)`` (``y`` = distance past the previous
  window's right edge relative to its width, or a full ``-A_fp`` before any window);
* every window without a detection costs ``A_fn``;
* standard profile: ``A_tp = 1``, ``A_fp = -0.11``, ``A_fn = -1``; one threshold for the whole
  corpus, chosen to maximise the total; normalised to 0 (null detector) .. 100 (perfect).

It prints the normalised score, the chosen threshold, the score at the scorer's documented
threshold, a per-family breakdown and the scoring speed in rows per second.

Caveats: the corpus is synthetic and made by the same people who wrote the scorer, so it is easier
than real labelled data (anomalies are clean, labels sit exactly at the onset). Use it to catch
regressions and to compare ideas, not as a prediction of the figure on a real corpus.

"""

from __future__ import annotations

import argparse
import itertools
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from detectors.series import KpiScorer

T0 = 1_704_067_200.0  # 2024-01-01 00:00:00 UTC
DAY = 86_400.0

A_TP = 1.0
A_FP = -0.11
A_FN = -1.0


@dataclass(frozen=True)
class Series:
    """One labelled synthetic series: times (epoch s), values (NaN = missing), anomaly onsets."""

    name: str
    family: str
    t: np.ndarray
    y: np.ndarray
    labels: tuple[int, ...]


# ----------------------------------------------------------------------------- generators


def _regular(rows: int, step: float) -> np.ndarray:
    return T0 + step * np.arange(rows, dtype=float)


def _daily(t: np.ndarray, peak_hour: float = 14.0) -> np.ndarray:
    """A smooth daily profile in [0, 1] peaking at `peak_hour` (UTC)."""
    phase = 2 * np.pi * ((t % DAY) / DAY - peak_hour / 24.0)
    return 0.5 + 0.4 * np.cos(phase) + 0.1 * np.cos(2 * phase)


def _onsets(rng: np.random.Generator, rows: int, count: int) -> list[int]:
    """`count` onsets after 20 % of the series, well apart (at least 10 % of rows)."""
    lo, hi = int(0.2 * rows), int(0.92 * rows)
    while True:
        picks = sorted(int(i) for i in rng.integers(lo, hi, size=count))
        if all(b - a >= 0.1 * rows for a, b in itertools.pairwise(picks)):
            return picks


def gen_daily_seasonal(rng: np.random.Generator, i: int) -> Series:
    rows, step = 4032, 300.0
    t = _regular(rows, step)
    amp, noise = rng.uniform(20, 60), rng.uniform(1.0, 4.0)
    y = 10 + amp * _daily(t, rng.uniform(9, 18)) + rng.normal(0, noise, rows)
    kinds = ["spike", "shift", "dropout", "flat", "peakless"]
    onsets = _onsets(rng, rows, 2)
    for k, a in enumerate(onsets):
        kind = kinds[(i + k) % len(kinds)]
        if kind == "spike":
            y[a] += rng.choice([-1, 1]) * rng.uniform(6, 12) * noise + 0.3 * amp
        elif kind == "shift":
            y[a : a + 400] += rng.choice([-1, 1]) * rng.uniform(0.25, 0.4) * amp
        elif kind == "dropout":
            y[a : a + 12] = 0.0
        elif kind == "flat":
            y[a : a + 72] = np.mean(y[a - 288 : a])
        else:  # the daily pattern stays low for half a day
            y[a : a + 144] = y[a - 288 : a - 144] * 0 + 10 + 0.2 * amp + rng.normal(0, noise, 144)
    return Series(f"daily_seasonal_{i}", "daily_seasonal", t, y, tuple(onsets))


def gen_random_walk(rng: np.random.Generator, i: int) -> Series:
    rows, step = 5000, 60.0
    t = _regular(rows, step)
    steps = rng.normal(0, 1, rows)
    onsets = _onsets(rng, rows, 2)
    for k, a in enumerate(onsets):
        kind = ("jump", "spike", "variance")[(i + k) % 3]
        if kind == "jump":
            steps[a] += rng.choice([-1, 1]) * rng.uniform(15, 25)
        elif kind == "variance":
            steps[a : a + 300] *= 4
    y = 500 + np.cumsum(steps)
    for k, a in enumerate(onsets):
        if ("jump", "spike", "variance")[(i + k) % 3] == "spike":
            y[a] += rng.choice([-1, 1]) * rng.uniform(20, 40)
    return Series(f"random_walk_{i}", "random_walk", t, y, tuple(onsets))


def gen_server_metric(rng: np.random.Generator, i: int) -> Series:
    """CPU-like: AR(1) around a base, frequent harmless bursts, then a real problem."""
    rows, step = 4032, 300.0
    t = _regular(rows, step)
    base = rng.uniform(10, 40)
    e = np.zeros(rows)
    noise = rng.normal(0, 1.5, rows)
    for j in range(1, rows):
        e[j] = 0.7 * e[j - 1] + noise[j]
    bursts = (rng.random(rows) < 0.02) * rng.pareto(2.5, rows) * 8
    y = base + e + bursts
    a = _onsets(rng, rows, 1)[0]
    kind = ("runaway", "stuck", "spike", "shift")[i % 4]
    if kind == "runaway":
        y[a : a + 250] += np.linspace(0, 50, 250)
    elif kind == "stuck":
        y[a : a + 300] = y[a - 1]
    elif kind == "spike":
        y[a] = base + 95
    else:
        y[a:] += 20
    y = np.clip(y, 0, 100)
    return Series(f"server_metric_{i}", "server_metric", t, y, (a,))


def gen_flat_step(rng: np.random.Generator, i: int) -> Series:
    rows, step = 3000, 60.0
    t = _regular(rows, step)
    level = rng.uniform(1, 1000)
    noise = (0.0, 1e-4, 0.01)[i % 3] * level
    y = level + rng.normal(0, 1, rows) * noise
    a = _onsets(rng, rows, 1)[0]
    y[a:] += rng.choice([-1, 1]) * 0.05 * level
    return Series(f"flat_step_{i}", "flat_step", t, y, (a,))


def gen_constant(rng: np.random.Generator, i: int) -> Series:
    rows = 3000
    t = _regular(rows, 60.0)
    y = np.full(rows, (0.0, 1.0, 123.456)[i % 3])
    return Series(f"constant_{i}", "constant", t, y, ())


def gen_counts(rng: np.random.Generator, i: int) -> Series:
    """Poisson counts with many zeros at night; a burst or an outage (zeros in the day)."""
    rows, step = 4032, 300.0
    t = _regular(rows, step)
    lam = 0.1 + rng.uniform(2, 8) * _daily(t, 15.0) ** 2
    a = _onsets(rng, rows, 1)[0]
    if i % 2 == 0:
        lam[a : a + 24] *= 6
    else:
        # an outage during the day: shift the onset to the next 11:00 UTC
        a = int(a - (a % 288) + 132) if (a % 288) < 132 else int(a - (a % 288) + 288 + 132)
        a = min(a, rows - 100)
        lam[a : a + 72] = 0.0
    y = rng.poisson(lam).astype(float)
    return Series(f"counts_{i}", "counts", t, y, (a,))


def gen_irregular(rng: np.random.Generator, i: int) -> Series:
    """Irregular sampling (exponential gaps) with a few long outages of the exporter."""
    rows = 4000
    dt = rng.exponential(60.0, rows)
    for g in rng.integers(200, rows - 200, size=3):
        dt[g] += rng.uniform(2, 6) * 3600
    t = T0 + np.cumsum(dt)
    e = np.zeros(rows)
    noise = rng.normal(0, 1, rows)
    for j in range(1, rows):
        e[j] = 0.5 * e[j - 1] + noise[j]
    y = 10 + e
    a = _onsets(rng, rows, 1)[0]
    if i % 2 == 0:
        y[a:] += 6
    else:
        y[a] += 12
    missing = rng.random(rows) < 0.01
    y[missing & (np.arange(rows) != a)] = np.nan
    return Series(f"irregular_{i}", "irregular", t, y, (a,))


def gen_drift(rng: np.random.Generator, i: int) -> Series:
    rows, step = 4000, 600.0
    t = _regular(rows, step)
    y = 50 + rng.normal(0, 1, rows)
    a = _onsets(rng, rows, 1)[0]
    y[a:] += np.minimum(np.arange(rows - a) * 0.02, 12)
    return Series(f"drift_{i}", "drift", t, y, (a,))


def gen_variance(rng: np.random.Generator, i: int) -> Series:
    rows, step = 4000, 60.0
    t = _regular(rows, step)
    sigma = np.ones(rows)
    a = _onsets(rng, rows, 1)[0]
    sigma[a : a + 300] = 4.0
    y = 20 + rng.normal(0, 1, rows) * sigma
    return Series(f"variance_{i}", "variance", t, y, (a,))


def gen_weekly(rng: np.random.Generator, i: int) -> Series:
    """Taxi-like: 30-minute counts, daily shape, quieter weekends; a holiday and a surge."""
    rows, step = 3360, 1800.0
    t = _regular(rows, step)
    day = ((t - T0) // DAY).astype(int)
    weekend = (day % 7) >= 5
    level = np.where(weekend, 0.6, 1.0) * rng.uniform(5000, 20000)
    y = level * (0.2 + _daily(t, 18.0)) * (1 + rng.normal(0, 0.04, rows))
    onsets = []
    holiday = int(rng.integers(3, 8)) * 7 + 2  # a Wednesday
    a = holiday * 48
    y[a : a + 48] *= 0.55
    onsets.append(a)
    surge = int(rng.integers(int(0.75 * rows), rows - 60))
    y[surge : surge + 8] *= 1.8
    onsets.append(surge)
    return Series(f"weekly_{i}", "weekly", t, y, tuple(sorted(onsets)))


def gen_noise_only(rng: np.random.Generator, i: int) -> Series:
    """No anomaly at all: heavy-tailed noise, sometimes seasonal (false alarms only)."""
    rows, step = 4032, 300.0
    t = _regular(rows, step)
    y = 100 + rng.standard_t(4, rows) * 3
    if i % 2:
        y += 40 * _daily(t, 12.0)
    return Series(f"noise_only_{i}", "noise_only", t, y, ())


GENERATORS: dict[str, Callable[[np.random.Generator, int], Series]] = {
    "daily_seasonal": gen_daily_seasonal,
    "random_walk": gen_random_walk,
    "server_metric": gen_server_metric,
    "flat_step": gen_flat_step,
    "constant": gen_constant,
    "counts": gen_counts,
    "irregular": gen_irregular,
    "drift": gen_drift,
    "variance": gen_variance,
    "weekly": gen_weekly,
    "noise_only": gen_noise_only,
}


def corpus(seeds: int = 4, families: Iterable[str] | None = None) -> list[Series]:
    """The synthetic corpus: `seeds` series of each family (deterministic)."""
    out = []
    for f, (family, gen) in enumerate(GENERATORS.items()):
        if families is not None and family not in families:
            continue
        for i in range(seeds):
            out.append(gen(np.random.default_rng(1000 * f + i), i))
    return out


# ----------------------------------------------------------------------------- NAB scoring


def scaled_sigmoid(y: float) -> float:
    """NAB's reward curve: ~1 at the left edge of a window (y=-1), 0 at its right edge (y=0)."""
    if y >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


@dataclass(frozen=True)
class Row:
    score: float
    weight: float  # what a detection here is worth (already weighted by the profile)
    window: str | None  # window id, None outside windows


def sweep_rows(s: Series, scores: list[float]) -> tuple[list[Row], list[str]]:
    """NAB's per-row detection values for one series (probationary rows dropped), its windows."""
    rows = len(scores)
    probation = min(math.floor(0.15 * rows), 750)
    if s.labels:
        width = int(0.1 * rows / len(s.labels))
        windows = [(max(a - width // 2, 0), min(a + width // 2, rows - 1)) for a in s.labels]
    else:
        windows = []
    names = [f"{s.name}|{k}" for k in range(len(windows))]
    max_tp = scaled_sigmoid(-1.0)
    out: list[Row] = []
    w = 0
    prev_right: int | None = None
    prev_width = 0.0
    for i, score in enumerate(scores):
        inside = w < len(windows) and windows[w][0] <= i <= windows[w][1]
        if inside:
            left, right = windows[w]
            width_w = right - left + 1.0
            pos = -(right - i + 1) / width_w
            weight = scaled_sigmoid(pos) * A_TP / max_tp
            name: str | None = names[w]
        else:
            pos = 3.0 if prev_right is None else abs(prev_right - i) / (prev_width - 1.0)
            weight = scaled_sigmoid(pos) * -A_FP
            name = None
        if i >= probation:
            out.append(Row(score, weight, name))
        if inside and i == windows[w][1]:
            prev_right, prev_width = i, windows[w][1] - windows[w][0] + 1.0
            w += 1
    return out, names


def best_threshold(rows: list[Row], windows: list[str]) -> list[tuple[float, float]]:
    """(threshold, raw NAB score) for every distinct threshold, highest threshold first."""
    ordered = sorted(rows, key=lambda r: r.score, reverse=True)
    parts = {name: A_FN for name in windows}
    total = A_FN * len(windows)  # every window missed
    fp = 0.0
    out = [(math.inf, total)]
    i = 0
    while i < len(ordered):
        threshold = ordered[i].score
        while i < len(ordered) and ordered[i].score == threshold:
            r = ordered[i]
            if r.window is None:
                fp += r.weight
            elif r.weight > parts[r.window]:
                total += r.weight - parts[r.window]
                parts[r.window] = r.weight
            i += 1
        out.append((threshold, total + fp))
    return out


def normalise(raw: float, windows: int) -> float:
    null, perfect = A_FN * windows, A_TP * windows
    return 100.0 * (raw - null) / (perfect - null)


def score_at(rows: list[Row], windows: list[str], threshold: float) -> float:
    """Raw NAB score of detections `score >= threshold`."""
    parts = dict.fromkeys(windows, A_FN)
    fp = 0.0
    for r in rows:
        if r.score >= threshold:
            if r.window is None:
                fp += r.weight
            else:
                parts[r.window] = max(parts[r.window], r.weight)
    return sum(parts.values()) + fp


# ----------------------------------------------------------------------------- main


def run_scorer(s: Series) -> list[float]:
    """`KpiScorer` scores of one series, strictly online (a fresh scorer per series)."""
    update = KpiScorer().update
    return [update(float(t), float(v)) for t, v in zip(s.t, s.y, strict=True)]


def run_windowed_gaussian(s: Series, window: int = 500) -> list[float]:
    """Reference point: NAB's "windowed Gaussian" idea, online.

    The score is the two-sided normal tail `1 - 2 Q(|z|)` of the value against the mean and
    standard deviation of the previous `window` values (0 for the first 10 values). It tells how
    hard the synthetic corpus is for a plain detector.
    """
    y = np.nan_to_num(s.y, nan=np.nanmedian(s.y))
    out = []
    for i in range(len(y)):
        past = y[max(0, i - window) : i]
        if len(past) < 10:
            out.append(0.0)
            continue
        sd = float(past.std())
        z = abs(y[i] - float(past.mean())) / sd if sd > 0 else (0.0 if y[i] == past[-1] else 99.0)
        out.append(math.erf(z / math.sqrt(2.0)))
    return out


def nab_score(per_series: list[tuple[Series, list[float]]]) -> tuple[float, float]:
    """(normalised NAB standard score, best threshold) of a detector's scores on the corpus."""
    rows: list[Row] = []
    windows: list[str] = []
    for s, scores in per_series:
        r, w = sweep_rows(s, scores)
        rows += r
        windows += w
    threshold, raw = max(best_threshold(rows, windows), key=lambda c: c[1])
    return normalise(raw, len(windows)), threshold


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8, help="Series per family (default 8).")
    parser.add_argument("--family", action="append", help="Only this family (repeatable).")
    parser.add_argument(
        "--threshold",
        type=float,
        default=KpiScorer.THRESHOLD,
        help="Also report the score at this fixed threshold (default: the documented one).",
    )
    parser.add_argument("--verbose", action="store_true", help="Per-series detail.")
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="Also score a plain windowed-Gaussian detector, for scale (slow: numpy per row).",
    )
    args = parser.parse_args(argv)

    series = corpus(args.seeds, args.family)
    all_rows: list[Row] = []
    all_windows: list[str] = []
    per_series: list[tuple[Series, list[Row], list[str], list[float]]] = []
    n_rows = 0
    elapsed = 0.0
    for s in series:
        started = time.perf_counter()
        scores = run_scorer(s)
        elapsed += time.perf_counter() - started
        n_rows += len(scores)
        rows, windows = sweep_rows(s, scores)
        all_rows += rows
        all_windows += windows
        per_series.append((s, rows, windows, scores))

    curve = best_threshold(all_rows, all_windows)
    threshold, raw = max(curve, key=lambda c: c[1])
    print(f"series={len(series)} rows={n_rows} windows={len(all_windows)}")
    print(
        f"NAB standard score={normalise(raw, len(all_windows)):.1f} "
        f"at best threshold={threshold:.4f}"
    )
    fixed = score_at(all_rows, all_windows, args.threshold)
    print(
        f"NAB standard score={normalise(fixed, len(all_windows)):.1f} at threshold={args.threshold}"
    )
    print(f"speed rows_per_s={n_rows / elapsed:.0f}")

    print(f"{'family':<16}{'windows':>8}{'detected':>9}{'fp_rows':>8}{'raw':>8}  (at best)")
    families: dict[str, list[tuple[Series, list[Row], list[str], list[float]]]] = {}
    for item in per_series:
        families.setdefault(item[0].family, []).append(item)
    for family, items in families.items():
        wins = sum(len(w) for _, _, w, _ in items)
        raw_f = sum(score_at(r, w, threshold) for _, r, w, _ in items)
        fps = sum(
            1 for _, r, _, _ in items for row in r if row.window is None and row.score >= threshold
        )
        det = sum(
            1
            for _, r, w, _ in items
            for name in w
            if any(row.window == name and row.score >= threshold for row in r)
        )
        print(f"{family:<16}{wins:>8}{det:>9}{fps:>8}{raw_f:>8.2f}")
        if args.verbose:
            for s, _, _, scores in items:
                fp_idx = [i for i, v in enumerate(scores) if v >= threshold]
                print(f"   {s.name:<20} labels={list(s.labels)} alarms={fp_idx[:12]}")
    if args.baseline:
        base, base_threshold = nab_score([(s, run_windowed_gaussian(s)) for s in series])
        print(
            f"reference: windowed Gaussian NAB standard score={base:.1f} "
            f"at best threshold={base_threshold:.4f}"
        )
    print(
        "caveat: synthetic corpus, written with the scorer (clean anomalies, labels exactly at "
        "the onset); expect less on real labelled data"
    )


if __name__ == "__main__":
    main()
