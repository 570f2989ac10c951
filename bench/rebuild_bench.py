"""How fast a worker rebuilds per-account and per-code state when it takes a partition over.

``python -m bench.rebuild_bench [--events N] [--runs K] [--quick]`` writes the bench data set
(:mod:`bench.dataset`), publishes its balances and its OTP records each into a one-partition
topic of an embedded broker (one partition holding a whole topic: the most one worker can be
given), and ``K`` times replays each topic's whole history the way
:func:`streams.agents.ingest.rebuild_state` does: :func:`streams.restore.read_back` from the
end, then every record decoded, validated and fed to a fresh extractor. Prints per topic and
run the records, the read and the replay time, then the median (as measured 2026-12-04)::

    rebuild: records=224802 seconds=3.0 records_per_s=75020 (median of 3, range 74,755..75,951)

With ``RADAR_STATE_HISTORY_SECONDS`` of history at ``R`` records/s on a partition, a worker
spends about ``history * R / records_per_s`` seconds per partition it takes.

Before the history, a worker reads the balances partition's accounts back from the account
state topic (``RADAR_ACCOUNT_STATE``). The bench publishes the messages the worker sends for
the data set's balances (each account when first seen or when its funded status flips) into
a one-partition topic and ``K`` times reads them back into a fresh extractor
(:func:`streams.restore.read_accounts`, then ``recall``), printed before the last line (as
measured 2026-12-04)::

    accounts: accounts=100321 seconds=0.7 accounts_per_s=140358 (median of 3, range ...)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from kafka import KafkaProducer

from bench import dataset as ds
from bench.harness import say
from bench.stats import median, spread
from detectors.signals import Extractor
from streams.broker import PRODUCER_SETTINGS, EmbeddedBroker
from streams.restore import account_message, read_accounts, read_back
from streams.validation import decode

KINDS = ("balances", "otp")


def publish(bootstrap: str, topic: str, lines: list[bytes]) -> int:
    """Every traffic line's value into partition 0 of ``topic``, with its timestamp."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, **PRODUCER_SETTINGS)
    try:
        for line in lines:
            rec = json.loads(line)
            value = json.dumps(rec["value"]).encode()
            producer.send(topic, value=value, partition=0, timestamp_ms=rec["timestamp"])
        producer.flush()
    finally:
        producer.close()
    return len(lines)


def rebuild_once(bootstrap: str, kind: str, topic: str, end: int) -> tuple[int, float, float]:
    """Read ``topic`` back from ``end`` (all of it) and replay it, batch by batch as the
    worker does: (records, seconds reading, seconds replaying)."""
    extractor = Extractor()
    replay_s = 0.0
    records = 0

    async def run() -> None:
        nonlocal replay_s, records
        async for batch in read_back([bootstrap], topic, 0, end, since_ms=0):
            t = time.perf_counter()
            for m in batch:
                for _update in extractor.updates(kind, decode(kind, m.value, max_bytes=1 << 20)):
                    pass
            replay_s += time.perf_counter() - t
            records += len(batch)

    t0 = time.perf_counter()
    asyncio.run(run())
    return records, time.perf_counter() - t0 - replay_s, replay_s


def publish_accounts(bootstrap: str, topic: str, lines: list[bytes]) -> int:
    """The account state messages a worker sends for these balances traffic lines, into
    partition 0 of ``topic``; returns how many."""
    extractor = Extractor(track_accounts=True)
    for line in lines:
        for _update in extractor.updates("balances", json.loads(line)["value"]):
            pass
    changed = extractor.balances.take_changed()
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, **PRODUCER_SETTINGS)
    try:
        for account, balance in changed.items():
            value = account_message(account, balance)
            producer.send(topic, key=account.encode(), value=value, partition=0)
        producer.flush()
    finally:
        producer.close()
    return len(changed)


def recall_once(bootstrap: str, topic: str) -> tuple[int, float]:
    """Read partition 0 of the account state ``topic`` back into a fresh extractor:
    (accounts recalled, seconds)."""
    extractor = Extractor()

    async def run() -> None:
        async for batch in read_accounts([bootstrap], topic, 0):
            for account, balance in batch:
                extractor.balances.recall(account, balance)

    t0 = time.perf_counter()
    asyncio.run(run())
    return len(extractor.balances), time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    from bench.worker_bench import add_data_arguments, apply_quick

    parser = argparse.ArgumentParser(
        prog="python -m bench.rebuild_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_data_arguments(parser)
    args = parser.parse_args(argv)
    apply_quick(args)
    workdir = Path(tempfile.mkdtemp(prefix="radar-bench-rebuild-"))
    try:
        data = ds.generate(workdir, args.events, args.scenario, args.rate)
        with EmbeddedBroker() as broker:
            counts: dict[str, int] = {}
            for kind in KINDS:
                lines = (data.directory / f"{kind}.jsonl").read_bytes().splitlines()
                broker.create_topics([f"rebuild-{kind}"], partitions=1)
                counts[kind] = publish(broker.bootstrap, f"rebuild-{kind}", lines)
            totals: list[tuple[int, float]] = []
            for run in range(args.runs):
                records, seconds = 0, 0.0
                for kind in KINDS:
                    n, read_s, replay_s = rebuild_once(
                        broker.bootstrap, kind, f"rebuild-{kind}", counts[kind]
                    )
                    say(f"  run {run + 1}/{args.runs} {kind}: {n:,} records, read back in "
                        f"{read_s:.2f} s, replayed in {replay_s:.2f} s")  # fmt: skip
                    records += n
                    seconds += read_s + replay_s
                totals.append((records, seconds))
            lines = (data.directory / "balances.jsonl").read_bytes().splitlines()
            broker.create_topics(["rebuild-accounts"], partitions=1)
            sent = publish_accounts(broker.bootstrap, "rebuild-accounts", lines)
            recalls: list[tuple[int, float]] = []
            for run in range(args.runs):
                n, seconds = recall_once(broker.bootstrap, "rebuild-accounts")
                say(f"  run {run + 1}/{args.runs} accounts: {n:,} of {sent:,} recalled in "
                    f"{seconds:.2f} s")  # fmt: skip
                recalls.append((n, seconds))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    per_s = [n / s for n, s in recalls]
    print(
        f"accounts: accounts={recalls[0][0]} seconds={median(s for _, s in recalls):.1f} "
        f"accounts_per_s={median(per_s):.0f} ({spread(per_s)})",
        flush=True,
    )
    rates = [n / s for n, s in totals]
    print(
        f"rebuild: records={totals[0][0]} seconds={median(s for _, s in totals):.1f} "
        f"records_per_s={median(rates):.0f} ({spread(rates)})",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
