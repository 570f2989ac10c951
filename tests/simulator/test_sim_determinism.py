"""Same seed and options -> byte-identical files, whatever PYTHONHASHSEED; other seed -> other."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from simulator import TOPICS, build_plan, simulate

#: A short momo run: exercises accounts, glitches, link removals, maintenance and pending work.
OPTIONS: dict[str, Any] = dict(
    scenario="momo",
    start="2025-10-19T08:00:00Z",
    days=1.5 / 24,
    rate=3,
    onset_hour=8.5,
    duration_minutes=40,
)
NAMES = [*(f"{t}.jsonl" for t in TOPICS), "labels.json", "benign.json"]

SCRIPT = """
import sys
from simulator import build_plan, simulate
simulate(build_plan(seed=7, **{options!r}), sys.argv[1])
"""


def _files(directory: Path, names: list[str]) -> dict[str, bytes]:
    return {name: (directory / name).read_bytes() for name in names}


def test_same_seed_same_bytes_across_hash_seeds(tmp_path: Path) -> None:
    outputs = []
    for hash_seed in ("1", "2"):
        out = tmp_path / f"hash{hash_seed}"
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        subprocess.run(
            [sys.executable, "-c", SCRIPT.format(options=OPTIONS), str(out)],
            env=env,
            check=True,
            timeout=120,
        )
        outputs.append(_files(out, NAMES))
    assert outputs[0] == outputs[1]
    assert outputs[0]["transactions.jsonl"] and outputs[0]["labels.json"] != b"[]\n"
    # and in this process, the same again
    here = tmp_path / "here"
    simulate(build_plan(seed=7, **OPTIONS), here)
    assert _files(here, NAMES) == outputs[0]

    other = tmp_path / "seed8"
    simulate(build_plan(seed=8, **OPTIONS), other)
    different = _files(other, NAMES)
    for topic in ("transactions", "logins", "otp", "balances", "requests"):
        assert different[f"{topic}.jsonl"] != outputs[0][f"{topic}.jsonl"], topic


def test_gzip_output_is_the_same_lines_and_reproducible(tmp_path: Path) -> None:
    plan = build_plan(
        scenario="qiwi",
        seed=12,
        start="2025-10-19T14:30:00Z",
        days=1 / 24,
        rate=2,
        onset_hour=14.75,
        duration_minutes=20,
    )
    simulate(plan, tmp_path / "plain")
    simulate(plan, tmp_path / "gz1", compress=True)
    simulate(plan, tmp_path / "gz2", compress=True)
    for topic in TOPICS:
        plain = (tmp_path / "plain" / f"{topic}.jsonl").read_bytes()
        packed = (tmp_path / "gz1" / f"{topic}.jsonl.gz").read_bytes()
        assert gzip.decompress(packed) == plain, topic
        assert (tmp_path / "gz2" / f"{topic}.jsonl.gz").read_bytes() == packed, topic


def test_rerun_into_the_same_directory_replaces_old_files(tmp_path: Path) -> None:
    plan = build_plan(scenario="calm", seed=13, start="2025-10-19T12:00:00Z", days=0.01, rate=2)
    simulate(plan, tmp_path, compress=True)
    simulate(plan, tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert not [n for n in names if n.endswith(".gz")], "stale .gz files would be replayed too"
    assert {f"{t}.jsonl" for t in TOPICS} <= set(names)
