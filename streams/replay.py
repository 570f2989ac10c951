"""``python -m streams replay SOURCE``: publish recorded or simulated traffic to Kafka.

SOURCE is a traffic file or a directory of them (``*.jsonl``, ``*.jsonl.gz``; see
:mod:`streams.traffic`), or a topic range ``topic:NAME[:PARTITION][@FROM..TO]``. Records keep
their key, their value (the exact bytes) and their event time (the Kafka timestamp is the
record's ``timestamp``), so detection downstream sees the same event-time stream at any
speed. Several files, and the partitions of a topic, are merged by timestamp with a
streaming heap merge (nothing is held in memory); a record older than the replay clock
(an unsorted file) is sent at once, never dropped.

Pacing: with ``--speed S`` the record with event time ``t`` is sent when
``wall time since the first record == (t - first timestamp) / S``; ``--speed max`` sends as
fast as the producer takes records. ``--rate-limit N`` caps the rate at ``N`` events/s.
``--shift-to-now`` moves every timestamp (and the value's epoch-ms ``*_time`` fields) by
``now - first timestamp`` so that a replay looks live.

Nothing is dropped silently: a bad line (not JSON, not a traffic record, not UTF-8, a
corrupt gzip stream) is counted and listed with file and line, and the replay goes on; a
failed send is counted by error. Exit codes: 0 everything sent; 1 some lines bad or sends
failed (or the broker could not be used); 2 usage error (the message names the value and
the fix); 130 / 143 stopped by SIGINT / SIGTERM (what was sent is flushed and the summary
so far printed).

The core is plain functions and classes (:func:`parse_topic_range`, :func:`shift_value`,
:class:`Pacer`, :func:`file_records`, :func:`merge_by_time`, :func:`replay_records`, ...)
tested offline; :func:`run_replay` wires them to kafka-python, and the ``replay`` command
at the bottom declares the command line.
"""

from __future__ import annotations

import contextlib
import gzip
import heapq
import json
import logging
import math
import re
import signal
import socket
import sys
import threading
import time
import zlib
from collections import Counter, deque
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import attrgetter
from pathlib import Path
from typing import IO, Any, Protocol, cast

from faust.cli import AppCommand, argument, option

from streams.app import app
from streams.errors import BrokerError, ConfigError, RadarError
from streams.progress import Progress
from streams.traffic import InvalidLine, TrafficRecord, from_line, traffic_files

EXIT_OK = 0
EXIT_ERRORS = 1
EXIT_USAGE = 2
#: Problems described one by one in a summary; the rest are only counted.
MAX_LISTED = 10
#: A ``*_time`` value at or above this is taken for epoch milliseconds (1973-03-03).
EPOCH_MS_FLOOR = 100_000_000_000
TOPIC_PREFIX = "topic:"
#: Seconds to wait for the producer's last records when stopping.
STOP_FLUSH_S = 10.0
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")

#: kafka-python producer settings for throughput (on top of ``PRODUCER_SETTINGS``).
PRODUCER_TUNING: dict[str, Any] = {
    "linger_ms": 20,
    "batch_size": 256 * 1024,
    "max_block_ms": 15_000,  # a topic that cannot be found fails in 15 s, not 60 s
}


# --------------------------------------------------------------------------- options


def parse_time(text: str, option_name: str = "time") -> int:
    """Epoch milliseconds from ``text``: digits (epoch ms) or an ISO 8601 time (naive = UTC).

    >>> parse_time("1760860800000")
    1760860800000
    >>> parse_time("2025-10-19T08:00:00Z")
    1760860800000
    >>> parse_time("2025-10-19T10:00:00+02:00")
    1760860800000
    """
    raw = text.strip()
    if raw.isdigit():
        return int(raw)
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise ConfigError(
            f"{option_name} {text!r} is not a time; give epoch milliseconds "
            "(e.g. 1760860800000) or an ISO 8601 time (e.g. 2025-10-19T08:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


def parse_speed(text: str) -> float | None:
    """``--speed``: a positive factor, or ``max`` (no pacing, returned as ``None``).

    >>> parse_speed("60"), parse_speed("0.5"), parse_speed("max")
    (60.0, 0.5, None)
    """
    raw = text.strip().lower()
    if raw == "max":
        return None
    try:
        speed = float(raw.removesuffix("x"))
    except ValueError:
        speed = math.nan
    if not math.isfinite(speed) or speed <= 0:
        raise ConfigError(
            f"--speed {text!r} is not a speed; give a positive number of event-time seconds "
            "per wall-clock second (1 = as recorded, 60 = an hour a minute) or 'max'"
        )
    return speed


def check_topic_name(name: str, option_name: str) -> str:
    """``name`` if it is a valid Kafka topic name, else a :class:`ConfigError` saying why."""
    if not _TOPIC_NAME.match(name):
        raise ConfigError(
            f"{option_name}: {name!r} is not a valid Kafka topic name; use 1-249 characters "
            "from letters, digits, '.', '_' and '-'"
        )
    return name


def parse_topic_list(text: str | None, option_name: str = "--topics") -> tuple[str, ...]:
    """Comma-separated topic names (empty or ``None``: no names).

    >>> parse_topic_list("transactions, logins")
    ('transactions', 'logins')
    """
    if not text:
        return ()
    names = [n.strip() for n in text.split(",") if n.strip()]
    return tuple(dict.fromkeys(check_topic_name(n, option_name) for n in names))


def parse_topic_map(text: str | None) -> dict[str, str]:
    """``--topic-map old=new[,old2=new2]`` as a dict.

    >>> parse_topic_map("transactions=t1-transactions, logins=t1-logins")
    {'transactions': 't1-transactions', 'logins': 't1-logins'}
    """
    mapping: dict[str, str] = {}
    if not text:
        return mapping
    for part in text.split(","):
        if not part.strip():
            continue
        old, sep, new = part.partition("=")
        old, new = old.strip(), new.strip()
        if not sep or not old or not new:
            raise ConfigError(
                f"--topic-map: {part.strip()!r} is not a rename; write old=new, several "
                "separated by commas (e.g. --topic-map transactions=staging-transactions)"
            )
        if old in mapping and mapping[old] != new:
            raise ConfigError(
                f"--topic-map renames {old!r} twice ({mapping[old]!r} and {new!r}); keep one"
            )
        mapping[check_topic_name(old, "--topic-map")] = check_topic_name(new, "--topic-map")
    return mapping


def parse_bootstrap(text: str, option_name: str = "--broker") -> list[str]:
    """``host:port`` list from ``host:port[,host2:port2]`` (a ``kafka://`` prefix is allowed).

    >>> parse_bootstrap("kafka://k1:9092;k2:9092")
    ['k1:9092', 'k2:9092']
    """
    raw = text.strip()
    if "://" in raw:
        raw = raw.split("://", 1)[1]
    hosts = [h.strip() for h in raw.replace(";", ",").split(",") if h.strip()]
    for host in hosts:
        name, _, port = host.rpartition(":")
        if not name or not port.isdigit():
            raise ConfigError(
                f"{option_name} {text!r}: {host!r} is not host:port; give e.g. "
                f"{option_name} 127.0.0.1:9092"
            )
    if not hosts:
        raise ConfigError(f"{option_name} is empty; give host:port, e.g. 127.0.0.1:9092")
    return hosts


@dataclass(frozen=True)
class TopicRange:
    """A replay source on a broker: a topic, optionally one partition, optionally a time range.

    ``start_ms`` is inclusive and ``end_ms`` exclusive (``[FROM, TO)``); ``None`` is open.
    """

    topic: str
    partition: int | None = None
    start_ms: int | None = None
    end_ms: int | None = None

    def admits(self, timestamp: int) -> bool:
        """Whether a record with this timestamp is in the range."""
        return (self.start_ms is None or timestamp >= self.start_ms) and (
            self.end_ms is None or timestamp < self.end_ms
        )


def is_topic_source(source: str) -> bool:
    """Whether SOURCE names a topic range (``topic:...``) rather than a file or directory."""
    return source.startswith(TOPIC_PREFIX)


def parse_topic_range(spec: str) -> TopicRange:
    """Parse ``topic:NAME[:PARTITION][@FROM..TO]`` (FROM/TO: epoch ms or ISO time; either
    may be left out).

    >>> parse_topic_range("topic:transactions")
    TopicRange(topic='transactions', partition=None, start_ms=None, end_ms=None)
    >>> parse_topic_range("topic:transactions:2@1760860800000..2025-10-19T08:10:00Z")
    TopicRange(topic='transactions', partition=2, start_ms=1760860800000, end_ms=1760861400000)
    >>> parse_topic_range("topic:transactions@..1760860800000").end_ms
    1760860800000
    """
    usage = (
        "write a topic range as topic:NAME[:PARTITION][@FROM..TO], e.g. "
        "topic:transactions:0@2025-10-19T08:00:00Z..2025-10-19T08:10:00Z"
    )
    if not is_topic_source(spec):
        raise ConfigError(f"{spec!r} is not a topic range; {usage}")
    body = spec[len(TOPIC_PREFIX) :]
    where, at, times = body.partition("@")
    name, colon, part_text = where.partition(":")
    name = name.strip()
    if not name:
        raise ConfigError(f"{spec!r} names no topic; {usage}")
    check_topic_name(name, "SOURCE")
    partition: int | None = None
    if colon:
        if not part_text.strip().isdigit():
            raise ConfigError(
                f"{spec!r}: partition {part_text!r} is not a partition number (0, 1, ...); {usage}"
            )
        partition = int(part_text)
    start_ms = end_ms = None
    if at:
        first, dots, last = times.partition("..")
        if not dots:
            raise ConfigError(f"{spec!r}: the time range {times!r} needs '..' ; {usage}")
        if first.strip():
            start_ms = parse_time(first, f"SOURCE {spec!r}: FROM")
        if last.strip():
            end_ms = parse_time(last, f"SOURCE {spec!r}: TO")
        if start_ms is not None and end_ms is not None and end_ms <= start_ms:
            raise ConfigError(
                f"{spec!r}: TO ({last}) is not after FROM ({first}); the range is [FROM, TO)"
            )
    return TopicRange(name, partition, start_ms, end_ms)


@dataclass(frozen=True)
class ReplayOptions:
    """Everything the ``replay`` command was asked to do, validated."""

    source: str
    speed: float | None = 1.0  # None: as fast as possible
    shift_to_now: bool = False
    topic_map: Mapping[str, str] = field(default_factory=dict)
    rate_limit: float | None = None
    topics: frozenset[str] | None = None  # None: every topic
    broker: list[str] | None = None  # None: RADAR_BROKER
    source_broker: list[str] | None = None  # None: the same broker


def build_options(
    source: str,
    speed: str = "1",
    shift_to_now: bool = False,
    topic_map: str | None = None,
    rate_limit: float | None = None,
    topics: str | None = None,
    broker: str | None = None,
    source_broker: str | None = None,
) -> ReplayOptions:
    """Validate the command-line values; a :class:`ConfigError` names the value and the fix."""
    if rate_limit is not None and (not math.isfinite(rate_limit) or rate_limit <= 0):
        raise ConfigError(
            f"--rate-limit {rate_limit!r} is not a rate; give a positive number of events per "
            "second (e.g. --rate-limit 500), or leave it out for no cap"
        )
    if source_broker is not None and not is_topic_source(source):
        raise ConfigError(
            "--source-broker only applies to a topic range SOURCE (topic:NAME...); "
            f"{source!r} is a file or directory"
        )
    wanted = parse_topic_list(topics)
    return ReplayOptions(
        source=source,
        speed=parse_speed(speed),
        shift_to_now=shift_to_now,
        topic_map=parse_topic_map(topic_map),
        rate_limit=rate_limit,
        topics=frozenset(wanted) if wanted else None,
        broker=parse_bootstrap(broker) if broker is not None else None,
        source_broker=(
            parse_bootstrap(source_broker, "--source-broker") if source_broker is not None else None
        ),
    )


# --------------------------------------------------------------------------- bookkeeping


class ErrorLog:
    """Errors counted by kind; the first :data:`MAX_LISTED` are kept with where they were.

    Thread-safe: kafka-python reports failed sends from its sender thread.

    >>> log = ErrorLog(listed=1)
    >>> log.add("bad line", "a.jsonl:3: not JSON")
    >>> log.add("bad line", "a.jsonl:9: not JSON")
    >>> log.total, dict(log.counts), log.examples
    (2, {'bad line': 2}, ['a.jsonl:3: not JSON'])
    """

    def __init__(self, listed: int = MAX_LISTED) -> None:
        self.listed = listed
        self.counts: Counter[str] = Counter()
        self.examples: list[str] = []
        self._lock = threading.Lock()

    def add(self, kind: str, text: str) -> None:
        with self._lock:
            self.counts[kind] += 1
            if len(self.examples) < self.listed:
                self.examples.append(text)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def lines(self) -> list[str]:
        """Summary lines: counts by kind, then the listed examples."""
        if not self.total:
            return []
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(self.counts.items()))
        out = [f"errors by kind: {kinds}"]
        out.extend(f"  {text}" for text in self.examples)
        if self.total > len(self.examples):
            out.append(f"  ... and {self.total - len(self.examples)} more (counted, not listed)")
        return out


@dataclass
class ReplayStats:
    """Counts of one replay: ``queued`` handed to the producer, ``failed`` of those not
    delivered, ``skipped`` left out by ``--topics``, and the errors."""

    queued: int = 0
    failed: int = 0
    skipped: int = 0
    errors: ErrorLog = field(default_factory=ErrorLog)
    last_timestamp: int | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def send_failed(self, text: str) -> None:
        """A queued record was not delivered (called from the producer's sender thread)."""
        with self._lock:
            self.failed += 1
        self.errors.add("send failed", text)

    @property
    def sent(self) -> int:
        """Records handed to the producer and not reported failed."""
        return self.queued - self.failed


def summary_lines(stats: ReplayStats, seconds: float, stopped_by: str | None = None) -> list[str]:
    """The replay's closing report.

    >>> s = ReplayStats(queued=10, skipped=2)
    >>> summary_lines(s, 2.0)
    ['replay finished: sent=10 skipped=2 errors=0 duration=2.00s events_per_s=5']
    """
    rate = stats.sent / seconds if seconds > 0 else 0.0
    head = f"replay stopped by {stopped_by}, summary so far" if stopped_by else "replay finished"
    return [
        f"{head}: sent={stats.sent} skipped={stats.skipped} errors={stats.errors.total} "
        f"duration={seconds:.2f}s events_per_s={rate:.0f}",
        *stats.errors.lines(),
    ]


class StopFlag:
    """Set by SIGINT / SIGTERM; long loops look at :attr:`signum` and wind down.

    A second signal while stopping raises :class:`KeyboardInterrupt` (to get out of a
    flush that hangs). Use :meth:`installed` around the work: Faust's event loop owns SIGINT
    otherwise, and our loop blocks it.
    """

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def stopped(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str | None:
        return signal.Signals(self.signum).name if self.signum is not None else None

    def exit_code(self) -> int:
        """``128 + signal number`` (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + (self.signum or 0)

    def handler(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopFlag]:
        """Install :meth:`handler` for SIGINT and SIGTERM; restore the old handlers after."""
        old = {sig: signal.signal(sig, self.handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)


# --------------------------------------------------------------------------- values


def shift_value(value: bytes, shift_ms: int) -> bytes:
    """``value`` with its epoch-ms time fields moved by ``shift_ms`` (for ``--shift-to-now``).

    Only a JSON object is rewritten, and only at top level: ``event_time`` when it is an
    integer, and any other ``*_time`` integer that looks like epoch milliseconds (at least
    :data:`EPOCH_MS_FLOOR`, so that durations such as ``response_time: 250`` stay). A
    rewritten value is compact JSON; anything else comes back as the same bytes.

    >>> shift_value(b'{"event_time":1000,"start_time":1760860800000,"wait_time":5}', 10)
    b'{"event_time":1010,"start_time":1760860800010,"wait_time":5}'
    >>> shift_value(b'not json', 10)
    b'not json'
    """
    if not shift_ms or not value.startswith(b"{"):
        return value
    try:
        obj = json.loads(value)
    except ValueError:
        return value
    if not isinstance(obj, dict):
        return value
    changed = False
    for name, field_value in obj.items():
        if (
            name.endswith("_time")
            and type(field_value) is int
            and (name == "event_time" or field_value >= EPOCH_MS_FLOOR)
        ):
            obj[name] = field_value + shift_ms
            changed = True
    if not changed:
        return value
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


# --------------------------------------------------------------------------- pacing


class Pacer:
    """When each record is due, and the sleeping until then.

    With ``speed`` S the first record is due at once and a record with event time ``t`` at
    ``start + (t - t0) / 1000 / S`` seconds of ``clock``; ``speed=None`` means no pacing. A
    record whose time has passed (an unsorted source) is due at once. ``rate_limit`` spaces
    records at least ``1 / rate_limit`` seconds apart, never bursting to catch up. Sleeps
    are sliced (``slice_s``) so that ``should_stop`` is seen promptly, and ``on_wait`` runs
    between slices (progress reports during long gaps). Delays under ``min_sleep_s`` are not
    slept: a record is then at most that early.
    """

    def __init__(
        self,
        speed: float | None,
        rate_limit: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        should_stop: Callable[[], bool] = lambda: False,
        on_wait: Callable[[], None] | None = None,
        slice_s: float = 0.1,
        min_sleep_s: float = 0.002,
    ) -> None:
        self.speed = speed
        self.interval = 1.0 / rate_limit if rate_limit else 0.0
        self.clock = clock
        self.sleep = sleep
        self.should_stop = should_stop
        self.on_wait = on_wait
        self.slice_s = slice_s
        self.min_sleep_s = min_sleep_s
        self.first_timestamp: int | None = None
        self.started: float | None = None
        self._next_slot: float | None = None

    def due(self, timestamp: int) -> float:
        """Clock time at which a record with event time ``timestamp`` may be sent."""
        if self.started is None or self.first_timestamp is None:
            self.started = self.clock()
            self.first_timestamp = timestamp
        if self.speed is None:
            target = -math.inf
        else:
            target = self.started + (timestamp - self.first_timestamp) / 1000.0 / self.speed
        if self.interval and self._next_slot is not None:
            target = max(target, self._next_slot)
        return target

    def wait(self, timestamp: int) -> bool:
        """Sleep until the record is due; ``False`` if told to stop meanwhile."""
        target = self.due(timestamp)
        if target != -math.inf:
            while True:
                delay = target - self.clock()
                if delay < self.min_sleep_s:
                    break
                if self.should_stop():
                    return False
                self.sleep(min(delay, self.slice_s))
                if self.on_wait is not None:
                    self.on_wait()
        if self.interval:
            now = self.clock()
            self._next_slot = max(target, now) + self.interval
        return True


# --------------------------------------------------------------------------- file sources


def open_binary(path: Path) -> IO[bytes]:
    """The file's bytes, uncompressed if its name ends in ``.gz``."""
    if path.name.endswith(".gz"):
        return cast(IO[bytes], gzip.GzipFile(path, "rb"))
    return path.open("rb")


def file_records(path: Path, errors: ErrorLog) -> Generator[TrafficRecord, None, None]:
    """The records of one traffic file, in file order; bad lines go to ``errors``.

    Lines are read as bytes and decoded one by one (rather than with
    :func:`streams.traffic.read_lines`, which decodes the whole stream strictly), so that a
    line that is not UTF-8 is reported with its number and the lines after it are still
    read. A corrupt or truncated gzip stream ends the file with one error naming the line
    where reading stopped. Blank lines are skipped, as :func:`~streams.traffic.read_lines`
    does.
    """
    number = 0
    try:
        with open_binary(path) as f:
            for number, raw in enumerate(f, 1):
                if not raw.strip():
                    continue
                where = f"{path}:{number}"
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    errors.add("not UTF-8", f"{where}: not UTF-8 text (byte {exc.start} of line)")
                    continue
                try:
                    record = from_line(text, where)
                except InvalidLine as exc:
                    errors.add("bad line", str(exc))
                    continue
                yield record
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        errors.add(
            "unreadable file",
            f"{path}:{number + 1}: cannot read on ({type(exc).__name__}: {exc}); "
            "the rest of the file is skipped",
        )


def merge_by_time(sources: Iterable[Iterable[TrafficRecord]]) -> Iterator[TrafficRecord]:
    """Streaming heap merge by timestamp; ties keep source order, each source keeps its own
    order (so an unsorted source is still replayed completely)."""
    return heapq.merge(*sources, key=attrgetter("timestamp"))


# --------------------------------------------------------------------------- topic sources


class TopicSource:
    """The records of a :class:`TopicRange` on a broker, merged by timestamp across partitions.

    Partitions are assigned directly (no consumer group), one consumer each: a consumer
    is polled only when the merge needs its partition's next record, which bounds memory
    to a poll per partition. (One consumer with ``pause``/``resume`` would do the same,
    but kafka-python 3.0.12 can leave a resumed partition parked for good: records fetched
    while it was paused are only put back while no other partition's drained batch sits
    in its "next in line" slot, and the partition is not fetched again meanwhile.)

    The end of each partition is fixed when the source opens, with
    :func:`~streams.broker.true_end_offsets` (right on Tansu too), so records produced
    later are not part of the replay. The start is :func:`~streams.broker.offsets_for_time`
    of FROM (a lower bound) and records are filtered by timestamp as well.
    """

    def __init__(
        self,
        trange: TopicRange,
        bootstrap: list[str],
        errors: ErrorLog,
        should_stop: Callable[[], bool] = lambda: False,
        poll_records: int = 2_000,
        stall_timeout_s: float = 30.0,
    ) -> None:
        self.trange = trange
        self.bootstrap = bootstrap
        self.errors = errors
        self.should_stop = should_stop
        self.poll_records = poll_records
        self.stall_timeout_s = stall_timeout_s
        self.consumers: dict[Any, Any] = {}  # TopicPartition -> its consumer
        self.ends: dict[Any, int] = {}

    def _consumer(self) -> Any:
        from kafka import KafkaConsumer
        from kafka.errors import KafkaError

        from streams.broker import TANSU_CONSUMER_SETTINGS

        try:
            return KafkaConsumer(
                bootstrap_servers=self.bootstrap,
                group_id=None,
                enable_auto_commit=False,
                fetch_max_wait_ms=TANSU_CONSUMER_SETTINGS["fetch_max_wait_ms"],
                auto_offset_reset="earliest",
                max_poll_records=self.poll_records,
            )
        except KafkaError as exc:
            raise BrokerError(unreachable(self.bootstrap, exc)) from exc

    def open(self) -> TopicSource:
        """Connect, assign and seek; a missing topic or partition is a :class:`ConfigError`."""
        from kafka import TopicPartition

        from streams.broker import offsets_for_time, true_end_offsets

        name = self.trange.topic
        check_reachable(self.bootstrap)
        try:
            first = self._consumer()
            topics = first.topics()
            known = sorted(first.partitions_for_topic(name) or ()) if name in topics else []
            if not known:
                first.close()
                raise ConfigError(
                    f"SOURCE topic {name!r} does not exist on {','.join(self.bootstrap)}; "
                    "check the name (or --source-broker)"
                )
            if self.trange.partition is not None and self.trange.partition not in known:
                first.close()
                raise ConfigError(
                    f"SOURCE topic {name!r} has no partition {self.trange.partition}; "
                    f"its partitions are {', '.join(map(str, known))}"
                )
            wanted = known if self.trange.partition is None else [self.trange.partition]
            for i, p in enumerate(wanted):
                tp = TopicPartition(name, p)
                consumer = first if i == 0 else self._consumer()
                self.consumers[tp] = consumer
                consumer.assign([tp])
                consumer.seek_to_beginning(tp)
                self.ends[tp] = true_end_offsets(consumer, [tp])[tp]
                if self.trange.start_ms is not None:
                    start = offsets_for_time(consumer, [tp], self.trange.start_ms)[tp]
                    consumer.seek(tp, start)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        consumers, self.consumers = self.consumers, {}
        for consumer in consumers.values():
            consumer.close()

    def _partition(self, tp: Any) -> Iterator[Any]:
        """One partition's records in offset order, up to the end fixed at open()."""
        consumer, end = self.consumers[tp], self.ends[tp]
        stalled_since = time.monotonic()
        while consumer.position(tp) < end and not self.should_stop():
            got = consumer.poll(timeout_ms=200).get(tp, [])
            if got:
                stalled_since = time.monotonic()
            elif time.monotonic() - stalled_since > self.stall_timeout_s:
                raise BrokerError(
                    f"reading {tp.topic}[{tp.partition}] stalled at offset "
                    f"{consumer.position(tp)} (end {end}) for {self.stall_timeout_s:.0f} s; "
                    "is the source broker still up?"
                )
            for r in got:
                if r.offset >= end:
                    return
                yield r

    def __iter__(self) -> Iterator[TrafficRecord]:
        assert self.consumers, "open() the source first"
        merged = heapq.merge(
            *(self._partition(tp) for tp in self.consumers),
            key=lambda r: r.timestamp if r.timestamp is not None else -1,
        )
        trange = self.trange
        for r in merged:
            if r.value is None:
                self.errors.add(
                    "unusable record",
                    f"{r.topic}[{r.partition}]@{r.offset}: null value (a tombstone)",
                )
                continue
            if r.timestamp is None or r.timestamp < 0:
                self.errors.add(
                    "unusable record", f"{r.topic}[{r.partition}]@{r.offset}: no timestamp"
                )
                continue
            if trange.admits(r.timestamp):
                yield TrafficRecord(r.topic, r.key, r.timestamp, r.value)


# --------------------------------------------------------------------------- sending


class Sink(Protocol):
    """Where replayed records go (kafka-python in production, a list in tests)."""

    def send(self, topic: str, key: bytes | None, value: bytes, timestamp_ms: int) -> bool:
        """Queue one record; ``False`` if it failed at once (the error is counted)."""
        ...

    def flush(self, timeout_s: float | None = None) -> None: ...

    def close(self, timeout_s: float = 10.0) -> None: ...


def key_partitioner(cache_size: int = 100_000) -> Any:
    """kafka-python's default partitioning (murmur2 of the key), with each key's partition
    cached per topic and partition count: the hash in pure Python is a sixth of a send's
    cost and traffic repeats a few thousand segment keys. Null keys: random, as before."""
    from kafka.partitioner.default import DefaultPartitioner, murmur2

    class KeyCachingPartitioner(DefaultPartitioner):
        def __init__(self) -> None:
            super().__init__()
            self.cache: dict[tuple[str, bytes], tuple[int, int]] = {}

        def partition(
            self,
            topic: str,
            key: Any,
            serialized_key: bytes | None,
            value: Any,
            serialized_value: bytes | None,
            cluster: Any,
        ) -> int:
            if serialized_key is None:
                return int(
                    super().partition(topic, key, serialized_key, value, serialized_value, cluster)
                )
            parts = cluster.partitions_for_topic(topic)
            if not parts:
                raise ValueError(f"Topic {topic} not found in ClusterMetadata")
            cached = self.cache.get((topic, serialized_key))
            if cached is not None and cached[0] == len(parts):
                return cached[1]
            ordered = sorted(parts)
            chosen = int(ordered[(murmur2(serialized_key) & 0x7FFFFFFF) % len(ordered)])
            if len(self.cache) >= cache_size:
                self.cache.clear()
            self.cache[(topic, serialized_key)] = (len(ordered), chosen)
            return chosen

    return KeyCachingPartitioner()


class KafkaSink:
    """kafka-python producer with failures counted, never raised.

    A failure reported later by the sender thread counts in ``stats.failed``. A topic whose
    metadata cannot be had is remembered, so its other records fail at once instead of
    each waiting ``max_block_ms``. Every :attr:`checkpoint` records one future is kept; with
    more than :attr:`max_checkpoints` pending the oldest is waited for, which bounds what
    the producer buffers (kafka-python 3 has no ``buffer_memory`` limit).
    """

    checkpoint = 10_000
    max_checkpoints = 4

    def __init__(
        self,
        bootstrap: list[str],
        stats: ReplayStats,
        should_stop: Callable[[], bool] = lambda: False,
        **overrides: Any,
    ) -> None:
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        from streams.broker import PRODUCER_SETTINGS

        self.stats = stats
        self.should_stop = should_stop
        self._unavailable: dict[str, str] = {}
        self._checkpoints: deque[Any] = deque()
        self._until_checkpoint = self.checkpoint
        check_reachable(bootstrap)
        config = {
            **PRODUCER_SETTINGS,
            **PRODUCER_TUNING,
            "partitioner": key_partitioner(),
            **overrides,
        }
        try:
            self.producer = KafkaProducer(bootstrap_servers=bootstrap, **config)
        except KafkaError as exc:
            raise BrokerError(unreachable(bootstrap, exc)) from exc

    def _on_error(self, topic: str) -> Callable[[BaseException], None]:
        def errback(exc: BaseException) -> None:
            self.stats.send_failed(f"{topic}: {type(exc).__name__}: {exc}")

        return errback

    def send(self, topic: str, key: bytes | None, value: bytes, timestamp_ms: int) -> bool:
        from kafka.errors import KafkaError

        reason = self._unavailable.get(topic)
        if reason is not None:
            self.stats.errors.add("send failed", f"{topic}: {reason}")
            return False
        try:
            future = self.producer.send(topic, value=value, key=key, timestamp_ms=timestamp_ms)
        except KafkaError as exc:
            text = f"{type(exc).__name__}: {exc}"
            if "metadata" in str(exc).lower():
                self._unavailable[topic] = f"topic unavailable ({text})"
            self.stats.errors.add("send failed", f"{topic}: {text}")
            return False
        except (ValueError, TypeError, AssertionError) as exc:
            self.stats.errors.add("send failed", f"{topic}: {type(exc).__name__}: {exc}")
            return False
        future.add_errback(self._on_error(topic))
        self._until_checkpoint -= 1
        if self._until_checkpoint <= 0:
            self._until_checkpoint = self.checkpoint
            self._checkpoints.append(future)
            while len(self._checkpoints) > self.max_checkpoints and not self.should_stop():
                if self._wait(self._checkpoints[0], 1.0):
                    self._checkpoints.popleft()
        return True

    @staticmethod
    def _wait(future: Any, timeout_s: float) -> bool:
        """Whether ``future`` completed (either way) within ``timeout_s``."""
        from kafka.errors import KafkaError, KafkaTimeoutError

        try:
            future.get(timeout=timeout_s)
        except KafkaTimeoutError:
            return bool(future.is_done)
        except KafkaError:
            return True  # failed; counted by the errback
        return True

    def flush(self, timeout_s: float | None = None) -> None:
        from kafka.errors import KafkaError

        try:
            self.producer.flush(timeout=timeout_s)
        except KafkaError as exc:  # a flush timeout: what is unsent fails at close()
            self.stats.errors.add("send failed", f"flush: {type(exc).__name__}: {exc}")

    def close(self, timeout_s: float = 10.0) -> None:
        self.producer.close(timeout=timeout_s)


def quiet_kafka_selector() -> None:
    """Hide kafka-python 3's "Task ran for 0.1s ... blocking the event loop" warnings.

    Its sender thread times each network step; while our thread keeps the GIL busy
    encoding records, steps take longer than its 0.1 s threshold, and it logs a warning
    many times a second although nothing is wrong. Errors are still logged.
    """
    logging.getLogger("kafka.net.selector").setLevel(logging.ERROR)


def unreachable(bootstrap: Sequence[str], exc: BaseException) -> str:
    """The error message for a broker that cannot be used: what failed and what to do."""
    what = str(exc) if str(exc).startswith(type(exc).__name__) else f"{type(exc).__name__}: {exc}"
    return (
        f"cannot use the broker at {','.join(bootstrap)} ({what}); is it running? Start one "
        "with `python -m streams broker`, or give --broker host:port (default: RADAR_BROKER)"
    )


def check_reachable(bootstrap: Sequence[str], timeout_s: float = 3.0) -> None:
    """Fail fast (:class:`BrokerError`) when no bootstrap address accepts a TCP connection.

    kafka-python retries an unreachable bootstrap for about 30 s before giving up; a plain
    connect tells in milliseconds that nothing listens there.
    """
    last: OSError | None = None
    for address in bootstrap:
        host, _, port = address.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
                return
        except (OSError, ValueError) as exc:
            last = exc if isinstance(exc, OSError) else OSError(str(exc))
    raise BrokerError(unreachable(bootstrap, last or OSError("no address")))


def replay_records(
    records: Iterable[TrafficRecord],
    sink: Sink,
    options: ReplayOptions,
    stats: ReplayStats,
    pacer: Pacer,
    should_stop: Callable[[], bool] = lambda: False,
    progress: Progress | None = None,
    wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
) -> None:
    """Send ``records`` to ``sink``: filter (``--topics``), pace, shift, rename; count all.

    Pacing and ``--shift-to-now`` start at the first record that passes the filter.
    """
    wanted = options.topics
    topic_map = options.topic_map
    shift: int | None = None
    detail = progress_detail(stats)
    for rec in records:
        if should_stop():
            break
        if wanted is not None and rec.topic not in wanted:
            stats.skipped += 1
            continue
        if shift is None:
            shift = wall_ms() - rec.timestamp if options.shift_to_now else 0
        if not pacer.wait(rec.timestamp):
            break
        timestamp, value = rec.timestamp, rec.value
        if shift:
            timestamp += shift
            value = shift_value(value, shift)
        if sink.send(topic_map.get(rec.topic, rec.topic), rec.key, value, timestamp):
            stats.queued += 1
        stats.last_timestamp = rec.timestamp
        if progress is not None:
            progress.update(stats.queued, detail)


def progress_detail(stats: ReplayStats) -> Callable[[], str]:
    """What a progress report adds to the count: the event time reached, errors so far."""

    def detail() -> str:
        parts = []
        if stats.last_timestamp is not None:
            parts.append("event time " + _iso(stats.last_timestamp))
        if stats.errors.total:
            parts.append(f"{stats.errors.total} errors")
        return ", ".join(parts)

    return detail


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- the command


def run_replay(
    options: ReplayOptions,
    stop: StopFlag,
    default_broker: list[str],
    out: IO[str] | None = None,
    progress: Progress | None = None,
    sink_factory: Callable[[list[str], ReplayStats], Sink] | None = None,
) -> tuple[int, ReplayStats]:
    """Run one replay; returns the exit code and the counts. Prints the summary on ``out``.

    Usage errors (:class:`ConfigError`, a missing SOURCE) are raised before anything is
    sent; the caller maps them to exit code 2.
    """
    out = out if out is not None else sys.stdout
    stats = ReplayStats()

    def should_stop() -> bool:
        return stop.stopped

    broker = options.broker or default_broker
    closers: list[Callable[[], None]] = []
    records: Iterable[TrafficRecord]
    if is_topic_source(options.source):
        trange = parse_topic_range(options.source)
        topic_source = TopicSource(
            trange, options.source_broker or broker, stats.errors, should_stop
        ).open()
        closers.append(topic_source.close)
        records = topic_source
    else:
        try:
            paths = traffic_files(options.source)
        except RadarError as exc:
            raise ConfigError(f"SOURCE: {exc}") from None
        generators = [file_records(p, stats.errors) for p in paths]
        closers.extend(g.close for g in generators)
        records = merge_by_time(generators)
    progress = progress if progress is not None else Progress("replay", unit="events")
    started = time.monotonic()
    reporter = progress
    sink: Sink | None = None
    forced = False
    try:
        sink = (sink_factory or _kafka_sink(should_stop))(broker, stats)
        pacer = Pacer(
            options.speed,
            options.rate_limit,
            should_stop=should_stop,
            on_wait=lambda: reporter.update(stats.queued, progress_detail(stats)),
        )
        try:
            replay_records(records, sink, options, stats, pacer, should_stop, reporter)
        except RadarError as exc:  # the source broker failed part-way: report what was sent
            stats.errors.add("source failed", str(exc))
        # Stopping: flush what was sent, but do not wait forever for a broker that is gone.
        sink.flush(STOP_FLUSH_S if stop.stopped else None)
    except KeyboardInterrupt:  # a second signal (or a Ctrl-C outside our handler): hurry
        forced = True
        if stop.signum is None:
            stop.signum = signal.SIGINT
    finally:
        for close in closers:
            close()
        if sink is not None:
            sink.close(0.0 if forced else STOP_FLUSH_S)
        reporter.finish()
    seconds = time.monotonic() - started
    for line in summary_lines(stats, seconds, stop.name):
        print(line, file=out, flush=True)
    if stop.stopped:
        return stop.exit_code(), stats
    return (EXIT_ERRORS if stats.errors.total else EXIT_OK), stats


def _kafka_sink(should_stop: Callable[[], bool]) -> Callable[[list[str], ReplayStats], Sink]:
    def make(bootstrap: list[str], stats: ReplayStats) -> Sink:
        return KafkaSink(bootstrap, stats, should_stop)

    return make


@app.command(
    argument("source"),
    option(
        "--speed",
        default="1",
        show_default=True,
        help="Event-time seconds per wall-clock second: 1 = as recorded, 60 = an hour a "
        "minute, 'max' = no pacing.",
    ),
    option(
        "--shift-to-now",
        is_flag=True,
        default=False,
        help="Move every timestamp (and the value's epoch-ms *_time fields) by now minus the "
        "first timestamp, so the replay looks live.",
    ),
    option(
        "--topic-map",
        default=None,
        help="Rename topics on the way: old=new[,old2=new2].",
    ),
    option(
        "--rate-limit",
        type=float,
        default=None,
        help="At most this many events per second (default: no cap).",
    ),
    option(
        "--topics",
        default=None,
        help="Only these source topics (comma-separated); the others are skipped and counted.",
    ),
    option(
        "--broker",
        default=None,
        help="Broker to publish to, host:port[,host:port] (default: RADAR_BROKER).",
    ),
    option(
        "--source-broker",
        default=None,
        help="Broker to read a topic:NAME SOURCE from (default: the --broker one).",
    ),
)
async def replay(
    self: AppCommand,
    source: str,
    speed: str,
    shift_to_now: bool,
    topic_map: str | None,
    rate_limit: float | None,
    topics: str | None,
    broker: str | None,
    source_broker: str | None,
) -> None:
    """Publish traffic files or a topic range to Kafka, keeping keys, values and event time.

    SOURCE is a traffic file or directory (*.jsonl, *.jsonl.gz) or a topic range
    topic:NAME[:PARTITION][@FROM..TO] (FROM/TO: epoch ms or ISO time, [FROM, TO)).
    Exit codes: 0 all sent, 1 bad lines or failed sends, 2 usage error, 130/143 stopped.
    """
    sys.exit(
        replay_main(
            source,
            speed=speed,
            shift_to_now=shift_to_now,
            topic_map=topic_map,
            rate_limit=rate_limit,
            topics=topics,
            broker=broker,
            source_broker=source_broker,
        )
    )


def command_main(run: Callable[[StopFlag], int]) -> int:
    """Run a Kafka command body with Ctrl-C/SIGTERM handling; map errors to exit codes
    (a bad option or source: :data:`EXIT_USAGE`; anything else of ours: :data:`EXIT_ERRORS`)."""
    quiet_kafka_selector()
    stop = StopFlag()
    try:
        with stop.installed():
            return run(stop)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except RadarError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return EXIT_ERRORS


def replay_main(source: str, **values: Any) -> int:
    """The ``replay`` command without Faust: validate, run, map errors to exit codes."""
    from streams.app import settings

    def run(stop: StopFlag) -> int:
        options = build_options(source, **values)
        return run_replay(options, stop, settings.bootstrap_servers)[0]

    return command_main(run)
