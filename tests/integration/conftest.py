"""Fixtures that run the real thing: the embedded broker and a worker process.

A broker that cannot start is a test *error*, never a skip.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streams.broker import PRODUCER_SETTINGS, EmbeddedBroker, create_topics, free_port
from streams.bundles import unbundle
from streams.processes import stop_group
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as b:
        yield b


class Worker:
    """A ``python -m streams worker`` subprocess with its own settings and log."""

    def __init__(self, env: dict[str, str], log_path: Path, cwd: Path = ROOT) -> None:
        self.env = env
        self.log_path = log_path
        self.cwd = cwd
        self.settings = Settings.from_env({k: v for k, v in env.items() if k.startswith("RADAR_")})
        self.process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def start(self, timeout: float = 60.0) -> Worker:
        log = self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streams", "worker", "-l", "info"],
            env=self.env,
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited with {self.process.returncode}:\n{self.log()}")
            if "Ready" in self.log():
                return self
            time.sleep(0.2)
        raise AssertionError(f"worker not ready within {timeout} s:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        proc, self.process = self.process, None
        stop_group(proc)
        if self._log is not None:
            self._log.close()
            self._log = None


@pytest.fixture
def start_worker(
    broker: EmbeddedBroker, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Worker]]:
    """Start a worker on fresh topics (a unique prefix per test); stopped at teardown."""
    workers: list[Worker] = []
    prefix = f"t{abs(hash(request.node.nodeid)) % 10**8}-{int(time.time() * 1000) % 10**6}"

    def start(**overrides: str) -> Worker:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RADAR_")}
        env.update(broker.env())
        env.update(
            {
                "RADAR_APP_ID": f"radar-{prefix}",
                "RADAR_DATA_DIR": str(tmp_path / "data"),
                "RADAR_IDLE_SECONDS": "2",
                # Faust binds its web port even with the web server off: one per worker.
                "RADAR_WEB_PORT": str(free_port()),
            }
        )
        for name in Settings().topics.all():
            env[f"RADAR_TOPIC_{name.upper()}"] = f"{prefix}-{name}"
        env.update(overrides)
        w = Worker(env, tmp_path / f"worker-{len(workers)}.log")
        create_topics(
            broker.bootstrap, w.settings.topics.all().values(), partitions=w.settings.partitions
        )
        workers.append(w)
        return w.start()

    yield start
    for w in workers:
        w.stop()


def produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes, int]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, **PRODUCER_SETTINGS)
    try:
        for key, value, ts in records:
            producer.send(topic, key=key, value=value, timestamp_ms=ts)
        producer.flush()
    finally:
        producer.close()


def consume(
    bootstrap: str,
    topic: str,
    until: Callable[[list[Any]], bool],
    timeout: float,
    decode: Callable[[bytes], Any] = json.loads,
) -> list[Any]:
    """Read ``topic`` from the start (partitions assigned directly: no group join) until
    ``until(values)`` holds or ``timeout`` passes; returns the values read."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100
    )
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        consumer.assign([TopicPartition(topic, p) for p in sorted(parts)])
        consumer.seek_to_beginning()
        values: list[Any] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not until(values):
            for recs in consumer.poll(timeout_ms=200).values():
                values.extend(decode(r.value) for r in recs)
        return values
    finally:
        consumer.close()


def consume_windows(
    bootstrap: str, topic: str, until: Callable[[list[Any]], bool], timeout: float
) -> list[Any]:
    """As :func:`consume`, for the windows topic: its stage-1 messages, with bundles
    unpacked (:mod:`streams.bundles`)."""

    def flat(values: list[list[Any]]) -> list[Any]:
        return [m for v in values for m in v]

    def decode(raw: bytes) -> list[Any]:
        return unbundle(json.loads(raw))

    return flat(consume(bootstrap, topic, lambda vs: until(flat(vs)), timeout, decode=decode))
