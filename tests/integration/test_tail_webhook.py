"""``tail`` and ``webhook`` against the embedded broker (and, for the webhook, a local HTTP
receiver that fails the first attempts of every event)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition

from streams.broker import EmbeddedBroker, create_topics
from streams.traffic import from_line
from tests.integration.conftest import ROOT, produce
from tests.streams.test_tail import make_event
from tests.streams.test_webhook import load_example

T0 = 1_760_861_290_000  # 2025-10-19T08:08:10Z
SECRET = "integration-secret-0123456789"


def fresh_topic(broker: EmbeddedBroker, tag: str, partitions: int = 2) -> str:
    name = f"{tag}-{time.time_ns() % 10**10}"
    create_topics(broker.bootstrap, [name], partitions=partitions)
    return name


def cli_env(broker: EmbeddedBroker, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADAR_") and k != "NO_COLOR"}
    env.update(broker.env())
    env.update(extra)
    return env


def run_cli(broker: EmbeddedBroker, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams", *args],
        cwd=ROOT,
        env=cli_env(broker),
        capture_output=True,
        text=True,
        timeout=60,
    )


def wait_for(check: Callable[[], bool], timeout: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting: {what()}")


def as_record(event: dict[str, Any], ts: int) -> tuple[bytes, bytes, int]:
    return event["data"]["dedup_key"].encode(), json.dumps(event).encode(), ts


# --------------------------------------------------------------------------- tail


@pytest.fixture
def incidents(broker: EmbeddedBroker) -> str:
    """A fresh topic with a small incident history and one bad record.

    Kafka timestamps: T0 + i seconds for the i-th record, so ``--from`` has a time to cut at.
    """
    topic = fresh_topic(broker, "tail")
    events = [
        make_event("open", severity="critical", key="k-bank", at_ms=T0),
        make_event("open", severity="warning", service="momo", key="k-otp", at_ms=T0 + 5_000),
        make_event("update", severity="critical", key="k-bank", at_ms=T0 + 10_000),
        make_event("resolve", service="momo", key="k-otp", at_ms=T0 + 60_000, opened_ms=T0),
        make_event("resolve", key="k-bank", at_ms=T0 + 260_000, opened_ms=T0),
    ]
    records = [as_record(e, T0 + i * 1000) for i, e in enumerate(events)]
    records.insert(2, (b"k-bank", b"{not json", T0 + 1500))
    produce(broker.bootstrap, topic, records)
    return topic


def test_tail_no_follow_from_beginning(broker: EmbeddedBroker, incidents: str) -> None:
    done = run_cli(broker, "tail", "--no-follow", "--from", "beginning", "--topic", incidents)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "\x1b[" not in done.stdout  # --color auto, and stdout is a pipe
    events = [line for line in lines if "WARNING" not in line]
    warnings = [line for line in lines if "WARNING" in line]
    assert len(events) == 5 and len(warnings) == 1
    # each incident's story in order (one key, one partition)
    bank = [line.split()[1] for line in events if " k-bank " in line]
    assert bank == ["OPENED", "UPDATED", "RESOLVED"]
    otp = [line for line in events if " k-otp " in line]
    assert [line.split()[1:3] for line in otp] == [["OPENED", "warning"], ["RESOLVED", "info"]]
    assert otp[1].startswith("2025-10-19T08:09:10Z") and otp[1].endswith("lasted 1m00s")
    assert "[segments: momo/partner_bank=TCB]" in otp[0]
    assert f"{incidents}[" in warnings[0] and "not an incident event" in warnings[0]
    assert "not valid JSON" in warnings[0]
    assert done.stderr.splitlines()[0] == (
        f"tail: {incidents} on {broker.bootstrap} from the beginning, until the end"
    )
    assert done.stderr.splitlines()[-1] == (
        "tail reached the end: 5 events shown (2 opened, 1 updated, 2 resolved), 1 invalid record"
    )


def test_tail_json_filters_and_from_time(broker: EmbeddedBroker, incidents: str) -> None:
    # From the third second on (Tansu answers time lookups with 0: the filter must cut).
    done = run_cli(
        broker,
        "tail",
        "--no-follow",
        "--from",
        "2025-10-19T08:08:12Z",
        "--json",
        "--min-severity",
        "critical",
        "--service",
        "wallet",
        "--color",
        "always",
        "--topic",
        incidents,
    )
    assert done.returncode == 0, done.stderr
    shown = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(e["type"].rsplit(".", 1)[1], e["data"]["dedup_key"]) for e in shown] == [
        ("updated", "k-bank"),
        ("resolved", "k-bank"),  # follows the critical incident it resolves
    ]
    summary = done.stderr.splitlines()[-1]
    assert "2 events shown" in summary and "before --from" in summary
    assert "\x1b[" not in done.stdout  # --json: data, never colours


def test_tail_follow_shows_new_events_and_stops_on_ctrl_c(
    broker: EmbeddedBroker, incidents: str, tmp_path: Path
) -> None:
    out, err = tmp_path / "out", tmp_path / "err"
    with out.open("w") as o, err.open("w") as e:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streams", "tail", "--topic", incidents, "--from", "-1"],
            cwd=ROOT,
            env=cli_env(broker),
            stdout=o,
            stderr=e,
        )
    try:
        wait_for(lambda: "Ctrl-C to stop" in err.read_text(), 30, err.read_text)
        # --from -1: the newest event of each partition that has one
        wait_for(lambda: "RESOLVED" in out.read_text(), 10, out.read_text)
        event = make_event("open", severity="error", service="checkout", key="k-new")
        produce(broker.bootstrap, incidents, [as_record(event, int(time.time() * 1000))])
        wait_for(lambda: " k-new " in out.read_text(), 15, out.read_text)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    lines = out.read_text().splitlines()
    assert [line for line in lines if " k-new " in line] == lines[-1:]
    assert "OPENED    error" in lines[-1]
    # --from -1 showed only the newest event of each partition: resolves, no openings
    assert all("RESOLVED" in line for line in lines[:-1]) and 1 <= len(lines) - 1 <= 2
    summary = err.read_text().splitlines()[-1]
    assert summary.startswith(f"tail stopped by SIGINT: {len(lines)} events shown")


# --------------------------------------------------------------------------- webhook


@dataclass
class Receiver:
    """What the flaky receiver saw: every request, and the events it accepted (2xx)."""

    requests: list[tuple[str, int]] = field(default_factory=list)  # (event id, status)
    accepted: list[dict[str, Any]] = field(default_factory=list)
    unverified: list[str] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    lock: threading.Lock = field(default_factory=threading.Lock)


def flaky_handler(state: Receiver, verify: Callable[..., bool]) -> type[BaseHTTPRequestHandler]:
    """Per event id: 503, then 429, then a dropped connection, then 202. An event whose dedup
    key is ``k-reject`` is answered 400 at once (a permanent error)."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            event_id = self.headers.get("X-Radar-Event-Id", "")
            with state.lock:
                if not verify(SECRET, self.headers, body):
                    state.unverified.append(event_id)
                state.attempts[event_id] += 1
                attempt = state.attempts[event_id]
                data = json.loads(body)
                if data["dedup_key"] == "k-reject":
                    status, text = 400, b'{"status":"invalid event","message":"unknown service"}'
                else:
                    status, text = {1: (503, b"busy"), 2: (429, b"slow down"), 3: (0, b"")}.get(
                        attempt, (202, b'{"status":"success"}')
                    )
                state.requests.append((event_id, status))
                if status == 202:
                    state.accepted.append(data)
            if status == 0:  # drop the connection without an answer
                self.close_connection = True
                return
            self.send_response(status)
            if status == 429:
                self.send_header("Retry-After", "0")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def receiver() -> Iterator[tuple[str, Receiver]]:
    state = Receiver()
    handler = flaky_handler(state, load_example("webhook_receiver").verify)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/hook", state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_webhook_delivers_each_event_once_after_retries_and_commits(
    broker: EmbeddedBroker, receiver: tuple[str, Receiver], tmp_path: Path
) -> None:
    url, state = receiver
    topic = fresh_topic(broker, "hook")
    events = [
        make_event("open", key="k-a", at_ms=T0),
        make_event("open", service="momo", key="k-b", at_ms=T0 + 1000),
        make_event("open", service="nope", key="k-reject", at_ms=T0 + 1500),
        make_event("resolve", key="k-a", at_ms=T0 + 2000),
    ]
    records = [as_record(e, T0 + i) for i, e in enumerate(events)]
    records.insert(1, (b"k-a", b"garbage", T0))
    produce(broker.bootstrap, topic, records)
    group = f"{topic}-sink"
    rejected = tmp_path / "rejected.jsonl"
    env = cli_env(
        broker,
        RADAR_WEBHOOK_URL=url,
        RADAR_WEBHOOK_SECRET=SECRET,
        RADAR_WEBHOOK_BACKOFF_SECONDS="0.05",
        RADAR_WEBHOOK_MAX_BACKOFF_SECONDS="0.2",
        RADAR_WEBHOOK_TIMEOUT_SECONDS="5",
    )
    err = tmp_path / "err"
    with err.open("w") as e:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streams",
                "webhook",
                "--topic",
                topic,
                "--group",
                group,
                "--new-group-start",
                "earliest",
                "--rejected",
                str(rejected),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=e,
        )
    try:
        wait_for(
            lambda: len(state.accepted) == 3 and any(s == 400 for _, s in state.requests),
            45,
            lambda: f"{state.requests}\n{err.read_text()}",
        )
        time.sleep(0.5)  # room for a wrong extra delivery to show up
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 130, err.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    log = err.read_text()
    ids = {e["data"]["dedup_key"]: e["id"] for e in events if e["type"].endswith("triggered")}
    resolve_id = events[3]["id"]
    # every valid event arrived exactly once as a 2xx, after three failed attempts
    per_event: dict[str, list[int]] = defaultdict(list)
    for event_id, status in state.requests:
        per_event[event_id].append(status)
    for event_id in (ids["k-a"], ids["k-b"], resolve_id):
        assert per_event[event_id] == [503, 429, 0, 202], (event_id, per_event)
    assert per_event[ids["k-reject"]] == [400]  # permanent: never retried
    assert state.unverified == []  # every request carried a valid signature
    # the PagerDuty bodies, in order per dedup key: the resolve after its trigger
    assert [d["event_action"] for d in state.accepted if d["dedup_key"] == "k-a"] == [
        "trigger",
        "resolve",
    ]
    assert sorted(json.dumps(d, sort_keys=True) for d in state.accepted) == sorted(
        json.dumps(e["data"], sort_keys=True)
        for e in events
        if e["data"]["dedup_key"] != "k-reject"
    )
    # reported: the 400 with the receiver's answer, the bad record with its offset
    assert "REJECTED" in log and "HTTP 400" in log and "unknown service" in log
    assert "is not an incident event, not sent" in log
    assert log.splitlines()[-1] == (
        # 3 x (503, 429, dropped) + the 400
        "webhook stopped by SIGINT: 3 delivered (3 after retries, 10 failed attempts in all), "
        "1 rejected, 1 invalid records"
    )
    kept = [from_line(line) for line in rejected.read_text().splitlines()]
    assert sorted(r.value for r in kept) == sorted([b"garbage", records[3][1]])
    # and everything is committed for the group: a restart would send nothing again
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group)
    try:
        committed = sum(consumer.committed(TopicPartition(topic, p)) or 0 for p in range(2))
    finally:
        consumer.close()
    assert committed == len(records)
