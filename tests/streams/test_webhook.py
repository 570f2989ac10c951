"""Offline tests of the webhook sink: body, signature, retry policy (fake clock), permanent
errors, commit-after-delivery, and the stdlib HTTP client against a local server."""

from __future__ import annotations

import doctest
import hashlib
import hmac
import importlib.util
import inspect
import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kafka import TopicPartition
from kafka.errors import CommitFailedError

import streams.webhook
from streams.broker import free_port
from streams.errors import ConfigError
from streams.settings import Settings
from streams.traffic import from_line
from streams.webhook import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Answer,
    Backoff,
    Deliverer,
    RejectedFile,
    WebhookSink,
    body_bytes,
    build_options,
    classify,
    http_post,
    request_headers,
    sign,
    verify,
)
from tests.streams.test_tail import make_event

SECRET = "test-secret-0123456789"
URL = "https://hooks.example.com/radar"
NOW = 1_760_861_290.0
P0, P1 = TopicPartition("incidents", 0), TopicPartition("incidents", 1)


def test_doctests() -> None:
    result = doctest.testmod(streams.webhook)
    assert result.attempted >= 8 and result.failed == 0


# --------------------------------------------------------------------------- body and signature


def test_body_is_the_pagerduty_body_with_routing_key_when_set() -> None:
    event = make_event()
    assert json.loads(body_bytes(event)) == event["data"]
    with_key = json.loads(body_bytes(event, "R0UTING"))
    assert with_key == {**event["data"], "routing_key": "R0UTING"}
    assert "routing_key" not in event["data"]  # the event itself is untouched


def documented_verify() -> Callable[..., bool]:
    """The ``verify`` recipe exactly as the module docstring documents it."""
    doc = streams.webhook.__doc__ or ""
    block = doc.split("Verifying a request", 1)[1].split("::\n", 1)[1]
    lines = []
    for line in block.splitlines():
        if line and not line.startswith("    "):
            break
        lines.append(line[4:])
    namespace: dict[str, Any] = {}
    exec("\n".join(lines), namespace)
    fn: Callable[..., bool] = namespace["verify"]
    return fn


def test_a_receiver_verifies_with_the_documented_recipe() -> None:
    recipe = documented_verify()
    body = body_bytes(make_event())
    now = time.time()
    headers = request_headers("ev-1", body, SECRET, now)
    assert headers[SIGNATURE_HEADER].startswith("sha256=")
    assert headers[TIMESTAMP_HEADER] == str(int(now))
    assert headers[EVENT_ID_HEADER] == "ev-1"
    assert headers["Content-Type"] == "application/json"
    assert recipe(SECRET, headers, body)
    assert verify(SECRET, headers, body)
    # an independent computation of the same thing
    mac = hmac.new(SECRET.encode(), f"{int(now)}.".encode() + body, hashlib.sha256)
    assert headers[SIGNATURE_HEADER] == "sha256=" + mac.hexdigest()


def load_example(name: str) -> Any:
    """A module of ``examples/`` (not a package), imported from its file."""
    path = Path(__file__).resolve().parents[2] / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _recipe_lines(text: str) -> list[str]:
    """The lines of ``def verify`` in ``text``, without their indentation or blank lines."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("def verify("))
    indent = len(lines[start]) - len(lines[start].lstrip())
    body = [lines[start].strip()]
    for line in lines[start + 1 :]:
        if not line.strip():
            continue
        if len(line) - len(line.lstrip()) <= indent:
            break
        body.append(line[indent:].rstrip())
    return body


def test_the_recipe_is_the_same_in_the_docstring_the_readme_and_the_example() -> None:
    doc = (streams.webhook.__doc__ or "").split("Verifying a request", 1)[1].split("::\n", 1)[1]
    readme = (Path(__file__).resolve().parents[2] / "examples" / "README.md").read_text()
    readme_block = readme.split("```python\n", 1)[1].split("```", 1)[0]
    example = inspect.getsource(load_example("webhook_receiver").verify)
    assert _recipe_lines(doc) == _recipe_lines(readme_block) == _recipe_lines(example)
    assert "import hashlib, hmac, time" in doc and "import hashlib, hmac, time" in readme_block


def test_the_example_receiver_verifies_what_the_sink_signs() -> None:
    receiver_verify = load_example("webhook_receiver").verify
    body = body_bytes(make_event())
    headers = request_headers("ev-1", body, SECRET, time.time())
    assert receiver_verify(SECRET, headers, body)
    assert not receiver_verify(SECRET, headers, body + b" ")
    assert not receiver_verify("another-secret-0123", headers, body)


@pytest.mark.parametrize(
    "tamper",
    ["body", "secret", "stale", "future", "no signature", "no timestamp", "timestamp changed"],
)
def test_the_documented_recipe_rejects_what_it_must(tamper: str) -> None:
    recipe = documented_verify()
    body = body_bytes(make_event())
    now = time.time()
    sent_at = now - 301 if tamper == "stale" else now + 301 if tamper == "future" else now
    headers = dict(request_headers("ev-1", body, SECRET, sent_at))
    secret = SECRET
    if tamper == "body":
        body = body.replace(b"critical", b"info")
    elif tamper == "secret":
        secret = SECRET + "x"
    elif tamper == "no signature":
        del headers[SIGNATURE_HEADER]
    elif tamper == "no timestamp":
        del headers[TIMESTAMP_HEADER]
    elif tamper == "timestamp changed":  # a replay with a fresh time but the old signature
        headers[TIMESTAMP_HEADER] = str(int(now) + 5)
    assert not recipe(secret, headers, body)
    assert not verify(secret, headers, body)


def test_unsigned_without_a_secret() -> None:
    headers = request_headers("ev-1", b"{}", "", NOW)
    assert SIGNATURE_HEADER not in headers and TIMESTAMP_HEADER not in headers
    assert headers[EVENT_ID_HEADER] == "ev-1"


def test_the_signature_covers_the_timestamp() -> None:
    assert sign(SECRET, 1, b"{}") != sign(SECRET, 2, b"{}")
    assert sign(SECRET, 1, b"{}") == sign(SECRET, 1, b"{}")


# --------------------------------------------------------------------------- policy


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (Answer(200), "ok"),
        (Answer(204), "ok"),
        (Answer(299), "ok"),
        (Answer(None, error="no answer: refused"), "retry"),
        (Answer(429), "retry"),
        (Answer(500), "retry"),
        (Answer(502), "retry"),
        (Answer(599), "retry"),
        (Answer(400), "permanent"),
        (Answer(401), "permanent"),
        (Answer(403), "permanent"),
        (Answer(404), "permanent"),
        (Answer(413), "permanent"),
        (Answer(302), "permanent"),
        (Answer(100), "permanent"),
    ],
)
def test_classify(answer: Answer, kind: str) -> None:
    assert classify(answer) == kind


def test_backoff_doubles_is_capped_and_jittered_within_bounds() -> None:
    b = Backoff(base_s=0.5, cap_s=8.0)
    assert [b.ceiling(n) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert b.ceiling(10_000) == 8.0  # no overflow however long it fails
    for n in range(1, 8):
        low, high = b.delay(n, lambda: 0.0), b.delay(n, lambda: 0.999999)
        assert low == b.ceiling(n) / 2 and high == pytest.approx(b.ceiling(n), rel=1e-5)
    assert b.delay(2, lambda: 0.5) == 0.75
    # Retry-After is honoured when longer, up to the cap; a shorter one does not cut the delay
    assert b.delay(1, lambda: 0.0, retry_after_s=3.0) == 3.0
    assert b.delay(1, lambda: 0.0, retry_after_s=100.0) == 8.0
    assert b.delay(4, lambda: 0.0, retry_after_s=0.0) == 2.0


class FakeTime:
    """A clock that moves only when something sleeps."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.slept.append(seconds)
        self.now += seconds


@dataclass
class Sent:
    url: str
    body: bytes
    headers: dict[str, str]
    timeout: float
    at: float


class FakeReceiver:
    """Answers attempts from a script; records every request with the fake time it came."""

    def __init__(self, answers: list[Answer], fake: FakeTime, then: Answer | None = None):
        self.answers = list(answers)
        self.then = then or Answer(202)
        self.fake = fake
        self.sent: list[Sent] = []

    def __call__(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> Answer:
        self.sent.append(Sent(url, body, dict(headers), timeout, self.fake.now))
        return self.answers.pop(0) if self.answers else self.then


def deliverer(
    receiver: FakeReceiver, fake: FakeTime, log: list[str] | None = None, **kw: Any
) -> Deliverer:
    logs = log if log is not None else []
    return Deliverer(
        URL,
        SECRET,
        timeout_s=2.0,
        backoff=kw.pop("backoff", Backoff(0.5, 4.0)),
        post=receiver,
        sleep=fake.sleep,
        clock=fake.clock,
        rng=kw.pop("rng", lambda: 1.0),
        log=logs.append,
        **kw,
    )


def test_transient_failures_are_retried_with_backoff_until_a_2xx() -> None:
    fake = FakeTime()
    receiver = FakeReceiver(
        [
            Answer(None, error="no answer: [Errno 111] Connection refused"),
            Answer(503, "down for maintenance"),
            Answer(429, "slow down", retry_after_s=3.0),
            Answer(500),
            Answer(502),
            Answer(504),
        ],
        fake,
    )
    log: list[str] = []
    outcome = deliverer(receiver, fake, log).deliver(b'{"a":1}', "ev-1", "incidents[0]@5")
    assert outcome.result == "delivered" and outcome.attempts == 7
    assert outcome.answer.status == 202
    # waits between attempts: 0.5, 1, 3 (Retry-After beats 2), 4, 4 (capped), 4 (capped)
    gaps = [b.at - a.at for a, b in zip(receiver.sent, receiver.sent[1:], strict=False)]
    assert gaps == pytest.approx([0.5, 1.0, 3.0, 4.0, 4.0, 4.0])
    assert max(fake.slept) <= streams.webhook.SLEEP_SLICE_S + 1e-9  # sliced: Ctrl-C is seen
    # every attempt carries the same body and id, signed afresh with its own time
    assert {s.body for s in receiver.sent} == {b'{"a":1}'}
    assert {s.headers[EVENT_ID_HEADER] for s in receiver.sent} == {"ev-1"}
    stamps = [int(s.headers[TIMESTAMP_HEADER]) for s in receiver.sent]
    assert stamps == [int(s.at) for s in receiver.sent] and stamps[-1] > stamps[0]
    assert all(verify(SECRET, s.headers, s.body, now_s=s.at) for s in receiver.sent)
    assert {s.timeout for s in receiver.sent} == {2.0}
    assert len(log) == 6
    assert log[0] == (
        "webhook: incidents[0]@5 attempt 1 failed (no answer: [Errno 111] Connection "
        "refused); retrying in 0.5s"
    )
    assert "HTTP 503: down for maintenance" in log[1]


def test_jitter_spreads_the_delays() -> None:
    fake = FakeTime()
    draws = iter([0.0, 0.5, 1.0])
    receiver = FakeReceiver([Answer(503)] * 3, fake)
    deliverer(receiver, fake, rng=lambda: next(draws)).deliver(b"{}", "e")
    gaps = [b.at - a.at for a, b in zip(receiver.sent, receiver.sent[1:], strict=False)]
    assert gaps == pytest.approx([0.25, 0.75, 2.0])  # halves of 0.5, 1, 2 plus jitter


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422, 301, 308])
def test_a_permanent_error_is_not_retried(status: int) -> None:
    fake = FakeTime()
    receiver = FakeReceiver([Answer(status, "Event object is invalid")], fake)
    outcome = deliverer(receiver, fake).deliver(b"{}", "e")
    assert outcome.result == "rejected" and outcome.attempts == 1
    assert outcome.answer.describe() == f"HTTP {status}: Event object is invalid"
    assert len(receiver.sent) == 1 and fake.slept == []


def test_a_permanent_error_after_retries_stops_the_retries() -> None:
    fake = FakeTime()
    receiver = FakeReceiver([Answer(503), Answer(400)], fake, then=Answer(202))
    outcome = deliverer(receiver, fake).deliver(b"{}", "e")
    assert outcome.result == "rejected" and outcome.attempts == 2


def test_stopping_during_a_backoff_gives_up_at_once() -> None:
    fake = FakeTime()
    receiver = FakeReceiver([Answer(503)] * 100, fake)
    stop_at = NOW + 2.0
    d = deliverer(receiver, fake, should_stop=lambda: fake.now >= stop_at)
    outcome = d.deliver(b"{}", "e")
    assert outcome.result == "stopped"
    assert fake.now == pytest.approx(stop_at)  # noticed within one sleep slice
    assert len(receiver.sent) == 3  # at 0, 0.5, 1.5; the next was due at 3.5


# --------------------------------------------------------------------------- the sink


@dataclass
class Rec:
    """The fields of a kafka-python ConsumerRecord that the sink uses."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = b"k"
    timestamp: int = 1_760_861_290_000


def rec(tp: TopicPartition, offset: int, value: bytes | dict[str, Any] | None) -> Rec:
    raw = json.dumps(value).encode() if isinstance(value, dict) else value
    return Rec(tp.topic, tp.partition, offset, raw)


class FakeGroupConsumer:
    """Poll batches from a list; records commits; can fail a commit."""

    def __init__(self, batches: list[dict[Any, list[Rec]]], fail_commits: int = 0) -> None:
        self.batches = list(batches)
        self.commits: list[tuple[Any, int]] = []
        self.fail_commits = fail_commits
        self.polls = 0

    def poll(self, timeout_ms: int = 0) -> dict[Any, list[Rec]]:
        self.polls += 1
        return self.batches.pop(0) if self.batches else {}

    def commit(self, offsets: dict[Any, Any]) -> None:
        if self.fail_commits:
            self.fail_commits -= 1
            raise CommitFailedError("the group has rebalanced")
        for tp, meta in offsets.items():
            self.commits.append((tp, meta.offset))


def run_sink(
    batches: list[dict[Any, list[Rec]]] | FakeGroupConsumer,
    answers: Callable[[dict[str, Any]], Answer],
    polls: int = 3,
    rejected: RejectedFile | None = None,
    stop_when: Callable[[], bool] | None = None,
) -> tuple[FakeGroupConsumer, WebhookSink, list[dict[str, Any]], list[str]]:
    """Run a sink over ``batches`` (or a prepared consumer) until ``polls`` polls were made or
    ``stop_when()``; every request is answered by ``answers(body)``."""
    consumer = batches if isinstance(batches, FakeGroupConsumer) else FakeGroupConsumer(batches)
    fake = FakeTime()
    posted: list[dict[str, Any]] = []

    def post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> Answer:
        data = json.loads(body)
        posted.append(data)
        return answers(data)

    def should_stop() -> bool:
        return consumer.polls >= polls or (stop_when is not None and stop_when())

    log: list[str] = []
    d = Deliverer(
        URL,
        SECRET,
        backoff=Backoff(0.5, 4.0),
        post=post,
        sleep=fake.sleep,
        clock=fake.clock,
        rng=lambda: 1.0,
        should_stop=should_stop,
        log=log.append,
    )
    sink = WebhookSink(
        consumer, d, "RK", should_stop=should_stop, rejected=rejected, log=log.append
    )
    assert sink.run() == "signal"
    return consumer, sink, posted, log


def ok(data: dict[str, Any]) -> Answer:
    return Answer(202, '{"status":"success"}')


def test_each_event_is_committed_after_its_2xx_in_partition_order() -> None:
    a, b, c = make_event(key="a"), make_event("resolve", key="a"), make_event(key="c")
    batches = [{P0: [rec(P0, 0, a), rec(P0, 1, b)], P1: [rec(P1, 4, c)]}]
    consumer, sink, posted, log = run_sink(batches, ok)
    assert [(p["dedup_key"], p["event_action"]) for p in posted] == [
        ("a", "trigger"),
        ("a", "resolve"),
        ("c", "trigger"),
    ]
    assert all(p["routing_key"] == "RK" for p in posted)
    assert consumer.commits == [(P0, 1), (P0, 2), (P1, 5)]
    assert sink.stats.delivered == 3 and sink.stats.failed_attempts == 0
    assert log[0] == f"webhook: delivered incidents[0]@0 trigger a (id {a['id']}): HTTP 202"


def test_nothing_is_committed_before_the_2xx() -> None:
    consumer = FakeGroupConsumer([{P0: [rec(P0, 0, make_event(key="a"))]}])
    commits_seen: list[int] = []  # commits made when each attempt is answered

    def flaky(data: dict[str, Any]) -> Answer:
        commits_seen.append(len(consumer.commits))
        return Answer(503) if len(commits_seen) < 4 else Answer(200)

    _, sink, posted, _ = run_sink(consumer, flaky)
    assert len(posted) == 4
    assert commits_seen == [0, 0, 0, 0]  # not during any attempt, the 2xx one included
    assert consumer.commits == [(P0, 1)]
    assert sink.stats.delivered == 1 and sink.stats.retried_events == 1
    assert sink.stats.failed_attempts == 3


def test_stopped_while_retrying_commits_nothing_for_that_event() -> None:
    a, b = make_event(key="a"), make_event(key="b")
    fake_posts: list[str] = []

    def down_for_b(data: dict[str, Any]) -> Answer:
        fake_posts.append(data["dedup_key"])
        return ok(data) if data["dedup_key"] == "a" else Answer(503)

    batches = [{P0: [rec(P0, 0, a), rec(P0, 1, b), rec(P0, 2, make_event(key="c"))]}]
    consumer, sink, _, log = run_sink(
        batches, down_for_b, polls=100, stop_when=lambda: len(fake_posts) >= 4
    )
    assert consumer.commits == [(P0, 1)]  # a only: b (and c behind it) are sent next time
    assert log[-1] == (
        f"webhook: stopped before incidents[0]@1 trigger b (id {b['id']}) was delivered; "
        "not committed: sent next run"
    )
    assert "c" not in fake_posts  # ordering: nothing overtakes the event being retried
    assert sink.stats.summary("stopped by SIGINT") == (
        "webhook stopped by SIGINT: 1 delivered (0 after retries, 3 failed attempts in all), "
        "0 rejected, 0 invalid records"
    )


def test_a_permanent_error_is_reported_with_the_body_kept_and_committed(tmp_path: Path) -> None:
    a, b = make_event(key="bad"), make_event(key="good")

    def reject_bad(data: dict[str, Any]) -> Answer:
        if data["dedup_key"] == "bad":
            return Answer(400, '{"status":"invalid event","errors":["routing_key is invalid"]}')
        return ok(data)

    path = tmp_path / "rejected.jsonl"
    batches = [{P1: [rec(P1, 3, a), rec(P1, 4, b)]}]
    consumer, sink, posted, log = run_sink(batches, reject_bad, rejected=RejectedFile(path))
    assert [p["dedup_key"] for p in posted] == ["bad", "good"]  # once each: no retry of the 400
    assert consumer.commits == [(P1, 4), (P1, 5)]
    assert sink.stats.rejected == 1 and sink.stats.delivered == 1
    report = next(line for line in log if "REJECTED" in line)
    assert report.startswith(f"webhook: REJECTED incidents[1]@3 trigger bad (id {a['id']}): ")
    assert "HTTP 400: " in report and "routing_key is invalid" in report  # the answer's body
    assert f"from {URL}" in report and "not retried" in report
    assert '"dedup_key":"bad"' in report  # the body that was sent
    lines = path.read_text().splitlines()
    assert len(lines) == 1
    kept = from_line(lines[0])  # a traffic line: replay can send it again
    assert kept.topic == "incidents" and json.loads(kept.value) == a
    assert "HTTP 400" in json.loads(lines[0])["rejected"]["reason"]
    assert json.loads(lines[0])["rejected"]["at"] == "incidents[1]@3"


@pytest.mark.parametrize("value", [b"not json", None, json.dumps({"id": "x"}).encode()])
def test_an_invalid_record_is_reported_not_sent_and_committed(
    value: bytes | None, tmp_path: Path
) -> None:
    path = tmp_path / "rejected.jsonl"
    batches = [{P0: [rec(P0, 0, value), rec(P0, 1, make_event())]}]
    consumer, sink, posted, log = run_sink(batches, ok, rejected=RejectedFile(path))
    assert len(posted) == 1
    assert consumer.commits == [(P0, 1), (P0, 2)]
    assert sink.stats.invalid == 1
    assert log[0].startswith("webhook: incidents[0]@0 is not an incident event, not sent: ")
    assert "incident record:" not in log[0]  # the reason, without a redundant prefix
    assert len(path.read_text().splitlines()) == 1


def test_a_failed_commit_drops_the_rest_of_the_batch_to_be_read_again() -> None:
    batches = [{P0: [rec(P0, 0, make_event(key="a")), rec(P0, 1, make_event(key="b"))]}]
    consumer, sink, posted, log = run_sink(FakeGroupConsumer(batches, fail_commits=1), ok)
    assert [p["dedup_key"] for p in posted] == ["a"]  # b waits for the re-assignment
    assert consumer.commits == []
    assert sink.stats.commit_failures == 1
    assert any("cannot commit incidents[0]@1" in line for line in log)
    assert "1 commits lost to rebalances (sent again)" in sink.stats.summary("x")


# --------------------------------------------------------------------------- options


def test_options_need_a_url_and_name_the_fix() -> None:
    with pytest.raises(ConfigError) as info:
        build_options(Settings())
    assert "RADAR_WEBHOOK_URL is not set" in str(info.value)
    assert "https://events.pagerduty.com/v2/enqueue" in str(info.value)


def test_options_from_settings(tmp_path: Path) -> None:
    s = Settings.from_env(
        {
            "RADAR_APP_ID": "radar-eu",
            "RADAR_WEBHOOK_URL": URL,
            "RADAR_WEBHOOK_SECRET": SECRET,
            "RADAR_WEBHOOK_ROUTING_KEY": "RK0123",
            "RADAR_WEBHOOK_TIMEOUT_SECONDS": "3",
            "RADAR_WEBHOOK_BACKOFF_SECONDS": "0.1",
            "RADAR_WEBHOOK_MAX_BACKOFF_SECONDS": "5",
            "RADAR_TOPIC_INCIDENTS": "pages",
        }
    )
    o = build_options(s, rejected=str(tmp_path / "r.jsonl"))
    assert (o.url, o.topic, o.group, o.new_group_start) == (
        URL,
        "pages",
        "radar-eu-webhook",
        "latest",
    )
    assert (o.secret, o.routing_key, o.timeout_s) == (SECRET, "RK0123", 3.0)
    assert o.backoff == Backoff(0.1, 5.0)
    assert SECRET not in repr(o) and "RK0123" not in repr(o)
    o2 = build_options(s, topic="other", group="g2", new_group_start="earliest")
    assert (o2.topic, o2.group, o2.new_group_start) == ("other", "g2", "earliest")
    with pytest.raises(ConfigError, match="--rejected"):
        build_options(s, rejected=str(tmp_path))  # a directory
    with pytest.raises(ConfigError, match="--rejected"):
        build_options(s, rejected=str(tmp_path / "missing" / "r.jsonl"))
    with pytest.raises(ConfigError, match="--new-group-start 'middle'"):
        build_options(s, new_group_start="middle")
    with pytest.raises(ConfigError, match="--group is empty"):
        build_options(s, group=" ")


# --------------------------------------------------------------------------- the HTTP client


class Handler(BaseHTTPRequestHandler):
    """Answers by path: /ok, /retry-after, /bad, /redirect, /slow."""

    received: list[tuple[str, bytes, dict[str, str]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).received.append((self.path, body, dict(self.headers)))
        if self.path == "/slow":
            time.sleep(1.0)
        status, extra, text = {
            "/ok": (202, {}, b'{"status":"success"}'),
            "/retry-after": (503, {"Retry-After": "7"}, b"busy"),
            "/bad": (400, {}, b'{"status":"invalid event",\n "errors":["x"]}'),
            "/redirect": (301, {"Location": "/ok"}, b""),
            "/slow": (200, {}, b""),
        }[self.path]
        try:
            self.send_response(status)
            for k, v in extra.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (the /slow timeout tests): nobody to answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    Handler.received = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_http_post_outcomes(server: str) -> None:
    headers = request_headers("ev-9", b'{"a":1}', SECRET, time.time())
    answer = http_post(server + "/ok", b'{"a":1}', headers, 5.0)
    assert answer == Answer(202, '{"status":"success"}')
    _, body, got = Handler.received[0]
    assert body == b'{"a":1}' and got[EVENT_ID_HEADER] == "ev-9"
    assert verify(SECRET, got, body)
    assert http_post(server + "/retry-after", b"{}", {}, 5.0) == Answer(503, "busy", 7.0)
    bad = http_post(server + "/bad", b"{}", {}, 5.0)
    assert bad.status == 400 and bad.body == '{"status":"invalid event", "errors":["x"]}'
    redirect = http_post(server + "/redirect", b"{}", {}, 5.0)
    assert redirect.status == 301 and classify(redirect) == "permanent"
    assert [p for p, _, _ in Handler.received] == ["/ok", "/retry-after", "/bad", "/redirect"]


def test_http_post_network_errors_are_answers(server: str) -> None:
    refused = http_post(f"http://127.0.0.1:{free_port()}/x", b"{}", {}, 2.0)
    assert refused.status is None and classify(refused) == "retry"
    assert re.search(r"refused", refused.error, re.IGNORECASE), refused.error
    slow = http_post(server + "/slow", b"{}", {}, 0.2)
    assert slow.status is None and classify(slow) == "retry"
    assert "timed out" in slow.error, slow.error
