"""``python -m streams webhook``: forward every incident event to an HTTP endpoint.

Each event of the incidents topic is POSTed to ``RADAR_WEBHOOK_URL`` as its PagerDuty Events v2
body (the CloudEvents ``data``, plus ``routing_key`` when ``RADAR_WEBHOOK_ROUTING_KEY`` is set,
so the URL can be PagerDuty's own ``https://events.pagerduty.com/v2/enqueue``), with
``Content-Type: application/json`` and these headers:

* ``X-Radar-Event-Id``: the CloudEvents id, the same on every redelivery of the event (a
  receiver drops the copies that at-least-once delivery can make);
* ``X-Radar-Timestamp`` and ``X-Radar-Signature``, when ``RADAR_WEBHOOK_SECRET`` is set: the
  Unix time of the attempt in seconds, and ``sha256=`` + the hex HMAC-SHA256, keyed with the
  secret, of ``<timestamp> + "." + <the exact body bytes>``.

Verifying a request (the receiver's side; ``examples/webhook_receiver.py`` runs it)::

    import hashlib, hmac, time
    from collections.abc import Mapping

    def verify(secret: str, headers: Mapping[str, str], body: bytes, max_age_s: int = 300) -> bool:
        timestamp = headers.get("X-Radar-Timestamp", "")
        signature = headers.get("X-Radar-Signature", "")
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > max_age_s:
            return False  # unsigned, or too old / too new: a replayed request
        signed = timestamp.encode() + b"." + body  # the raw body, before any JSON parsing
        digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
        return hmac.compare_digest("sha256=" + digest, signature)

The timestamp is inside the signed string, so an old request cannot be re-sent with a new
time; within the tolerance, dropping an ``X-Radar-Event-Id`` seen before stops a replay too.

Delivery: an answer in 2xx delivers the event. A connection error, a timeout, 429 and 5xx are
retried with exponential backoff (``RADAR_WEBHOOK_BACKOFF_SECONDS`` doubled per attempt, at most
``RADAR_WEBHOOK_MAX_BACKOFF_SECONDS``, with jitter: each delay is drawn from the upper half of
its step so that many sinks do not retry in lockstep; a longer ``Retry-After`` is honoured up
to the cap), for as long as it takes: at-least-once means an event is never given up because a
receiver is down. Any other answer (a 3xx, a 4xx other than 429) is permanent: the request
itself is wrong (URL, routing key, body), so retrying cannot help. The event is reported with
the status and the answer's body, counted, appended to ``--rejected FILE`` when given (a
traffic file: ``python -m streams replay FILE --topic-map incidents=...`` sends it again once
the cause is fixed), and the sink moves on. A record that is not a valid incident event is
handled the same way, without a request.

At-least-once: the sink is a consumer group (``--group``, default ``<RADAR_APP_ID>-webhook``)
that commits a record's offset only after it was delivered (2xx) or reported as permanently
rejected. Stopped (Ctrl-C, SIGTERM, a crash) while retrying, it commits nothing for that
record, so the next run sends it again; a receiver can see an event twice, never zero times.
The same holds when one event's retries outlast the group's ``max.poll.interval.ms`` (5
minutes): the member leaves the group, its commit fails (counted and logged), and the event
is read and sent again after the rejoin. A new group starts at ``--new-group-start``:
``latest`` (only new incidents; on the embedded broker, whose end offsets are low, it can
start a few events early) or ``earliest``.

Why a separate command and not an agent in the worker (the design choice):

* Retries would block detection. A webhook that is down for ten minutes means ten minutes of
  backoff. In the worker this waits on the same event loop, consumer and commit machinery as
  detection; Faust flags the stalled partition, and a worker restarted meanwhile re-sends.
  Here detection never waits for a receiver, and the sink never waits for detection.
* Scaling differs. Workers are scaled by input volume (partitions of the input topics);
  incidents are a handful an hour, so one sink is plenty (two for failover: a group member
  that dies hands its partitions over). An agent would make every worker a sender and put
  the webhook secret into every worker's environment. The sink's own consumer group also
  keeps its own offsets: it can be stopped, rewound or pointed at a new receiver (a new
  group) without touching detection.
* Ordering per dedup key. Incident events are keyed by dedup key, so all events of one
  incident are in one partition. The sink handles a partition strictly in order and does not
  move past an event until it is delivered or rejected, so a resolve never overtakes its
  trigger. The price is head-of-line blocking while a receiver fails, which is what ordering
  means: the events behind wait, and nothing is lost.

Exit codes: 130 / 143 stopped by SIGINT / SIGTERM (the normal end of a service, after a
summary of the counts on stderr); 1 the broker could not be used; 2 usage error (no
``RADAR_WEBHOOK_URL``, a bad option: the message names the value and the fix).
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import http.client
import json
import random
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import click
from faust.cli import AppCommand, option

from streams.app import app
from streams.errors import BrokerError, ConfigError, InvalidRecord
from streams.replay import (
    StopFlag,
    check_reachable,
    check_topic_name,
    command_main,
    parse_bootstrap,
    unreachable,
)
from streams.settings import Settings, redacted_url
from streams.traffic import TrafficRecord, to_line
from streams.validation import decode

EVENT_ID_HEADER = "X-Radar-Event-Id"
TIMESTAMP_HEADER = "X-Radar-Timestamp"
SIGNATURE_HEADER = "X-Radar-Signature"
USER_AGENT = "outage-radar-webhook/1"
#: Milliseconds one poll waits for records (also how soon Ctrl-C is noticed between events).
POLL_MS = 200
#: Seconds a backoff sleeps at a time (how soon Ctrl-C is noticed while waiting to retry).
SLEEP_SLICE_S = 0.2
#: Characters of a receiver's answer quoted in a report.
MAX_ANSWER_CHARS = 2000
#: Incident events larger than this are rejected as invalid, not sent.
MAX_EVENT_BYTES = 4 * 1024 * 1024

Log = Callable[[str], None]


# --------------------------------------------------------------------------- the request


def body_bytes(event: Mapping[str, Any], routing_key: str = "") -> bytes:
    """The bytes POSTed for one incident event: its PagerDuty v2 body, compact JSON.

    >>> body_bytes({"data": {"event_action": "resolve", "dedup_key": "k"}}, "R1")
    b'{"event_action":"resolve","dedup_key":"k","routing_key":"R1"}'
    """
    data = dict(event["data"])
    if routing_key:
        data["routing_key"] = routing_key
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=`` + hex HMAC-SHA256 of ``<timestamp>.<body>`` keyed with ``secret``.

    >>> sign("0123456789abcdef", 1760860800, b"{}")
    'sha256=ff711c3a92ff105420b60c3b6c9647c2ca5eca217d4cd4e4914c4d4436bc04e4'
    """
    signed = str(timestamp).encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    now_s: float | None = None,
    tolerance_s: float = 300.0,
) -> bool:
    """Whether ``headers`` carry a valid, fresh signature of ``body`` (the documented recipe)."""
    timestamp = headers.get(TIMESTAMP_HEADER, "")
    signature = headers.get(SIGNATURE_HEADER, "")
    now = time.time() if now_s is None else now_s
    if not timestamp.isdigit() or abs(now - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, int(timestamp), body), signature)


def request_headers(event_id: str, body: bytes, secret: str, now_s: float) -> dict[str, str]:
    """Headers of one attempt; signed (with the attempt's time) when there is a secret."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        EVENT_ID_HEADER: event_id,
    }
    if secret:
        timestamp = int(now_s)
        headers[TIMESTAMP_HEADER] = str(timestamp)
        headers[SIGNATURE_HEADER] = sign(secret, timestamp, body)
    return headers


@dataclass(frozen=True)
class Answer:
    """What one attempt got: an HTTP status and body, or (``status`` None) a network error."""

    status: int | None
    body: str = ""
    retry_after_s: float | None = None
    error: str = ""

    def describe(self) -> str:
        if self.status is None:
            return self.error or "no answer"
        text = f"HTTP {self.status}"
        return f"{text}: {self.body}" if self.body else text


Post = Callable[[str, bytes, Mapping[str, str], float], Answer]


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer (a permanent error), never followed: a POST body and a
    signature should not go to a place nobody configured."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def parse_retry_after(value: str | None, now_s: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent.

    >>> parse_retry_after("7"), parse_retry_after(None), parse_retry_after("soon")
    (7.0, None, None)
    >>> parse_retry_after("Sun, 19 Oct 2025 08:00:30 GMT", now_s=1760860800)
    30.0
    """
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    now = time.time() if now_s is None else now_s
    return max(0.0, moment.timestamp() - now)


def _answer_text(stream: Any) -> str:
    try:
        raw = stream.read(64 * 1024)
    except (OSError, http.client.HTTPException):
        return ""
    text = " ".join(raw.decode("utf-8", "replace").split())
    return text if len(text) <= MAX_ANSWER_CHARS else text[:MAX_ANSWER_CHARS] + "…"


def http_post(url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> Answer:
    """POST with the standard library; every outcome is an :class:`Answer`, never raised."""
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with _OPENER.open(request, timeout=timeout_s) as response:
            return Answer(response.status, _answer_text(response))
    except urllib.error.HTTPError as exc:  # any answer outside 2xx (redirects included)
        with exc:
            return Answer(
                exc.code, _answer_text(exc), parse_retry_after(exc.headers.get("Retry-After"))
            )
    except urllib.error.URLError as exc:
        return Answer(None, error=f"no answer: {exc.reason}")
    except (OSError, http.client.HTTPException) as exc:  # timeouts, resets, bad answers
        return Answer(None, error=f"{type(exc).__name__}: {exc}".rstrip(": "))


# --------------------------------------------------------------------------- the policy


def classify(answer: Answer) -> str:
    """``ok`` (2xx), ``retry`` (no answer, 429, 5xx) or ``permanent`` (anything else).

    >>> [classify(Answer(s)) for s in (200, 202, 429, 500, 503, 400, 404, 301)]
    ['ok', 'ok', 'retry', 'retry', 'retry', 'permanent', 'permanent', 'permanent']
    >>> classify(Answer(None, error="no answer: refused"))
    'retry'
    """
    status = answer.status
    if status is None or status == 429 or 500 <= status <= 599:
        return "retry"
    if 200 <= status <= 299:
        return "ok"
    return "permanent"


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter, capped.

    Attempt ``n`` (1 = the first retry) waits a delay drawn uniformly from the upper half of
    ``min(cap, base * 2**(n-1))``; a ``Retry-After`` longer than that is honoured, up to the cap.

    >>> b = Backoff(base_s=1.0, cap_s=10.0)
    >>> [b.delay(n, rng=lambda: 1.0) for n in (1, 2, 3, 4, 5, 9)]
    [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    >>> [b.delay(n, rng=lambda: 0.0) for n in (1, 2, 5)]
    [0.5, 1.0, 5.0]
    """

    base_s: float = 0.5
    cap_s: float = 60.0

    def ceiling(self, attempt: int) -> float:
        return min(self.cap_s, self.base_s * 2.0 ** min(max(attempt - 1, 0), 62))

    def delay(
        self, attempt: int, rng: Callable[[], float], retry_after_s: float | None = None
    ) -> float:
        step = self.ceiling(attempt)
        wait = step / 2 + rng() * step / 2
        if retry_after_s is not None and retry_after_s > wait:
            wait = min(retry_after_s, self.cap_s)
        return wait


@dataclass(frozen=True)
class Outcome:
    """How the delivery of one event ended."""

    result: str  # "delivered", "rejected" (permanent error) or "stopped"
    attempts: int
    answer: Answer


class Deliverer:
    """POSTs one body until it is delivered, permanently rejected, or the sink is stopped.

    Everything with time in it is injected (``post``, ``sleep``, ``clock``, ``rng``), so the
    retry policy is tested with a fake clock and no real sleeping.
    """

    def __init__(
        self,
        url: str,
        secret: str = "",
        timeout_s: float = 10.0,
        backoff: Backoff | None = None,
        post: Post = http_post,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
        should_stop: Callable[[], bool] = lambda: False,
        log: Log = lambda text: None,
    ) -> None:
        self.url = url
        self.secret = secret
        self.timeout_s = timeout_s
        self.backoff = backoff or Backoff()
        self.post = post
        self.sleep = sleep
        self.clock = clock
        self.rng = rng
        self.should_stop = should_stop
        self.log = log

    def deliver(self, body: bytes, event_id: str, where: str = "") -> Outcome:
        attempt = 0
        while True:
            attempt += 1
            headers = request_headers(event_id, body, self.secret, self.clock())
            answer = self.post(self.url, body, headers, self.timeout_s)
            kind = classify(answer)
            if kind == "ok":
                return Outcome("delivered", attempt, answer)
            if kind == "permanent":
                return Outcome("rejected", attempt, answer)
            wait = self.backoff.delay(attempt, self.rng, answer.retry_after_s)
            self.log(
                f"webhook: {where} attempt {attempt} failed ({answer.describe()}); "
                f"retrying in {wait:.1f}s"
            )
            if not self._wait(wait):
                return Outcome("stopped", attempt, answer)

    def _wait(self, seconds: float) -> bool:
        """Sleep ``seconds`` in slices; ``False`` as soon as the sink is told to stop."""
        left = seconds
        while left > 0:
            if self.should_stop():
                return False
            step = min(left, SLEEP_SLICE_S)
            self.sleep(step)
            left -= step
        return not self.should_stop()


# --------------------------------------------------------------------------- the sink


@dataclass
class SinkStats:
    """Counts of one run, for the closing summary."""

    delivered: int = 0
    retried_events: int = 0  # delivered after at least one failed attempt
    failed_attempts: int = 0
    rejected: int = 0  # permanent errors: reported, not retried
    invalid: int = 0  # not an incident event: reported, not sent
    commit_failures: int = 0

    def summary(self, why: str) -> str:
        text = (
            f"webhook {why}: {self.delivered} delivered ({self.retried_events} after retries, "
            f"{self.failed_attempts} failed attempts in all), {self.rejected} rejected, "
            f"{self.invalid} invalid records"
        )
        if self.commit_failures:
            text += f", {self.commit_failures} commits lost to rebalances (sent again)"
        return text


class RejectedFile:
    """Appends what could not be delivered to a traffic file (JSON Lines), with the reason
    under ``"rejected"`` (``replay`` ignores that key and sends the record again)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, record: TrafficRecord, reason: str, where: str) -> None:
        line = json.loads(to_line(record))
        line["rejected"] = {"reason": reason, "at": where}
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(line, separators=(",", ":"), ensure_ascii=False) + "\n")


class WebhookSink:
    """Reads the incidents topic as a consumer group, delivers each event, then commits it.

    ``consumer`` is a subscribed kafka-python ``KafkaConsumer`` (or a fake with ``poll`` and
    ``commit``).
    """

    def __init__(
        self,
        consumer: Any,
        deliverer: Deliverer,
        routing_key: str = "",
        stats: SinkStats | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        rejected: RejectedFile | None = None,
        log: Log = lambda text: None,
    ) -> None:
        self.consumer = consumer
        self.deliverer = deliverer
        self.routing_key = routing_key
        self.stats = stats if stats is not None else SinkStats()
        self.should_stop = should_stop
        self.rejected = rejected
        self.log = log

    def _reject(self, record: Any, where: str, reason: str) -> None:
        if self.rejected is not None:
            value = record.value if record.value is not None else b""
            ts = record.timestamp if record.timestamp is not None and record.timestamp >= 0 else 0
            self.rejected.write(TrafficRecord(record.topic, record.key, ts, value), reason, where)

    def handle(self, record: Any) -> bool:
        """Deliver one record; ``True`` when it is done with (commit it), ``False`` when the
        sink was stopped before it was (do not commit: the next run sends it)."""
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        try:
            event = decode("incident", record.value, max_bytes=MAX_EVENT_BYTES)
        except InvalidRecord as exc:
            self.stats.invalid += 1
            reason = exc.reason.removeprefix("incident record: ")
            self.log(f"webhook: {where} is not an incident event, not sent: {reason}")
            self._reject(record, where, reason)
            return True
        body = body_bytes(event, self.routing_key)
        data = event["data"]
        what = f"{where} {data['event_action']} {data['dedup_key']} (id {event['id']})"
        outcome = self.deliverer.deliver(body, event["id"], where)
        self.stats.failed_attempts += outcome.attempts - (outcome.result == "delivered")
        if outcome.result == "stopped":
            self.log(f"webhook: stopped before {what} was delivered; not committed: sent next run")
            return False
        if outcome.result == "delivered":
            self.stats.delivered += 1
            self.stats.retried_events += outcome.attempts > 1
            self.log(f"webhook: delivered {what}: HTTP {outcome.answer.status}")
            return True
        self.stats.rejected += 1
        reason = (
            f"{outcome.answer.describe()} from {redacted_url(self.deliverer.url)}; a permanent "
            "error (not 429 or 5xx), so not retried: check the URL, the routing key and the "
            "receiver's logs, then send it again"
        )
        self.log(f"webhook: REJECTED {what}: {reason}; body sent: {body.decode()}")
        self._reject(record, where, reason)
        return True

    def _commit(self, tp: Any, offset: int) -> bool:
        from kafka.errors import CommitFailedError, KafkaError
        from kafka.structs import OffsetAndMetadata

        try:
            self.consumer.commit({tp: OffsetAndMetadata(offset, "", -1)})
        except (CommitFailedError, KafkaError) as exc:
            # The group moved on (a rebalance, or a retry longer than max.poll.interval.ms):
            # this record will be read again by whoever owns the partition now (at-least-once).
            self.stats.commit_failures += 1
            self.log(f"webhook: cannot commit {tp.topic}[{tp.partition}]@{offset}: {exc}")
            return False
        return True

    def run(self) -> str:
        """Deliver until stopped; returns why it stopped (for the summary)."""
        while not self.should_stop():
            batch = self.consumer.poll(timeout_ms=POLL_MS)
            for tp, records in batch.items():
                if not self._run_partition(tp, records):
                    if self.should_stop():
                        return "signal"
                    break  # a commit failed: poll again (the group re-assigns, offsets reset)
        return "signal"

    def _run_partition(self, tp: Any, records: Iterable[Any]) -> bool:
        for record in records:
            if self.should_stop() or not self.handle(record):
                return False
            if not self._commit(tp, record.offset + 1):
                return False
        return True


# --------------------------------------------------------------------------- the command


@dataclass(frozen=True)
class WebhookOptions:
    """What the ``webhook`` command was asked to do, validated."""

    url: str
    topic: str
    group: str
    new_group_start: str = "latest"
    secret: str = field(default="", repr=False)
    routing_key: str = field(default="", repr=False)
    timeout_s: float = 10.0
    backoff: Backoff = field(default_factory=Backoff)
    rejected: Path | None = None
    broker: list[str] | None = None  # None: RADAR_BROKER


def build_options(
    settings: Settings,
    topic: str | None = None,
    group: str | None = None,
    new_group_start: str = "latest",
    rejected: str | None = None,
    broker: str | None = None,
) -> WebhookOptions:
    """Validate settings and options; a :class:`ConfigError` names the value and the fix."""
    if not settings.webhook_url:
        raise ConfigError(
            "RADAR_WEBHOOK_URL is not set; set it to the receiver's URL, e.g. "
            "RADAR_WEBHOOK_URL=https://events.pagerduty.com/v2/enqueue (with "
            "RADAR_WEBHOOK_ROUTING_KEY for PagerDuty itself)"
        )
    if new_group_start not in ("earliest", "latest"):
        raise ConfigError(
            f"--new-group-start {new_group_start!r} is not known; use latest (only new "
            "incidents) or earliest (everything the topic still holds)"
        )
    group_id = (group if group is not None else f"{settings.app_id}-webhook").strip()
    if not group_id:
        raise ConfigError("--group is empty; give a consumer group id, e.g. --group radar-webhook")
    path = None
    if rejected is not None:
        path = Path(rejected)
        if path.is_dir() or not path.parent.is_dir():
            raise ConfigError(
                f"--rejected {rejected!r} is not a file in an existing directory; give a file "
                "path such as rejected.jsonl (appended to, created if missing)"
            )
    return WebhookOptions(
        url=settings.webhook_url,
        topic=check_topic_name(topic or settings.topics.incidents, "--topic"),
        group=group_id,
        new_group_start=new_group_start,
        secret=settings.webhook_secret,
        routing_key=settings.webhook_routing_key,
        timeout_s=settings.webhook_timeout_seconds,
        backoff=Backoff(settings.webhook_backoff_seconds, settings.webhook_max_backoff_seconds),
        rejected=path,
        broker=parse_bootstrap(broker) if broker is not None else None,
    )


def _stderr_log(text: str) -> None:
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    print(f"{stamp} {text}", file=sys.stderr, flush=True)


def run_webhook(
    options: WebhookOptions,
    stop: StopFlag,
    default_broker: list[str],
    tansu: bool = False,
    log: Log = _stderr_log,
    err: IO[str] | None = None,
) -> tuple[int, SinkStats]:
    """Run the sink until stopped; returns the exit code and the counts."""
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    from streams.broker import TANSU_CONSUMER_SETTINGS

    err = err if err is not None else sys.stderr
    bootstrap = options.broker or default_broker
    stats = SinkStats()
    check_reachable(bootstrap)
    group_settings: dict[str, Any] = {
        "fetch_max_wait_ms": TANSU_CONSUMER_SETTINGS["fetch_max_wait_ms"]
    }
    if tansu:  # 6 s sessions: a group join takes ~3 s instead of ~23 s
        group_settings.update(
            session_timeout_ms=TANSU_CONSUMER_SETTINGS["session_timeout_ms"],
            heartbeat_interval_ms=TANSU_CONSUMER_SETTINGS["heartbeat_interval_ms"],
        )
    try:
        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=options.group,
            enable_auto_commit=False,
            auto_offset_reset=options.new_group_start,
            max_poll_records=20,  # a batch is handled record by record, maybe with retries
            **group_settings,
        )
    except KafkaError as exc:
        raise BrokerError(unreachable(bootstrap, exc)) from exc
    reason = "signal"
    try:
        if options.topic not in consumer.topics():
            raise ConfigError(
                f"topic {options.topic!r} does not exist on the broker; the worker creates it "
                "at start-up (python -m streams worker), or name the right one with --topic "
                "(default: RADAR_TOPIC_INCIDENTS) and --broker"
            )
        consumer.subscribe([options.topic])
        deliverer = Deliverer(
            options.url,
            options.secret,
            options.timeout_s,
            options.backoff,
            should_stop=lambda: stop.stopped,
            log=log,
        )
        rejected = RejectedFile(options.rejected) if options.rejected is not None else None
        signed = "signed with RADAR_WEBHOOK_SECRET" if options.secret else "unsigned"
        log(
            f"webhook: forwarding {options.topic} (group {options.group}) to "
            f"{redacted_url(options.url)}, {signed}; Ctrl-C to stop"
        )
        sink = WebhookSink(
            consumer, deliverer, options.routing_key, stats, lambda: stop.stopped, rejected, log
        )
        reason = sink.run()
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        reason = "signal"
    finally:
        consumer.close(autocommit=False)
    print(stats.summary(f"stopped by {stop.name or reason}"), file=err, flush=True)
    return stop.exit_code() if stop.stopped else 1, stats


@app.command(
    option(
        "--group",
        default=None,
        help="Consumer group of the sink; offsets are committed per group after delivery "
        "(default: <RADAR_APP_ID>-webhook).",
    ),
    option(
        "--new-group-start",
        type=click.Choice(("latest", "earliest")),
        default="latest",
        help="Where a group with no committed offsets starts: latest (only incidents from now "
        "on) or earliest (everything the topic still holds).",
    ),
    option(
        "--rejected",
        default=None,
        help="Append events rejected with a permanent error (and invalid records) to this "
        "traffic file, to send them again with `replay` once fixed (default: only logged).",
    ),
    option(
        "--topic",
        default=None,
        help="Topic to forward (default: RADAR_TOPIC_INCIDENTS, i.e. incidents).",
    ),
    option(
        "--broker",
        default=None,
        help="Broker to read from, host:port[,host:port] (default: RADAR_BROKER).",
    ),
)
async def webhook(
    self: AppCommand,
    group: str | None,
    new_group_start: str,
    rejected: str | None,
    topic: str | None,
    broker: str | None,
) -> None:
    """Forward every incident event to RADAR_WEBHOOK_URL (PagerDuty Events v2 body).

    Retries connection errors, 429 and 5xx with capped exponential backoff; reports other
    4xx without retrying; signs requests when RADAR_WEBHOOK_SECRET is set; commits an event
    only after a 2xx. Runs until Ctrl-C/SIGTERM (exit 130/143); 1 broker trouble, 2 usage error.
    """
    sys.exit(
        webhook_main(
            group=group,
            new_group_start=new_group_start,
            rejected=rejected,
            topic=topic,
            broker=broker,
        )
    )


def webhook_main(**values: Any) -> int:
    """The ``webhook`` command without Faust: validate, run, map errors to exit codes."""
    from streams.app import broker_flavour, settings

    def run(stop: StopFlag) -> int:
        options = build_options(settings, **values)
        tansu = broker_flavour() == "tansu"
        return run_webhook(options, stop, settings.bootstrap_servers, tansu)[0]

    return command_main(run)
