"""``python -m streams record --out DIR``: capture topics to traffic files (replay's inverse).

Every record of the chosen topics (default: the input topics of the settings) is written
with :class:`~streams.traffic.TrafficWriter`, one file per topic (``DIR/<topic>.jsonl`` or
``.jsonl.gz``), in the order it was consumed per partition: the value as JSON when its bytes
are canonical JSON, as ``value_b64`` otherwise, so a replay sends the exact bytes again.

Partitions are assigned directly (no consumer group: Tansu holds a group join for seconds).
Reading starts at the beginning, or at ``--from TIME`` (``offsets_for_times`` where the
broker answers it, see :func:`~streams.broker.offsets_for_time`, and a timestamp filter
either way). It stops on Ctrl-C / SIGTERM (files closed complete), at ``--until TIME``
(when every partition has passed that event time or is at its end), or after
``--idle-timeout`` seconds without a new record.

Exit codes: 0 recorded (also when stopped by a signal: that is the normal end of an
open-ended recording); 1 some records could not be recorded (a null value, a missing
timestamp; each is counted and listed) or the broker could not be used; 2 usage error.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from faust.cli import AppCommand, option

from streams.app import app
from streams.errors import BrokerError, ConfigError
from streams.progress import Progress
from streams.replay import (
    EXIT_ERRORS,
    EXIT_OK,
    ErrorLog,
    StopFlag,
    check_reachable,
    command_main,
    parse_bootstrap,
    parse_time,
    parse_topic_list,
    unreachable,
)
from streams.traffic import SUFFIXES, TrafficRecord, TrafficWriter

#: Milliseconds one poll waits for records (also how soon a stop is noticed).
POLL_MS = 200


@dataclass(frozen=True)
class RecordOptions:
    """What the ``record`` command was asked to do, validated."""

    out: Path
    topics: tuple[str, ...]
    compress: bool = False
    from_ms: int | None = None
    until_ms: int | None = None
    idle_timeout_s: float | None = None
    force: bool = False
    broker: list[str] | None = None  # None: RADAR_BROKER


def build_options(
    out: str | None,
    topics: str | None = None,
    default_topics: Sequence[str] = (),
    compress: bool = False,
    from_time: str | None = None,
    until: str | None = None,
    idle_timeout: float | None = None,
    force: bool = False,
    broker: str | None = None,
) -> RecordOptions:
    """Validate the command-line values; a :class:`ConfigError` names the value and the fix."""
    if not out:
        raise ConfigError("--out is required: the directory to write the traffic files to")
    directory = Path(out)
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"--out {out!r} is a file; give a directory (it is created if missing)")
    names = parse_topic_list(topics) or tuple(default_topics)
    if not names:
        raise ConfigError("--topics names no topic; give e.g. --topics transactions,logins")
    from_ms = parse_time(from_time, "--from") if from_time is not None else None
    until_ms = parse_time(until, "--until") if until is not None else None
    if from_ms is not None and until_ms is not None and until_ms <= from_ms:
        raise ConfigError(
            f"--until {until!r} is not after --from {from_time!r}; records from FROM up to "
            "(not including) UNTIL are recorded"
        )
    if idle_timeout is not None and not idle_timeout > 0:
        raise ConfigError(
            f"--idle-timeout {idle_timeout!r} is not a duration; give a positive number of "
            "seconds (e.g. --idle-timeout 5), or leave it out to record until stopped"
        )
    if not force:
        clash = [p for n in names for s in SUFFIXES if (p := directory / (n + s)).exists()]
        if clash:
            verb = "exists" if len(clash) == 1 else "exist"
            raise ConfigError(
                f"{', '.join(map(str, clash))} already {verb}; choose another --out, move the "
                "old recording away, or pass --force to overwrite"
            )
    return RecordOptions(
        out=directory,
        topics=names,
        compress=compress,
        from_ms=from_ms,
        until_ms=until_ms,
        idle_timeout_s=idle_timeout,
        force=force,
        broker=parse_bootstrap(broker) if broker is not None else None,
    )


@dataclass
class RecordStats:
    """Counts of one recording."""

    written: Counter[str] = field(default_factory=Counter)
    before_from: int = 0  # read but older than --from (Tansu: no time lookup)
    errors: ErrorLog = field(default_factory=ErrorLog)

    @property
    def total(self) -> int:
        return sum(self.written.values())


class Recorder:
    """Reads assigned partitions and writes what it reads; :meth:`run` until a stop rule.

    ``consumer`` is a kafka-python ``KafkaConsumer`` (or a fake with ``poll``, ``pause``,
    ``position``, ``highwater``); ``write`` takes each :class:`TrafficRecord`.
    """

    def __init__(
        self,
        consumer: Any,
        partitions: Sequence[Any],
        write: Callable[[TrafficRecord], None],
        options: RecordOptions,
        stats: RecordStats,
        should_stop: Callable[[], bool] = lambda: False,
        progress: Progress | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.consumer = consumer
        self.partitions = list(partitions)
        self.write = write
        self.options = options
        self.stats = stats
        self.should_stop = should_stop
        self.progress = progress
        self.clock = clock
        #: Partitions that have passed ``--until`` (paused: nothing more is read from them).
        self.past_until: set[Any] = set()

    def handle(self, tp: Any, records: Iterable[Any]) -> None:
        """Write one partition's batch (offset order), applying ``--from`` and ``--until``."""
        opts = self.options
        for r in records:
            ts = r.timestamp
            if opts.until_ms is not None and ts is not None and ts >= opts.until_ms:
                self.past_until.add(tp)
                self.consumer.pause(tp)
                return
            where = f"{tp.topic}[{tp.partition}]@{r.offset}"
            if r.value is None:
                self.stats.errors.add("not recordable", f"{where}: null value (a tombstone)")
                continue
            if ts is None or ts < 0:
                self.stats.errors.add("not recordable", f"{where}: no timestamp")
                continue
            if opts.from_ms is not None and ts < opts.from_ms:
                self.stats.before_from += 1
                continue
            self.write(TrafficRecord(tp.topic, r.key, ts, r.value))
            self.stats.written[tp.topic] += 1

    def at_end(self, tp: Any) -> bool:
        """Whether ``tp`` has been read up to its high watermark (known after one fetch)."""
        high = self.consumer.highwater(tp)
        return high is not None and self.consumer.position(tp) >= high

    def run(self) -> str:
        """Consume until stopped; returns why it stopped (for the summary)."""
        opts = self.options
        last_record = self.clock()
        while True:
            if self.should_stop():
                return "signal"
            batch = self.consumer.poll(timeout_ms=POLL_MS)
            for tp, records in batch.items():
                self.handle(tp, records)
            now = self.clock()
            if any(batch.values()):
                last_record = now
            if self.progress is not None:
                self.progress.update(self.stats.total)
            if opts.until_ms is not None and all(
                tp in self.past_until or self.at_end(tp) for tp in self.partitions
            ):
                return "until"
            if opts.idle_timeout_s is not None and now - last_record >= opts.idle_timeout_s:
                return "idle"


def assign(consumer: Any, topics: Sequence[str], from_ms: int | None, warn: IO[str]) -> list[Any]:
    """Assign every partition of the topics that exist, positioned for ``from_ms``.

    A topic that does not exist is skipped with a warning (asking for its partitions would
    auto-create it on some brokers); none existing is a :class:`ConfigError`.
    """
    from kafka import TopicPartition

    from streams.broker import offsets_for_time

    existing = consumer.topics()
    missing = [t for t in topics if t not in existing]
    present = [t for t in topics if t in existing]
    if not present:
        raise ConfigError(
            f"none of the topics {', '.join(topics)} exists on the broker; name existing ones "
            "with --topics (or point --broker / RADAR_BROKER at the right broker)"
        )
    if missing:
        print(f"warning: not recording {', '.join(missing)}: no such topic", file=warn)
    tps = [TopicPartition(t, p) for t in present for p in sorted(consumer.partitions_for_topic(t))]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    if from_ms is not None:
        for tp, offset in offsets_for_time(consumer, tps, from_ms).items():
            consumer.seek(tp, offset)
    return tps


def summary_lines(
    stats: RecordStats, writer: TrafficWriter, seconds: float, reason: str, stopped_by: str | None
) -> list[str]:
    """The recording's closing report: totals, then each topic's count and file."""
    how = {
        "signal": f"stopped by {stopped_by}",
        "until": "reached --until",
        "idle": "idle timeout",
    }.get(reason, reason)
    rate = stats.total / seconds if seconds > 0 else 0.0
    lines = [
        f"record finished ({how}): records={stats.total} errors={stats.errors.total} "
        f"duration={seconds:.2f}s records_per_s={rate:.0f}"
    ]
    for topic, n in sorted(stats.written.items()):
        lines.append(
            f"  {topic}: {n} records -> {writer.path_for(topic)}" if n else f"  {topic}: 0 records"
        )
    if stats.before_from:
        lines.append(f"  {stats.before_from} records before --from were read and left out")
    lines.extend(stats.errors.lines())
    return lines


def run_record(
    options: RecordOptions,
    stop: StopFlag,
    default_broker: list[str],
    out: IO[str] | None = None,
    progress: Progress | None = None,
) -> tuple[int, RecordStats]:
    """Run one recording; returns the exit code and the counts. Prints the summary on ``out``."""
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    from streams.broker import TANSU_CONSUMER_SETTINGS

    out = out if out is not None else sys.stdout
    bootstrap = options.broker or default_broker
    stats = RecordStats()

    def should_stop() -> bool:
        return stop.stopped

    check_reachable(bootstrap)
    try:
        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=TANSU_CONSUMER_SETTINGS["fetch_max_wait_ms"],
            auto_offset_reset="earliest",
            max_poll_records=2_000,
        )
    except KafkaError as exc:
        raise BrokerError(unreachable(bootstrap, exc)) from exc
    reason = "signal"
    progress = progress if progress is not None else Progress("record", unit="records")
    started = time.monotonic()
    writer = TrafficWriter(options.out, compress=options.compress)
    try:
        tps = assign(consumer, options.topics, options.from_ms, sys.stderr)
        for tp in tps:
            stats.written[tp.topic] += 0  # listed in the summary even when empty
        recorder = Recorder(consumer, tps, writer.write, options, stats, should_stop, progress)
        reason = recorder.run()
    except KeyboardInterrupt:  # a second signal: stop now, files are still closed below
        reason = "signal"
    finally:
        writer.close()
        consumer.close()
        progress.finish()
    seconds = time.monotonic() - started
    for line in summary_lines(stats, writer, seconds, reason, stop.name or "a signal"):
        print(line, file=out, flush=True)
    return (EXIT_ERRORS if stats.errors.total else EXIT_OK), stats


@app.command(
    option(
        "--out",
        default=None,
        help="Directory for the traffic files, one per topic (required; created if missing).",
    ),
    option(
        "--topics",
        default=None,
        help="Topics to record, comma-separated (default: every input topic of the settings).",
    ),
    option(
        "--gzip",
        "compress",
        is_flag=True,
        default=False,
        help="Write .jsonl.gz instead of .jsonl.",
    ),
    option(
        "--from",
        "from_time",
        default=None,
        help="Start at this event time (epoch ms or ISO 8601; default: the beginning).",
    ),
    option(
        "--until",
        default=None,
        help="Stop when every partition has passed this event time (epoch ms or ISO 8601) "
        "or is at its end; records from UNTIL on are not written.",
    ),
    option(
        "--idle-timeout",
        type=float,
        default=None,
        help="Stop after this many seconds without a new record (default: run until Ctrl-C).",
    ),
    option(
        "--force",
        is_flag=True,
        default=False,
        help="Overwrite traffic files of these topics already in --out.",
    ),
    option(
        "--broker",
        default=None,
        help="Broker to read from, host:port[,host:port] (default: RADAR_BROKER).",
    ),
)
async def record(
    self: AppCommand,
    out: str | None,
    topics: str | None,
    compress: bool,
    from_time: str | None,
    until: str | None,
    idle_timeout: float | None,
    force: bool,
    broker: str | None,
) -> None:
    """Capture topics to traffic files (replay's inverse), until Ctrl-C, --until or idle.

    Exit codes: 0 recorded (Ctrl-C included), 1 unrecordable records or broker trouble,
    2 usage error.
    """
    sys.exit(
        record_main(
            out=out,
            topics=topics,
            compress=compress,
            from_time=from_time,
            until=until,
            idle_timeout=idle_timeout,
            force=force,
            broker=broker,
        )
    )


def record_main(**values: Any) -> int:
    """The ``record`` command without Faust: validate, run, map errors to exit codes."""
    from streams.app import settings

    def run(stop: StopFlag) -> int:
        options = build_options(default_topics=list(settings.topics.inputs().values()), **values)
        return run_record(options, stop, settings.bootstrap_servers)[0]

    return command_main(run)
