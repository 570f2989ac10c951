"""``make run``: embedded broker + worker + simulated payment traffic with one injected outage.

The traffic is a small, seeded generator (the full simulator is ``python -m streams
simulate``): one wallet service, four partner banks, three regions, three channels, a
~98.5 % success rate, and a collapse of one partner bank's success rate for a few minutes.
Event time runs faster than the wall clock (``speed``), so twenty minutes of traffic play
in about a minute; detection works in event time and does not notice.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from streams.broker import PRODUCER_SETTINGS, EmbeddedBroker, create_topics, free_port
from streams.processes import stop_group
from streams.settings import Settings

SERVICE = "wallet"
BANKS = ("ACB", "VCB", "TCB", "BIDV")
REGIONS = ("north", "central", "south")
CHANNELS = ("app", "web", "ussd")


@dataclass(frozen=True)
class Collapse:
    """The injected outage: a partner bank whose transactions mostly fail."""

    bank: str = "TCB"
    start_minute: float = 8.0
    minutes: float = 4.0
    success_rate: float = 0.15


@dataclass
class DemoPlan:
    seed: int = 7
    minutes: float = 20.0
    rate: float = 120.0  # events per second of event time
    start_ms: int = 1_760_860_800_000  # 2025-10-19T08:00:00Z, a morning like MoMo's
    collapse: Collapse = field(default_factory=Collapse)

    @property
    def collapse_start_ms(self) -> int:
        return self.start_ms + round(self.collapse.start_minute * 60_000)

    @property
    def collapse_end_ms(self) -> int:
        return self.collapse_start_ms + round(self.collapse.minutes * 60_000)

    @property
    def end_ms(self) -> int:
        return self.start_ms + round(self.minutes * 60_000)


def traffic(plan: DemoPlan) -> Iterator[tuple[bytes, int, dict[str, Any]]]:
    """``(key, event_time_ms, transaction)`` in event-time order, deterministic per seed."""
    rng = random.Random(plan.seed)
    step_ms = 1000.0 / plan.rate
    t = float(plan.start_ms)
    n = 0
    while t < plan.end_ms:
        ts = int(t)
        bank = rng.choice(BANKS)
        region = rng.choice(REGIONS)
        channel = rng.choices(CHANNELS, weights=(6, 3, 1))[0]
        p_ok = 0.985
        if bank == plan.collapse.bank and plan.collapse_start_ms <= ts < plan.collapse_end_ms:
            p_ok = plan.collapse.success_rate
        ok = rng.random() < p_ok
        n += 1
        value = {
            "event_id": f"demo-{plan.seed}-{n}",
            "event_time": ts,
            "service": SERVICE,
            "type": rng.choice(("payment", "transfer_in", "topup")),
            "status": "success" if ok else "failed",
            "region": region,
            "channel": channel,
            "partner_bank": bank,
            "amount": round(rng.lognormvariate(3.5, 1.0), 2),
            "currency": "VND",
            "latency_ms": round(rng.lognormvariate(5.5, 0.4), 1),
        }
        if not ok:
            value["error_code"] = "BANK_TIMEOUT" if bank == plan.collapse.bank else "DECLINED"
        key = "|".join((SERVICE, bank, region, channel)).encode()
        yield key, ts, value
        t += rng.expovariate(1.0) * step_ms


def hhmm(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%H:%M:%S")


def describe_incident(event: dict[str, Any]) -> str:
    data = event["data"]
    payload = data["payload"]
    details = payload["custom_details"]
    verb = "OPEN    " if data["event_action"] == "trigger" else "RESOLVED"
    return (
        f"{verb} [{payload['severity']:>8}] {event['subject']:<28} window "
        f"{details['window_start'][11:19]}-{details['window_end'][11:19]}  {payload['summary']}"
    )


def run_demo(
    plan: DemoPlan, speed: float = 20.0, keep_running: bool = False, timeout_s: float = 170.0
) -> int:
    """Run the whole demo; returns the process exit code (0: the outage was caught)."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    started = time.monotonic()
    say = _printer()
    incidents: list[dict[str, Any]] = []
    worker: subprocess.Popen[bytes] | None = None
    stopping = False

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal stopping
        if stopping:  # a second Ctrl-C: stop waiting for a clean shutdown
            raise KeyboardInterrupt
        stopping = True
        say(f"{signal.Signals(signum).name}: stopping the worker and the broker")

    # Our own handlers: Faust's event loop owns SIGINT otherwise, and this loop blocks it.
    old_handlers = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory(prefix="radar-demo-") as data:
        say(f"embedded broker (Tansu) on {broker.bootstrap}")
        env = {k: v for k, v in os.environ.items() if not k.startswith("RADAR_")}
        env.update(broker.env())
        env["RADAR_DATA_DIR"] = data
        # Faust binds its web port even with the web server off: the default (6066) may be
        # taken, e.g. by a worker the user runs already.
        env["RADAR_WEB_PORT"] = str(free_port())
        settings = Settings.from_env({k: v for k, v in env.items() if k.startswith("RADAR_")})
        create_topics(broker.bootstrap, settings.topics.all().values(), settings.partitions,
                      topic_configs=settings.topics.configs())  # fmt: skip
        try:
            worker_log = open(os.path.join(data, "worker.log"), "wb")  # noqa: SIM115
            worker = subprocess.Popen(
                [sys.executable, "-m", "streams", "worker", "-l", "warn"],
                env=env,
                stdout=worker_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            say(f"worker started (pid {worker.pid}); window {settings.window_seconds:g} s")
            consumer = KafkaConsumer(
                bootstrap_servers=broker.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100
            )
            consumer.assign(
                [TopicPartition(settings.topics.incidents, p) for p in range(settings.partitions)]
            )
            consumer.seek_to_beginning()
            producer = KafkaProducer(
                bootstrap_servers=broker.bootstrap, linger_ms=20, **PRODUCER_SETTINGS
            )
            c = plan.collapse
            say(
                f"sending {plan.minutes:g} min of wallet traffic at {plan.rate:g} tx/s, "
                f"{speed:g}x real time; injected: partner bank {c.bank} success rate -> "
                f"{c.success_rate:.0%} from {hhmm(plan.collapse_start_ms)} to "
                f"{hhmm(plan.collapse_end_ms)}"
            )
            sent = 0
            wall0 = time.monotonic()
            gen = traffic(plan)
            done_sending = False
            last_progress = 0.0
            while not stopping:
                if worker.poll() is not None:
                    say(f"the worker exited with code {worker.returncode}; its log ends:")
                    with open(worker_log.name, errors="replace") as f:
                        print("\n".join(f.read().splitlines()[-30:]), flush=True)
                    break
                if not done_sending:
                    horizon = plan.start_ms + (time.monotonic() - wall0) * speed * 1000
                    for key, ts, value in gen:
                        producer.send(
                            settings.topics.transactions,
                            key=key,
                            value=json.dumps(value, separators=(",", ":")).encode(),
                            timestamp_ms=ts,
                        )
                        sent += 1
                        if ts > horizon:
                            break
                    else:
                        done_sending = True
                        producer.flush()
                        say(f"traffic sent: {sent} transactions; waiting for the last windows")
                    if time.monotonic() - last_progress > 10 and not done_sending:
                        last_progress = time.monotonic()
                        say(f"... event time {hhmm(int(horizon))}, {sent} transactions sent")
                for records in consumer.poll(timeout_ms=100).values():
                    for rec in records:
                        event = json.loads(rec.value)
                        incidents.append(event)
                        say(describe_incident(event))
                if _finished(incidents, done_sending) and not keep_running:
                    break
                if time.monotonic() - started > timeout_s and not keep_running:
                    say(f"time limit of {timeout_s:.0f} s reached")
                    break
            producer.close()
            consumer.close()
        except KeyboardInterrupt:
            stopping = True
            say("interrupted; stopping")
        finally:
            _stop(worker)
            if worker is not None:
                worker_log.close()
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
    return _summary(say, plan, incidents, time.monotonic() - started)


def _finished(incidents: list[dict[str, Any]], done_sending: bool) -> bool:
    """All traffic sent and every opened incident resolved."""
    if not done_sending or not incidents:
        return False
    open_keys: set[str] = set()
    for ev in incidents:
        key = ev["data"]["dedup_key"]
        if ev["data"]["event_action"] == "trigger":
            open_keys.add(key)
        else:
            open_keys.discard(key)
    return not open_keys


def _stop(worker: subprocess.Popen[bytes] | None) -> None:
    stop_group(worker, grace_s=15)


def _summary(say: Any, plan: DemoPlan, incidents: list[dict[str, Any]], seconds: float) -> int:
    opened = [e for e in incidents if e["data"]["event_action"] == "trigger"]
    resolved = [e for e in incidents if e["data"]["event_action"] == "resolve"]
    expected = f"{SERVICE}/partner_bank={plan.collapse.bank}"
    hit = [e for e in opened if e["subject"] == expected]
    elsewhere = sorted({e["subject"] for e in opened if e["subject"] != expected})
    say("")
    say(f"summary after {seconds:.0f} s: {len(opened)} opened, {len(resolved)} resolved")
    if hit:
        first = hit[0]["data"]["payload"]["custom_details"]
        opened_ms = _parse_ms(first["window_end"])
        delay = (opened_ms - plan.collapse_start_ms) / 1000
        say(f"  injected outage at {expected}: caught, at {delay:.0f} s of event time after onset")
    else:
        say(f"  injected outage at {expected}: NOT caught")
    if any(e["subject"] == expected for e in resolved):
        say("  ... and resolved after recovery")
    say(f"  incidents elsewhere: {', '.join(elsewhere) if elsewhere else 'none'}")
    return 0 if hit and not elsewhere else 1


def _parse_ms(iso: str) -> int:
    return round(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def _printer() -> Any:
    t0 = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - t0:6.1f}s] {text}" if text else "", flush=True)

    return say
