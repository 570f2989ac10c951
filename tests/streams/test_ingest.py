"""Stage 1: when an input partition counts as quiet (the one wall-clock rule), and what a
rebalance in the middle of sending closed windows leaves in the marker."""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiokafka.errors import IllegalStateError
from faust.types import TP

from detectors.signals import BALANCE_COUNTERS, SEP, Extractor
from detectors.windows import ClosedWindow, PartitionWindows
from streams.agents import ingest
from streams.agents.ingest import emit_closed, forget_revoked, quiet_seconds
from streams.bundles import unbundle, windows_partition
from streams.errors import RadarError
from streams.restore import Marker, NoSuchPartition
from streams.topics import KIND_OF_TOPIC


def test_a_partition_without_records_is_quiet_only_once_the_input_flows() -> None:
    # The worker has been up for 60 s; the replay's first records arrived 2 s ago, and this
    # partition's first batch is a moment behind the others': it is not quiet yet (counting
    # from the worker's start, it was "quiet for 60 s" and got advanced past its records).
    assert quiet_seconds(now=60.0, last_record=None, assigned=0.0, first_handled=58.0) == 2.0
    # Still nothing 5 s after the input started: now it is (an empty partition must not
    # hold back every window for ever).
    assert quiet_seconds(now=63.0, last_record=None, assigned=0.0, first_handled=58.0) == 5.0
    # Nothing handled anywhere yet: nothing is known, so not quiet.
    assert quiet_seconds(now=60.0, last_record=None, assigned=0.0, first_handled=None) is None


def test_a_partition_assigned_by_a_rebalance_gets_its_own_grace() -> None:
    assert quiet_seconds(now=60.0, last_record=None, assigned=59.0, first_handled=10.0) == 1.0
    # A record since: its time counts, whatever the assignment.
    assert quiet_seconds(now=60.0, last_record=52.0, assigned=59.0, first_handled=10.0) == 8.0


class _WindowsTopic:
    """The windows topic, recording what is sent: the records (partition, value) and the
    messages they carry (bundles unpacked); ``on_partial`` runs during a partial's send."""

    def __init__(self) -> None:
        self.records: list[tuple[int | None, dict[str, Any]]] = []
        self.sent: list[dict[str, Any]] = []
        self.on_partial: Callable[[], Awaitable[None]] | None = None

    def get_topic_name(self) -> str:
        return "windows"

    async def send(self, key: bytes, value: dict[str, Any], partition: int | None = None) -> None:
        self.records.append((partition, value))
        self.sent.extend(unbundle(value))
        kinds = {m["kind"] for m in unbundle(value)}
        if "partial" in kinds and self.on_partial is not None:
            await self.on_partial()


def _stage1(
    monkeypatch: pytest.MonkeyPatch, source: tuple[str, int], handled: int, partitions: int
) -> tuple[str, _WindowsTopic]:
    """Stage 1 of a worker owning ``source`` (a logins partition) that has handled up to
    offset ``handled``, sending to a recording windows topic of ``partitions`` partitions:
    the input topic's name and that windows topic."""
    topic_name = next(name for name, kind in KIND_OF_TOPIC.items() if kind == "logins")
    topic = _WindowsTopic()
    monkeypatch.setattr(ingest, "windows_topic", topic)
    monkeypatch.setattr(ingest, "partition_count", lambda name: partitions)
    monkeypatch.setattr(ingest, "agent_stream", None)
    monkeypatch.setitem(ingest.handled_next, source, handled)
    monkeypatch.setitem(ingest.owned, source, 0.0)
    return topic_name, topic


def test_a_rebalance_during_the_sends_leaves_the_marker_s_offset_current(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Measured before the fix (a second worker joining a 178k-record replay for ~7 s): the
    # partition was revoked while its partials were being sent, the marker went out with the
    # new ``until`` and the *previous* marker's offset, and the next owner dead-lettered the
    # 708 records between the two offsets as late (804 and 2382 late records in two runs).
    source = ("logins", 3)
    topic_name, topic = _stage1(monkeypatch, source, handled=1586, partitions=1)

    async def rebalance() -> None:  # while the partials go out
        await forget_revoked(None, [TP(topic_name, 3)], signal=None)

    topic.on_partial = rebalance
    monkeypatch.setitem(ingest.markers, source, Marker(until_ms=1_000_000, next_offset=1081))
    closed = [ClosedWindow(1_000_000, {f"wallet{SEP}north": [3, 1, 0]})]

    asyncio.run(emit_closed(source, topic_name, closed, until_ms=1_010_000))

    assert source not in ingest.handled_next  # the revocation did happen mid-send
    [marker] = [v for v in topic.sent if v["kind"] == "closed"]
    assert (marker["until"], marker["next"]) == (1_010_000, 1586)
    assert ingest.markers[source] == Marker(until_ms=1_010_000, next_offset=1586)


def _closed(services: tuple[str, ...]) -> list[ClosedWindow]:
    """Three windows of ``services`` closed at once (a replay's batch)."""
    return [
        ClosedWindow(start, {f"{s}{SEP}north": [1, 0, 0] for s in services})
        for start in (0, 10_000, 20_000)
    ]


def test_closed_windows_leave_as_one_bundle_per_windows_partition_then_the_markers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One record per windows partition holding partials, each service's partials on the
    # partition its name hashes to (where its maintenance and feedback records go too); then
    # the marker to every partition, after every partial.
    source = ("logins", 1)
    topic_name, topic = _stage1(monkeypatch, source, handled=77, partitions=4)
    services = ("wallet", "checkout")
    held = sorted({windows_partition(s, 4) for s in services})
    assert len(held) == 2  # else this test shows less

    asyncio.run(emit_closed(source, topic_name, _closed(services), until_ms=30_000))

    bundles, markers = topic.records[:2], topic.records[2:]
    assert [q for q, _ in bundles] == held and [q for q, _ in markers] == [0, 1, 2, 3]
    for q, value in bundles:
        assert value["kind"] == "bundle"
        partials = [(m["group"], m["window"]) for m in unbundle(value)]
        mine = [s for s in services if windows_partition(s, 4) == q]
        assert partials == [(s, w) for w in (0, 10_000, 20_000) for s in sorted(mine)]
    for _q, value in markers:
        assert (value["kind"], value["until"], value["next"]) == ("closed", 30_000, 77)
    assert ingest.markers[source] == Marker(until_ms=30_000, next_offset=77)


def test_a_worker_stopped_mid_send_leaves_no_marker_ahead_of_another_partition_s_partials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A stopping worker's agent is cancelled wherever it awaits. When each partition's bundle
    # carried its marker, a stop after the first partition's record left that marker (these
    # windows: sent) with the second partition's partials never sent; the next owner of the
    # input partition resumed after the marker, and the second partition completed those
    # windows without them: a false "no request samples" silence (1 of 3 CI runs of the
    # two-worker scenario test). Now the stop leaves no marker, so the windows are counted
    # again by the next owner.
    source = ("logins", 1)
    topic_name, topic = _stage1(monkeypatch, source, handled=77, partitions=4)
    before = Marker(until_ms=0, next_offset=40)
    monkeypatch.setitem(ingest.markers, source, before)

    async def stop() -> None:  # the worker stops after the first record went out
        raise asyncio.CancelledError

    topic.on_partial = stop
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(emit_closed(source, topic_name, _closed(("wallet", "checkout")), 30_000))

    assert [m["kind"] for m in topic.sent] == ["partial"] * 3  # one partition's, no marker
    assert ingest.markers[source] == before


def test_a_partition_revoked_while_the_broker_is_asked_is_not_advanced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The quiet timer asks the broker for the partitions' ends (an await); a rebalance can
    # revoke a partition meanwhile. Advancing it then re-created its windows and sent a marker
    # with an old offset: the same late records as above, for the next owner.
    names = {kind: name for name, kind in KIND_OF_TOPIC.items()}
    quiet, busy = ("logins", 2), ("logins", 3)
    topic = _WindowsTopic()

    class Consumer:
        def assignment(self) -> set[TP]:
            return {TP(names["logins"], 2), TP(names["logins"], 3)}

        def highwater(self, tp: TP) -> int:
            return 10

        async def position(self, tp: TP) -> int:
            return 10

        async def highwaters(self, *tps: TP) -> dict[TP, int]:
            await forget_revoked(None, [TP(names["logins"], 2)], signal=None)  # the rebalance
            return dict.fromkeys(tps, 10)

    class App:
        consumer = Consumer()

    now = time.monotonic()
    monkeypatch.setattr(ingest, "app", App())
    monkeypatch.setattr(ingest, "windows_topic", topic)
    monkeypatch.setattr(ingest, "partition_count", lambda name: 1)
    monkeypatch.setattr(ingest, "first_handled_at", now - 100.0)
    for source in (quiet, busy):
        monkeypatch.setitem(ingest.owned, source, now - 100.0)
        monkeypatch.setitem(ingest.handled_next, source, 10)
        monkeypatch.setitem(ingest.markers, source, Marker(until_ms=1_000_000, next_offset=4))
    monkeypatch.setitem(ingest.last_seen, busy, now)  # the busy one had a record just now
    pw = PartitionWindows(10_000, 5_000, width=3)
    pw.add(1_050_000, f"wallet{SEP}north", 0)
    pw.close_until(1_040_000)
    monkeypatch.setitem(ingest.windows, busy, pw)

    # app.timer wraps the check in its every-second loop (and that in a task): unwrap both.
    asyncio.run(asyncio.wait_for(inspect.unwrap(ingest.advance_quiet_partitions)(), 10))

    assert quiet not in ingest.windows  # not re-created for a partition this worker lost
    # Nothing closed: the busy partition is not quiet, the quiet one is gone.
    assert topic.sent == []
    assert ingest.markers[quiet] == Marker(until_ms=1_000_000, next_offset=4)


@pytest.mark.parametrize("raises_in", ["highwater", "position"])
def test_a_partition_revoked_under_the_quiet_timer_does_not_crash_the_worker(
    monkeypatch: pytest.MonkeyPatch, raises_in: str
) -> None:
    # Faust runs aiokafka in its own thread: a partition can be revoked between the timer's
    # look at the assignment and its questions about the partition, and aiokafka then raises
    # (AssertionError from highwater, IllegalStateError from position). Raised from the
    # timer, that crashed the whole worker.
    names = {kind: name for name, kind in KIND_OF_TOPIC.items()}
    gone, kept = TP(names["logins"], 2), TP(names["logins"], 3)

    class Consumer:
        def assignment(self) -> set[TP]:
            return {gone, kept}  # the timer's view, taken before the revocation

        def highwater(self, tp: TP) -> int:
            if tp == gone and raises_in == "highwater":
                raise AssertionError("Partition is not assigned")
            return 10

        async def position(self, tp: TP) -> int:
            if tp == gone and raises_in == "position":
                raise IllegalStateError(f"Partition {tp} is not assigned")
            return 10

        async def highwaters(self, *tps: TP) -> dict[TP, int]:
            return dict.fromkeys(tps, 10)

    class App:
        consumer = Consumer()

    now = time.monotonic()
    monkeypatch.setattr(ingest, "app", App())
    monkeypatch.setattr(ingest, "first_handled_at", now - 100.0)
    for tp in (gone, kept):
        source = ("logins", tp.partition)
        monkeypatch.setitem(ingest.owned, source, now - 100.0)
        monkeypatch.setitem(ingest.handled_next, source, 10)
    # A whole timer round: no exception (the kept partition alone is quiet; with no window
    # anywhere there is nothing to close).
    asyncio.run(asyncio.wait_for(inspect.unwrap(ingest.advance_quiet_partitions)(), 10))
    assert asyncio.run(ingest.high_and_position(kept)) == (10, 10)
    assert asyncio.run(ingest.high_and_position(gone)) is None


# ------------------------------------------------------------------------- the account state


class _Producer:
    """Faust's producer, recording each send as (topic, key, JSON value, partition)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, Any, int | None]] = []

    async def send(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int | None,
        timestamp: float | None, headers: Any,
    ) -> None:  # fmt: skip
        self.sent.append((topic, key, json.loads(value or b"null"), partition))


def _worker_with_accounts(
    monkeypatch: pytest.MonkeyPatch, source: tuple[str, int], stored: list[Any]
) -> _Producer:
    """Stage 1 owning ``source`` (a balances partition), its account state topic holding
    ``stored``: batches of (account, balance), or an exception raised instead of a batch."""
    producer = _Producer()

    class App:
        async def maybe_start_producer(self) -> _Producer:
            return producer

    async def read_accounts(bootstrap: Any, topic: str, partition: int) -> Any:
        assert partition == source[1]
        for batch in stored:
            if isinstance(batch, Exception):
                raise batch
            yield batch

    monkeypatch.setattr(ingest, "app", App())
    monkeypatch.setattr(ingest, "read_accounts", read_accounts)
    monkeypatch.setattr(ingest, "extractors", {})
    monkeypatch.setattr(ingest, "unkept", set())
    monkeypatch.setitem(ingest.owned, source, 0.0)
    return producer


def _zero_read_violations(extractor: Extractor, account: str) -> int:
    record = {"service": "wallet", "kind": "read", "account_id": account, "balance": 0}
    zero = BALANCE_COUNTERS.index("zero_unexplained")
    return sum(u[2] == zero for u in extractor.updates("balances", record))


def test_accounts_recalled_from_the_account_state_are_judged_as_known(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = ("balances", 2)
    _worker_with_accounts(monkeypatch, source, [[("a", 5000.0), ("b", 0.0)], [("c", 7.0)]])
    extractor = ingest.extractor_for(source)
    asyncio.run(ingest.recall_accounts(source, extractor))
    assert [_zero_read_violations(extractor, x) for x in "abcd"] == [1, 0, 1, 0]
    # Recalled accounts are not new: only d, first seen here, is to be sent.
    assert extractor.balances.take_changed() == {"d": 0.0}


def test_changed_accounts_go_to_their_balances_partition_keyed_by_account(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = ("balances", 3)
    producer = _worker_with_accounts(monkeypatch, source, [])
    extractor = ingest.extractor_for(source)
    for account, balance in (("a", 10.0), ("b", 0.0), ("a", 12.0)):
        rec = {"service": "wallet", "kind": "read", "account_id": account, "balance": balance}
        list(extractor.updates("balances", rec))
    asyncio.run(ingest.publish_accounts(source))
    topic = ingest.account_state_topic.get_topic_name()
    assert producer.sent == [
        (topic, b"a", {"account": "a", "balance": 10.0}, 3),
        (topic, b"b", {"account": "b", "balance": 0.0}, 3),
    ]
    asyncio.run(ingest.publish_accounts(source))
    assert len(producer.sent) == 2  # sent once


def test_without_the_account_state_partition_the_worker_says_so_and_sends_nothing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    source = ("balances", 5)
    missing = NoSuchPartition("radar-account-state has no partition 5 (it has 4)")
    producer = _worker_with_accounts(monkeypatch, source, [missing])
    extractor = ingest.extractor_for(source)
    asyncio.run(ingest.recall_accounts(source, extractor))
    assert source in ingest.unkept
    assert "has no partition 5 (it has 4)" in caplog.text
    assert "with as many partitions as the balances topic" in caplog.text
    rec = {"service": "wallet", "kind": "read", "account_id": "a", "balance": 1.0}
    list(extractor.updates("balances", rec))
    asyncio.run(ingest.publish_accounts(source))
    assert producer.sent == []
    assert extractor.balances.take_changed() == {}  # taken and dropped: memory stays bounded


def test_a_failed_read_keeps_the_accounts_recalled_so_far(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    source = ("balances", 1)
    _worker_with_accounts(monkeypatch, source, [[("a", 5.0)], RadarError("broker gone")])
    extractor = ingest.extractor_for(source)
    asyncio.run(ingest.recall_accounts(source, extractor))
    assert "with the 1 accounts recalled so far" in caplog.text
    assert source not in ingest.unkept
    assert _zero_read_violations(extractor, "a") == 1
