#!/usr/bin/env python3
"""Consume outage-radar incidents with plain kafka-python: a starting point for ops pipelines.

Every record on the incidents topic is a CloudEvents 1.0 event (JSON) whose ``data`` is a
PagerDuty Events v2 body (schemas/incident.v1.json). Records are keyed by the incident's dedup
key, so all events of one incident sit in one partition, in order: opened, updated, resolved.

This consumer joins a consumer group (several copies share the partitions; a restart resumes
where the group stopped), handles each event, and commits its offset only afterwards
(at-least-once: after a crash an event may be handled twice, never skipped; the event ``id``
is stable, so a duplicate is easy to recognise). It routes by severity: critical and error
page someone, warning opens a ticket, info is logged, and a resolve closes what was opened.

    pip install 'kafka-python>=2.1'
    python examples/consume_incidents.py --bootstrap 127.0.0.1:9092 --group ops-pipeline
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from kafka import KafkaConsumer
from kafka.structs import OffsetAndMetadata

#: Severity (PagerDuty's four levels) -> where the event goes.
ROUTES = {"critical": "page", "error": "page", "warning": "ticket", "info": "log"}


def route(event: dict[str, Any]) -> str:
    """Where an incident event goes: ``close`` for a resolve, else by severity."""
    data = event["data"]
    if data["event_action"] == "resolve":
        return "close"
    return ROUTES.get(data["payload"]["severity"], "log")


def handle(event: dict[str, Any], where: str) -> None:
    """Your pipeline goes here: call the pager, open or close a ticket, post to a chat."""
    data, payload = event["data"], event["data"]["payload"]
    print(
        f"{where:<6} {payload['severity']:<8} {event['time']} {data['dedup_key']} "
        f"{payload['summary']}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka host:port[,...]")
    parser.add_argument("--topic", default="incidents", help="the incidents topic")
    parser.add_argument("--group", default="ops-pipeline", help="consumer group id")
    parser.add_argument(
        "--start",
        choices=("earliest", "latest"),
        default="latest",
        help="where a new group (no committed offsets yet) starts",
    )
    parser.add_argument("--max-events", type=int, help="stop after handling this many events")
    parser.add_argument("--idle-timeout", type=float, help="stop after this many quiet seconds")
    args = parser.parse_args(argv)

    consumer = KafkaConsumer(
        args.topic,
        bootstrap_servers=args.bootstrap.split(","),
        group_id=args.group,
        enable_auto_commit=False,  # we commit ourselves, after handling each event
        auto_offset_reset=args.start,
        # Short sessions make group joins quick (the embedded test broker holds a join for
        # half the session timeout); fine on Apache Kafka too.
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    handled = 0
    last_seen = time.monotonic()

    def done() -> bool:
        return args.max_events is not None and handled >= args.max_events

    try:
        while not done():
            batch = consumer.poll(timeout_ms=500)
            if not batch:
                if args.idle_timeout and time.monotonic() - last_seen > args.idle_timeout:
                    break
                continue
            last_seen = time.monotonic()
            for tp, records in batch.items():
                for record in records:
                    if done():
                        break  # the rest is not committed: the next run gets it
                    try:
                        event = json.loads(record.value)
                        where = route(event)
                    except (ValueError, TypeError, KeyError) as exc:
                        # Not an incident event: say so and move on (never crash the pipeline).
                        print(
                            f"skip   {tp.topic}[{tp.partition}]@{record.offset}: "
                            f"not an incident event ({type(exc).__name__}: {exc})",
                            file=sys.stderr,
                            flush=True,
                        )
                    else:
                        handle(event, where)
                        handled += 1
                    # Commit only now that the record is handled: at-least-once.
                    consumer.commit({tp: OffsetAndMetadata(record.offset + 1, "", -1)})
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close(autocommit=False)
    print(f"handled {handled} incident events", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
