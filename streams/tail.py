"""``python -m streams tail``: a live, readable terminal view of the incidents topic.

One line per incident event, in the order each partition holds them (every event of one
incident shares its dedup key, hence its partition, so an incident's story reads in order)::

    2025-10-19T08:08:10Z  OPENED    critical  outage-radar/wallet/1760861290000  wallet  \
transactions through partner bank TCB failing: ...  [segments: wallet/partner_bank=TCB]
    2025-10-19T08:12:30Z  RESOLVED  info      outage-radar/wallet/1760861290000  wallet  \
Resolved: transactions through partner bank TCB failing  [segments: ...]  lasted 4m20s

The time is the event's own time (UTC): when the incident changed, in event time. The action
comes from the CloudEvents ``type`` (opened, updated, resolved); the severity, coloured, from
the PagerDuty payload; a resolved line says how long the incident lasted (from the event's
``opened_at``). ``--json`` prints the events themselves instead, one JSON object per line, for
``jq`` and other pipes (warnings and the summary go to stderr, so stdout stays clean).

Where to start (``--from``): ``beginning``, ``end`` (only what arrives from now on), an
``OFFSET`` (the same offset in every partition, clamped to what the partition holds), ``-N``
(the last N events of each partition) or an ISO 8601 time (records published at or after it:
the Kafka timestamp, looked up with :func:`~streams.broker.offsets_for_time`, which also works
on Tansu, whose time lookups answer 0, because records are filtered by timestamp as well).
``--follow`` (the default) waits for new events until Ctrl-C; ``--no-follow`` stops at the end
of every partition as it was when the tail started (the true end, also on Tansu).

Filters: ``--service`` (repeatable or comma-separated) keeps events whose service, or one of
whose segments' service, is named; ``--min-severity`` keeps events at least that severe. A
resolve is always ``info``, so it passes ``--min-severity`` when the tail showed the
incident's earlier events (or never saw them: its severity is then unknown, and a resolve is
better shown than hidden); it is dropped with the incident when the incident was filtered out.

A record on the topic that is not a valid incident event (not UTF-8, not JSON, against
``schemas/incident.v1.json``) is a warning line naming its partition and offset and the
reason; the tail goes on. Partitions are assigned directly (no consumer group: nothing is
committed, and Tansu's slow group joins are avoided).

Exit codes: 0 (``--no-follow`` reached the end, or the output pipe was closed), 1 the broker
could not be used, 2 usage error (the message names the value and the fix), 130 / 143 stopped
by SIGINT / SIGTERM, after a summary of the counts on stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

import click
from faust.cli import AppCommand, option

from streams.app import app
from streams.errors import BrokerError, ConfigError, InvalidRecord
from streams.replay import (
    EXIT_OK,
    StopFlag,
    check_reachable,
    check_topic_name,
    command_main,
    parse_bootstrap,
    parse_time,
    unreachable,
)
from streams.validation import decode

#: Milliseconds one poll waits for records (also how soon Ctrl-C is noticed).
POLL_MS = 200
#: Incident events larger than this are reported as invalid, not shown.
MAX_EVENT_BYTES = 4 * 1024 * 1024
#: Severities from least to most severe (the schema's enum).
SEVERITIES: tuple[str, ...] = ("info", "warning", "error", "critical")
#: CloudEvents ``type`` -> the word a line shows.
ACTIONS: dict[str, str] = {
    "dev.outage-radar.incident.triggered": "OPENED",
    "dev.outage-radar.incident.updated": "UPDATED",
    "dev.outage-radar.incident.resolved": "RESOLVED",
}
#: Segments listed on one line; more are counted.
MAX_SEGMENTS = 4

RESET = "\x1b[0m"
#: ANSI styles of each severity and of the other coloured parts of a line.
STYLES: dict[str, str] = {
    "critical": "\x1b[1;97;41m",  # bold white on red
    "error": "\x1b[1;31m",  # bold red
    "warning": "\x1b[33m",  # yellow
    "info": "\x1b[36m",  # cyan
    "OPENED": "\x1b[1m",  # bold
    "UPDATED": "",
    "RESOLVED": "\x1b[1;32m",  # bold green
    "key": "\x1b[2m",  # dim
    "warn": "\x1b[1;35m",  # bold magenta
}


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class StartAt:
    """Where reading starts: ``beginning``, ``end``, ``offset`` N, ``last`` N or ``time`` ms."""

    kind: str
    value: int = 0

    def describe(self) -> str:
        """In words, for the first line of the tail.

        >>> StartAt("last", 5).describe(), StartAt("time", 1760860800000).describe()
        ('the last 5 events of each partition', '2025-10-19T08:00:00Z')
        """
        if self.kind == "offset":
            return f"offset {self.value}"
        if self.kind == "last":
            return f"the last {self.value} events of each partition"
        if self.kind == "time":
            return utc(self.value)
        return f"the {self.kind}"


def parse_from(text: str) -> StartAt:
    """``--from``: ``beginning``, ``end``, an offset, ``-N`` (last N), or an ISO 8601 time.

    >>> parse_from("beginning")
    StartAt(kind='beginning', value=0)
    >>> parse_from("42"), parse_from("-5")
    (StartAt(kind='offset', value=42), StartAt(kind='last', value=5))
    >>> parse_from("2025-10-19T08:00:00Z")
    StartAt(kind='time', value=1760860800000)
    """
    raw = text.strip().lower()
    if raw in ("beginning", "end"):
        return StartAt(raw)
    if raw.isdigit():
        return StartAt("offset", int(raw))
    if raw.startswith("-") and raw[1:].isdigit():
        return StartAt("last", int(raw[1:]))
    try:
        return StartAt("time", parse_time(text.strip(), "--from"))
    except ConfigError:
        raise ConfigError(
            f"--from {text!r} is not a start; give beginning, end, an offset (e.g. 120), -N for "
            "the last N events of each partition (e.g. -20), or an ISO 8601 time "
            "(e.g. 2025-10-19T08:00:00Z)"
        ) from None


def parse_services(values: Iterable[str]) -> frozenset[str]:
    """``--service`` values (repeated and/or comma-separated), case-folded.

    >>> sorted(parse_services(["wallet, Checkout", "momo"]))
    ['checkout', 'momo', 'wallet']
    """
    names = {n.strip().casefold() for v in values for n in v.split(",")}
    names.discard("")
    return frozenset(names)


def use_color(choice: str, stream: IO[str], environ: Mapping[str, str] | None = None) -> bool:
    """``--color``: ``always``, ``never``, or ``auto`` = ``stream`` is a terminal and the
    ``NO_COLOR`` variable is unset or empty (https://no-color.org).

    >>> import io
    >>> use_color("auto", io.StringIO(), {}), use_color("always", io.StringIO(), {"NO_COLOR": "1"})
    (False, True)
    """
    if choice == "always":
        return True
    if choice == "never":
        return False
    env = os.environ if environ is None else environ
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and not env.get("NO_COLOR")


@dataclass(frozen=True)
class TailOptions:
    """What the ``tail`` command was asked to do, validated."""

    topic: str
    start: StartAt = StartAt("end")
    follow: bool = True
    services: frozenset[str] = frozenset()
    min_severity: str | None = None
    color: bool = False
    as_json: bool = False
    broker: list[str] | None = None  # None: RADAR_BROKER


def build_options(
    topic: str,
    from_: str = "end",
    follow: bool = True,
    services: Iterable[str] = (),
    min_severity: str | None = None,
    color: str = "auto",
    as_json: bool = False,
    broker: str | None = None,
    stream: IO[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> TailOptions:
    """Validate the command-line values; a :class:`ConfigError` names the value and the fix."""
    if min_severity is not None and min_severity.lower() not in SEVERITIES:
        raise ConfigError(
            f"--min-severity {min_severity!r} is not a severity; use one of "
            f"{', '.join(SEVERITIES)} (least to most severe)"
        )
    if color not in ("auto", "always", "never"):
        raise ConfigError(f"--color {color!r} is not known; use auto, always or never")
    return TailOptions(
        topic=check_topic_name(topic, "--topic"),
        start=parse_from(from_),
        follow=follow,
        services=parse_services(services),
        min_severity=None if min_severity is None else min_severity.lower(),
        color=use_color(color, stream if stream is not None else sys.stdout, environ),
        as_json=as_json,
        broker=parse_bootstrap(broker) if broker is not None else None,
    )


# --------------------------------------------------------------------------- one event


@dataclass(frozen=True)
class IncidentView:
    """What a line shows of one incident event."""

    time: str
    action: str
    severity: str
    dedup_key: str
    service: str
    services: frozenset[str]
    summary: str
    segments: tuple[str, ...]
    duration_ms: int | None


def parse_event(value: bytes | None) -> dict[str, Any]:
    """The incident event in a record value; :class:`InvalidRecord` says what is wrong."""
    return decode("incident", value, max_bytes=MAX_EVENT_BYTES)


def _rfc3339_ms(text: str) -> int | None:
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


def utc(ms: int) -> str:
    """``2025-10-19T08:08:10Z`` (seconds; the lines are for people).

    >>> utc(1760861290123)
    '2025-10-19T08:08:10Z'
    """
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def duration(ms: int) -> str:
    """A short duration.

    >>> duration(35_000), duration(260_000), duration(3_720_000), duration(93_600_000)
    ('35s', '4m20s', '1h02m', '1d02h')
    """
    s = max(0, ms) // 1000
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def segment_label(segment: Mapping[str, Any]) -> str:
    """``wallet/partner_bank=TCB`` for ``{"service": "wallet", "partner_bank": "TCB"}``.

    >>> segment_label({"service": "wallet"}), segment_label({"service": "w", "region": "n"})
    ('wallet', 'w/region=n')
    """
    service = str(segment.get("service", "?"))
    rest = ",".join(f"{k}={v}" for k, v in segment.items() if k != "service")
    return f"{service}/{rest}" if rest else service


def view(event: Mapping[str, Any]) -> IncidentView:
    """The parts of a (schema-valid) incident event that a line shows."""
    data = event["data"]
    payload = data["payload"]
    details = payload.get("custom_details") or {}
    segments_raw = details.get("segments")
    segments = (
        [s for s in segments_raw if isinstance(s, Mapping)]
        if isinstance(segments_raw, list)
        else []
    )
    subject_service = str(event["subject"]).split("/", 1)[0]
    service = str(payload.get("component") or subject_service)
    services = {service, subject_service}
    services.update(str(s["service"]) for s in segments if "service" in s)
    action = ACTIONS.get(event["type"]) or (
        "RESOLVED" if data["event_action"] == "resolve" else "OPENED"
    )
    at_ms = _rfc3339_ms(event["time"])
    lasted: int | None = None
    opened = details.get("opened_at")
    if action == "RESOLVED" and isinstance(opened, str) and at_ms is not None:
        opened_ms = _rfc3339_ms(opened)
        lasted = None if opened_ms is None else at_ms - opened_ms
    summary = payload.get("summary") or details.get("probable_cause") or ""
    return IncidentView(
        time=utc(at_ms) if at_ms is not None else str(event["time"]),
        action=action,
        severity=payload["severity"],
        dedup_key=data["dedup_key"],
        service=service,
        services=frozenset(s.casefold() for s in services),
        summary=" ".join(str(summary).split()),  # one line, whatever the summary holds
        segments=tuple(segment_label(s) for s in segments),
        duration_ms=lasted,
    )


class Renderer:
    """Lines for people: one per event, one per invalid record; ANSI colours when asked."""

    def __init__(self, color: bool) -> None:
        self.color = color

    def _paint(self, text: str, style: str) -> str:
        code = STYLES.get(style, "")
        return f"{code}{text}{RESET}" if self.color and code else text

    def line(self, v: IncidentView) -> str:
        segments = ""
        if v.segments:
            shown = list(v.segments[:MAX_SEGMENTS])
            if len(v.segments) > MAX_SEGMENTS:
                shown.append(f"+{len(v.segments) - MAX_SEGMENTS} more")
            segments = f"  [segments: {'; '.join(shown)}]"
        lasted = f"  lasted {duration(v.duration_ms)}" if v.duration_ms is not None else ""
        return (
            f"{v.time}  {self._paint(f'{v.action:<8}', v.action)}  "
            f"{self._paint(f'{v.severity:<8}', v.severity)}  "
            f"{self._paint(v.dedup_key, 'key')}  {v.service}  {v.summary}{segments}{lasted}"
        )

    def warning(self, where: str, reason: str, timestamp_ms: int | None = None) -> str:
        when = utc(timestamp_ms) if timestamp_ms is not None and timestamp_ms >= 0 else "-" * 20
        text = f"{'WARNING':<8}  {where}: not an incident event, skipped: {reason}"
        return f"{when}  {self._paint(text, 'warn')}"


class Filter:
    """``--service`` and ``--min-severity``; remembers which incidents it let through so
    that their resolves (always ``info``) follow them."""

    def __init__(self, services: frozenset[str] = frozenset(), min_severity: str | None = None):
        self.services = services
        self.min_rank = SEVERITIES.index(min_severity) if min_severity else 0
        self.shown: set[str] = set()
        self.hidden: set[str] = set()

    def admits(self, v: IncidentView) -> bool:
        if self.services and not (v.services & self.services):
            return False
        if v.action == "RESOLVED" and self.min_rank:
            return v.dedup_key not in self.hidden or v.dedup_key in self.shown
        if SEVERITIES.index(v.severity) < self.min_rank:
            self.hidden.add(v.dedup_key)
            return False
        self.shown.add(v.dedup_key)
        return True


# --------------------------------------------------------------------------- the loop


@dataclass
class TailStats:
    """Counts of one tail, for the closing summary."""

    shown: Counter[str] = field(default_factory=Counter)  # by action
    filtered: int = 0
    invalid: int = 0
    before_from: int = 0

    def summary(self, why: str) -> str:
        total = sum(self.shown.values())
        parts = ", ".join(f"{self.shown[a]} {a.lower()}" for a in ("OPENED", "UPDATED", "RESOLVED"))
        text = f"tail {why}: {total} events shown ({parts})"
        if self.filtered:
            text += f", {self.filtered} filtered out"
        if self.before_from:
            text += f", {self.before_from} before --from"
        noun = "record" if self.invalid == 1 else "records"
        return text + f", {self.invalid} invalid {noun}"


class Tailer:
    """Reads assigned partitions and prints what it reads; :meth:`run` until told to stop.

    ``consumer`` is a kafka-python ``KafkaConsumer`` (or a fake with ``poll`` and
    ``position``); ``ends`` are the true end offsets when the tail started (``--no-follow``
    stops there). ``out`` receives event lines; ``err`` the warnings in ``--json`` mode.
    """

    def __init__(
        self,
        consumer: Any,
        options: TailOptions,
        ends: Mapping[Any, int],
        out: IO[str],
        err: IO[str],
        stats: TailStats | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        self.consumer = consumer
        self.options = options
        self.ends = dict(ends)
        self.out = out
        self.err = err
        self.stats = stats if stats is not None else TailStats()
        self.should_stop = should_stop
        self.renderer = Renderer(options.color and not options.as_json)
        self.filter = Filter(options.services, options.min_severity)
        self.from_ms = options.start.value if options.start.kind == "time" else None

    def handle(self, tp: Any, records: Iterable[Any]) -> None:
        """Show one partition's batch (offset order)."""
        for r in records:
            if not self.options.follow and r.offset >= self.ends.get(tp, 0):
                return  # arrived after the tail started: --no-follow leaves it out
            if self.from_ms is not None and (r.timestamp is None or r.timestamp < self.from_ms):
                self.stats.before_from += 1
                continue
            self.handle_value(f"{tp.topic}[{tp.partition}]@{r.offset}", r.value, r.timestamp)

    def handle_value(self, where: str, value: bytes | None, timestamp_ms: int | None) -> None:
        try:
            event = parse_event(value)
            v = view(event)
        except InvalidRecord as exc:
            self.stats.invalid += 1
            reason = exc.reason.removeprefix("incident record: ")
            line = self.renderer.warning(where, reason, timestamp_ms)
            print(line, file=self.err if self.options.as_json else self.out, flush=True)
            return
        if not self.filter.admits(v):
            self.stats.filtered += 1
            return
        self.stats.shown[v.action] += 1
        if self.options.as_json:
            text = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
        else:
            text = self.renderer.line(v)
        print(text, file=self.out, flush=True)

    def at_end(self) -> bool:
        return all(self.consumer.position(tp) >= end for tp, end in self.ends.items())

    def run(self) -> str:
        """Consume until stopped (``"signal"``) or, with ``--no-follow``, at the end (``"end"``)."""
        while True:
            if self.should_stop():
                return "signal"
            if not self.options.follow and self.at_end():
                return "end"
            for tp, records in self.consumer.poll(timeout_ms=POLL_MS).items():
                self.handle(tp, records)


def assign(consumer: Any, topic: str, start: StartAt) -> dict[Any, int]:
    """Assign every partition of ``topic``, positioned for ``start``; returns the true ends.

    A topic that does not exist is a :class:`ConfigError` (asking for its partitions could
    auto-create it).
    """
    from kafka import TopicPartition

    from streams.broker import offsets_for_time, true_end_offsets

    if topic not in consumer.topics():
        raise ConfigError(
            f"topic {topic!r} does not exist on the broker; the worker creates it at start-up "
            "(python -m streams worker), or name the right one with --topic "
            "(default: RADAR_TOPIC_INCIDENTS) and --broker"
        )
    tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    begin: dict[Any, int] = consumer.beginning_offsets(tps)
    ends = true_end_offsets(consumer, tps)
    if start.kind == "end":
        wanted = ends
    elif start.kind == "offset":
        wanted = {tp: min(max(start.value, begin[tp]), ends[tp]) for tp in tps}
    elif start.kind == "last":
        wanted = {tp: max(begin[tp], ends[tp] - start.value) for tp in tps}
    elif start.kind == "time":
        wanted = offsets_for_time(consumer, tps, start.value)
    else:
        wanted = begin
    for tp, offset in wanted.items():
        consumer.seek(tp, offset)
    return ends


def run_tail(
    options: TailOptions,
    stop: StopFlag,
    default_broker: list[str],
    out: IO[str] | None = None,
    err: IO[str] | None = None,
) -> tuple[int, TailStats]:
    """Run one tail; returns the exit code and the counts. The summary goes to ``err``."""
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    from streams.broker import TANSU_CONSUMER_SETTINGS

    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    bootstrap = options.broker or default_broker
    stats = TailStats()
    check_reachable(bootstrap)
    try:
        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=TANSU_CONSUMER_SETTINGS["fetch_max_wait_ms"],
            auto_offset_reset="earliest",
            max_poll_records=500,
        )
    except KafkaError as exc:
        raise BrokerError(unreachable(bootstrap, exc)) from exc
    reason = "signal"
    try:
        ends = assign(consumer, options.topic, options.start)
        until = "Ctrl-C to stop" if options.follow else "until the end"
        print(
            f"tail: {options.topic} on {','.join(bootstrap)} from {options.start.describe()}, "
            f"{until}",
            file=err,
            flush=True,
        )
        tailer = Tailer(consumer, options, ends, out, err, stats, lambda: stop.stopped)
        reason = tailer.run()
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        reason = "signal"
    finally:
        consumer.close()
    why = "reached the end" if reason == "end" else f"stopped by {stop.name or 'a signal'}"
    print(stats.summary(why), file=err, flush=True)
    return (EXIT_OK if reason == "end" else stop.exit_code()), stats


@app.command(
    option(
        "--from",
        "from_",
        default="end",
        help="Where to start: beginning, end (only new events), an OFFSET in every partition, "
        "-N (the last N events of each partition) or an ISO 8601 time "
        "(e.g. 2025-10-19T08:00:00Z: events published from then on).",
    ),
    option(
        "--follow/--no-follow",
        default=True,
        help="Keep waiting for new events until Ctrl-C, or stop at the end of every partition "
        "as it was when the tail started.",
    ),
    option(
        "--service",
        "services",
        multiple=True,
        help="Only incidents of this service (or with a segment of it); repeat the option or "
        "separate names with commas. Default: every service.",
    ),
    option(
        "--min-severity",
        default=None,
        type=click.Choice(SEVERITIES, case_sensitive=False),
        help="Only events at least this severe: info, warning, error or critical (resolves "
        "follow the incidents shown). Default: all.",
    ),
    option(
        "--color",
        default="auto",
        type=click.Choice(("auto", "always", "never")),
        help="Colour the severities: auto (when stdout is a terminal and NO_COLOR is unset), "
        "always or never.",
    ),
    option(
        "--json",
        "as_json",
        is_flag=True,
        default=False,
        help="Print the events themselves, one JSON object per line (for jq and pipes); "
        "warnings and the summary go to stderr.",
    ),
    option(
        "--topic",
        default=None,
        help="Topic to read (default: RADAR_TOPIC_INCIDENTS, i.e. incidents).",
    ),
    option(
        "--broker",
        default=None,
        help="Broker to read from, host:port[,host:port] (default: RADAR_BROKER).",
    ),
)
async def tail(
    self: AppCommand,
    from_: str,
    follow: bool,
    services: tuple[str, ...],
    min_severity: str | None,
    color: str,
    as_json: bool,
    topic: str | None,
    broker: str | None,
) -> None:
    """Show incidents as they open, update and resolve: one readable line each.

    Exit codes: 0 end reached (--no-follow), 1 broker trouble, 2 usage error,
    130/143 stopped by Ctrl-C/SIGTERM (with a summary of the counts on stderr).
    """
    sys.exit(
        tail_main(
            from_=from_,
            follow=follow,
            services=services,
            min_severity=min_severity,
            color=color,
            as_json=as_json,
            topic=topic,
            broker=broker,
        )
    )


def tail_main(topic: str | None = None, **values: Any) -> int:
    """The ``tail`` command without Faust: validate, run, map errors to exit codes."""
    from streams.app import settings

    def run(stop: StopFlag) -> int:
        options = build_options(topic or settings.topics.incidents, **values)
        return run_tail(options, stop, settings.bootstrap_servers)[0]

    try:
        return command_main(run)
    except BrokenPipeError:  # `tail | head`: the reader has gone; that is not an error
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
