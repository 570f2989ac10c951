"""What the scenario tests share: the held-out seeds, the simulated traffic, running the
``streams`` commands against an embedded broker, and reading the outcome back."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from streams.broker import EmbeddedBroker, create_topics, free_port
from streams.settings import Settings
from tests.integration.conftest import ROOT, Worker, consume

#: scenario -> seed (held out: used by no other test, and not to tune the detectors).
SCENARIOS = {"momo": 611, "mpesa": 612, "shopee": 613, "qiwi": 614, "io": 615}


def env_for(broker: EmbeddedBroker) -> dict[str, str]:
    """Default settings but the broker, and the port Faust binds even with its web server off
    (free, not 6066: tests run in parallel, and the demo's test holds 6066)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADAR_")}
    env["RADAR_BROKER"] = broker.url
    env["RADAR_WEB_PORT"] = str(free_port())
    return env


def cli(args: list[str], env: dict[str, str], cwd: Path, timeout: float) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "streams", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert proc.returncode == 0, f"{args[0]} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc.stdout


def ms(iso: str) -> int:
    from datetime import datetime

    return round(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def simulate(scenario: str, out: Path) -> Path:
    """Simulate ``scenario`` with its held-out seed into ``out``: two hours of normal traffic
    before the onset, 40 minutes of outage, 40 minutes after it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADAR_")}
    cli(
        ["simulate", "--scenario", scenario, "--seed", str(SCENARIOS[scenario]),
         "--start", "2025-10-19T06:00:00Z", "--days", "0.14", "--onset-hour", "8",
         "--duration-minutes", "40", "--rate", "20", "--out", str(out), "--no-progress"],
        env, ROOT, timeout=180,
    )  # fmt: skip
    return out


def outcome(
    replay: subprocess.Popen[str], broker: EmbeddedBroker, worker: Worker
) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
    """Once the replay is done and the incidents have settled, with ``worker`` still running:
    the replay's output, the incidents topic and the dead letters."""
    replayed, _ = replay.communicate(timeout=300)
    assert replay.returncode == 0, replayed[-3000:]
    topics = Settings().topics
    events = incident_events(broker, topics.incidents, timeout=240)
    assert worker.alive, worker.log()[-3000:]
    dead = consume(broker.bootstrap, topics.deadletter, lambda v: False, 3)
    return replayed, events, dead


def one_incident(events: list[dict[str, Any]], why: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The events of the one incident on the topic (asserted), and their kinds (triggered,
    updated, resolved)."""
    by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        by_key[e["data"]["dedup_key"]].append(e)
    summary = {
        k: [(e["type"].rsplit(".", 1)[1], e["data"]["payload"]["summary"][:80]) for e in v][:3]
        for k, v in by_key.items()
    }
    assert len(by_key) == 1, f"one incident expected, got {summary}\n{why}"
    (evs,) = by_key.values()
    return evs, [e["type"].rsplit(".", 1)[1] for e in evs]


def two_workers(broker: EmbeddedBroker, tmp_path: Path) -> tuple[dict[str, str], list[Worker]]:
    """The topics created on ``broker``; the environment for it, and two workers of one group
    (not started), each in its own directory with its own log."""
    defaults = Settings()
    create_topics(broker.bootstrap, defaults.topics.all().values(), defaults.partitions)
    env = env_for(broker)
    workers = []
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
        # Faust binds its web port even with the web server off: one per worker.
        worker_env = {**env, "RADAR_WEB_PORT": str(free_port())}
        workers.append(Worker(worker_env, tmp_path / f"{name}.log", cwd=tmp_path / name))
    return env, workers


def start_replay(data: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """``replay DATA --speed max`` in the background (its output: ``communicate()``)."""
    return subprocess.Popen(
        [sys.executable, "-m", "streams", "replay", str(data), "--speed", "max"],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def diagnosis(replayed: str, dead: list[dict[str, Any]], log: str) -> str:
    """The replay's summary, the dead letters by kind, and the worker's warnings, errors and
    rebalances (distinct messages, numbers masked), for a failure message."""
    kinds: dict[str, int] = defaultdict(int)
    for d in dead:
        kinds[str(d.get("error_kind"))] += 1
    notable: dict[str, int] = defaultdict(int)
    for line in log.splitlines():
        if any(w in line for w in ("[WARNING]", "[ERROR]", "Traceback", "ebalanc", "revoked")):
            notable[re.sub(r"\d+(\.\d+)?", "N", line.split("] ", 3)[-1])[:160]] += 1
    lines = [f"  {n} x {text}" for text, n in sorted(notable.items(), key=lambda kv: -kv[1])]
    return "\n".join(
        [f"replay: {replayed.strip().splitlines()[-1] if replayed.strip() else '(no output)'}",
         f"dead letters: {dict(kinds) or 'none'}",
         f"worker warnings, errors, rebalances ({len(notable)} distinct):", *lines[:25]]
    )  # fmt: skip


def incident_events(broker: EmbeddedBroker, topic: str, timeout: float) -> list[dict[str, Any]]:
    """The incidents topic once every incident that opened has resolved and nothing new has
    arrived for a while (the worker closes the last windows RADAR_IDLE_SECONDS after the input
    stops)."""
    deadline = time.monotonic() + timeout
    seen: list[dict[str, Any]] = []
    settled_since = None
    while time.monotonic() < deadline:
        now = consume(broker.bootstrap, topic, lambda v: False, timeout=1)
        opened = {e["data"]["dedup_key"] for e in now if e["data"]["event_action"] == "trigger"}
        closed = {e["data"]["dedup_key"] for e in now if e["data"]["event_action"] == "resolve"}
        done = bool(opened) and opened <= closed
        if done and len(now) == len(seen):
            settled_since = settled_since or time.monotonic()
            if time.monotonic() - settled_since >= 4:
                return now
        else:
            settled_since = None
        seen = now
    return seen
