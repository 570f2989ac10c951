"""What the broker benchmarks share: preload a data set, watch a consumer group, run workers.

* :func:`preload` publishes records with an aiokafka producer (the fastest client here, ~46k
  msg/s on the embedded broker) keeping keys (so murmur2 partitioning, as any producer) and event
  times (as Kafka timestamps), and returns the end offset of every partition it wrote, exactly:
  taken from the produce acknowledgements, not from ListOffsets, which Tansu answers low.
* :class:`GroupWatch` reads a consumer group's committed offsets (OffsetFetch through the admin
  client) and the true end offsets of topics that a worker writes
  (:func:`streams.broker.true_end_offsets`).
* :func:`wait_until_processed` is the end marker of a worker run (see its docstring).
* :class:`FaustProcess` runs ``python -m <module> worker`` in its own process group with its own
  log file, and knows when it is ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from streams.processes import stop_group
from streams.traffic import TrafficRecord

ROOT = Path(__file__).resolve().parents[1]
TP = tuple[str, int]  # (topic, partition)


def say(text: str) -> None:
    """Progress and notes go to stderr, figures to stdout."""
    print(text, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------- preload


def preload(
    bootstrap: str,
    records: Iterable[TrafficRecord],
    topic_of: Mapping[str, str],
    extra: Iterable[tuple[TrafficRecord, int]] = (),
    progress: Callable[[int], None] | None = None,
) -> dict[TP, int]:
    """Publish ``records`` (topic renamed by ``topic_of``), then ``extra`` (record, partition)
    pairs to their explicit partitions; returns the end offset of every partition written."""
    return asyncio.run(_preload(bootstrap, records, topic_of, extra, progress))


async def _preload(
    bootstrap: str,
    records: Iterable[TrafficRecord],
    topic_of: Mapping[str, str],
    extra: Iterable[tuple[TrafficRecord, int]],
    progress: Callable[[int], None] | None,
) -> dict[TP, int]:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        linger_ms=20,
        max_batch_size=512 * 1024,
        acks=1,
        enable_idempotence=False,
        max_request_size=8 * 1024 * 1024,
    )
    await producer.start()
    ends: dict[TP, int] = {}
    pending: list[Any] = []
    sent = 0

    async def settle() -> None:
        for meta in await asyncio.gather(*pending):
            tp = (meta.topic, meta.partition)
            if meta.offset + 1 > ends.get(tp, 0):
                ends[tp] = meta.offset + 1
        pending.clear()

    try:
        for r in records:
            pending.append(
                await producer.send(topic_of[r.topic], r.value, key=r.key, timestamp_ms=r.timestamp)
            )
            sent += 1
            if len(pending) >= 20_000:
                await settle()
                if progress is not None:
                    progress(sent)
        for r, partition in extra:
            pending.append(
                await producer.send(
                    topic_of[r.topic], r.value, key=r.key, partition=partition,
                    timestamp_ms=r.timestamp,
                )
            )  # fmt: skip
            sent += 1
        await producer.flush()
        await settle()
        if progress is not None:
            progress(sent)
    finally:
        await producer.stop()
    return ends


# ------------------------------------------------------------------------------ group watch


class GroupWatch:
    """Committed offsets of consumer groups and true end offsets of topics, polled cheaply."""

    def __init__(self, bootstrap: str) -> None:
        from kafka import KafkaAdminClient, KafkaConsumer

        self.bootstrap = bootstrap
        self.admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100
        )

    def committed(self, group: str) -> dict[TP, int]:
        """``{(topic, partition): committed offset}`` of ``group`` (empty before any commit)."""
        from kafka.errors import KafkaError

        try:
            answer = self.admin.list_group_offsets({group: None})
        except KafkaError:  # the group is not known yet
            return {}
        out: dict[TP, int] = {}
        for tp, meta in (answer.get(group) or {}).items():
            if meta is not None and meta.offset is not None and meta.offset >= 0:
                out[(tp.topic, tp.partition)] = int(meta.offset)
        return out

    def end_offsets(self, topic: str) -> dict[TP, int]:
        """True end offsets of every partition of ``topic`` (corrected on Tansu)."""
        from kafka import TopicPartition

        from streams.broker import true_end_offsets

        parts = self.consumer.partitions_for_topic(topic)
        if not parts:
            self.consumer.topics()  # refresh metadata once: the topic may be new
            parts = self.consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return {}
        self.consumer.assign(tps)
        ends = true_end_offsets(self.consumer, tps)
        return {(tp.topic, tp.partition): int(end) for tp, end in ends.items()}

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.consumer.close()
        with contextlib.suppress(Exception):
            self.admin.close()

    def __enter__(self) -> GroupWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def behind(committed: Mapping[TP, int], ends: Mapping[TP, int]) -> int:
    """Records of ``ends`` not yet committed (a partition never committed counts whole).

    >>> behind({("t", 0): 5, ("t", 1): 7}, {("t", 0): 5, ("t", 1): 9, ("t", 2): 3})
    5
    """
    return sum(max(0, end - committed.get(tp, 0)) for tp, end in ends.items())


def wait_until_processed(
    watch: GroupWatch,
    group: str,
    input_ends: Mapping[TP, int],
    internal_topics: Iterable[str] = (),
    timeout_s: float = 600.0,
    poll_s: float = 0.1,
    alive: Callable[[], bool] = lambda: True,
    progress: Callable[[int, int], None] | None = None,
) -> float:
    """Block until ``group`` has processed everything; return ``time.monotonic()`` then.

    Done means: the group's committed offsets reach ``input_ends`` on every input partition
    *and* the true end of every partition of ``internal_topics`` (the worker's stage 2 has
    consumed every partial and marker that stage 1 wrote), and this holds on two polls in a row
    with the internal topics' ends unchanged (so no partial was still in flight). The time
    returned is the first of the two polls.

    Faust commits acknowledged offsets every ``broker_commit_interval``: the returned time is
    late by at most that interval plus ``poll_s``, never early.
    """
    internal = list(internal_topics)
    total = sum(input_ends.values())
    deadline = time.monotonic() + timeout_s
    candidate: tuple[float, dict[TP, int]] | None = None
    last_report = 0.0
    while True:
        now = time.monotonic()
        if now > deadline:
            raise TimeoutError(
                f"group {group} did not finish within {timeout_s:.0f} s: "
                f"{behind(watch.committed(group), input_ends):,} of {total:,} input records "
                "not committed; raise --timeout or look at the worker log"
            )
        if not alive():
            raise RuntimeError(f"the process of group {group} exited before finishing")
        committed = watch.committed(group)
        left = behind(committed, input_ends)
        if progress is not None and now - last_report >= 5.0:
            progress(total - left, total)
            last_report = now
        if left == 0:
            ends: dict[TP, int] = {}
            for topic in internal:
                ends.update(watch.end_offsets(topic))
            committed = watch.committed(group)
            if behind(committed, ends) == 0:
                if candidate is not None and candidate[1] == ends:
                    return candidate[0]
                candidate = (now, ends)
                time.sleep(max(poll_s, 0.2))
                continue
        candidate = None
        time.sleep(poll_s)


# ---------------------------------------------------------------------------- processes


class FaustProcess:
    """``python -m MODULE worker -l info`` with its own environment, log file and group."""

    def __init__(self, module: str, env: Mapping[str, str], log_path: Path) -> None:
        self.module = module
        self.env = dict(env)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def start(self, ready_marker: str = "Ready", timeout: float = 90.0) -> float:
        """Start and wait until the log says ``ready_marker``; returns monotonic time then."""
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module, "worker", "-l", "info"],
            env=self.env,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.module} worker exited with code {self.process.returncode} while "
                    f"starting; its log ({self.log_path}) ends with:\n{self.log_tail()}"
                )
            if ready_marker in self.log():
                return time.monotonic()
            time.sleep(0.05)
        raise TimeoutError(
            f"{self.module} worker not ready within {timeout:.0f} s; log ends with:\n"
            f"{self.log_tail()}"
        )

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, chars: int = 3000) -> str:
        return self.log()[-chars:]

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        proc, self.process = self.process, None
        stop_group(proc)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> FaustProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def base_env() -> dict[str, str]:
    """The current environment without any ``RADAR_`` setting (the bench sets its own)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("RADAR_")}
