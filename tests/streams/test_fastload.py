"""The fast path of ``evaluate`` (streams.fastload) against the per-record path of
``streams.evaluate.run``: the same windows (every count, in the same dict order), the same
incidents and updates, the same stats, pipeline counters and errors, on simulated traffic and
on hand-made files full of bad and unusual records."""

from __future__ import annotations

import base64
import copy
import functools
import gzip
import heapq
import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from detectors.engine import DetectionEngine, EngineWindow
from detectors.pipeline import OfflinePipeline
from detectors.signals import Extractor
from simulator import build_plan
from simulator import simulate as generate
from streams import evaluate, fastload
from streams.errors import RadarError
from streams.fastload import FileBatch, load_file, merge_order, run_fast
from streams.traffic import traffic_files

W, LATE = 10_000, 5_000
#: The per-record path: ``run_records`` once ``evaluate.run`` dispatches to the fast path.
run = getattr(evaluate, "run_records", evaluate.run)


def _nested(d: Any) -> Any:
    """Dicts as lists of items (so that insertion order is compared too)."""
    if isinstance(d, dict):
        return [(k, _nested(v)) for k, v in d.items()]
    return d


def _capture(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    seen: list[Any] = []
    original = DetectionEngine.process

    def process(self: DetectionEngine, window: EngineWindow) -> Any:
        seen.append((window.start_ms, _nested(copy.deepcopy(window.families))))
        return original(self, window)

    monkeypatch.setattr(DetectionEngine, "process", process)
    return seen


def _summary(result: Any) -> dict[str, Any]:
    pipeline, stats, errors = result
    return {
        "incidents": [
            (i.key, i.opened_at_ms, i.resolved_at_ms, i.cause_class, i.cause, i.maintenance,
             sorted(i.signals), [s.label for s in i.segments])
            for i in pipeline.manager.incidents
        ],
        "updates": [
            (u.action, u.incident.key, u.at_ms, u.severity,
             [(a.action, a.signal.name, a.segment.label, a.window_start_ms) for a in u.anomalies])
            for u in pipeline.updates
        ],
        "stats": (stats.events, stats.invalid, stats.first_ms, stats.last_ms),
        "pipeline": (pipeline.late, pipeline.counted, pipeline.max_event_ms,
                     pipeline.closed_until_ms, pipeline.engine.windows_seen),
        "families": [(w.closed_until_ms, w.max_event_ms) for w in pipeline.windows.values()],
        "maintenance": pipeline.manager.maintenance,
        "errors": (dict(errors.counts), errors.examples),
    }  # fmt: skip


def _in_processes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Read with a second process however small the input: the paths read there."""
    from concurrent.futures import ProcessPoolExecutor

    monkeypatch.setattr(fastload, "PARALLEL_MIN_BYTES", 0)
    sent: list[Path] = []
    submit = ProcessPoolExecutor.submit

    def spy(self: Any, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        sent.extend(args[0])
        return submit(self, fn, *args, **kwargs)

    monkeypatch.setattr(ProcessPoolExecutor, "submit", spy)
    return sent


def _both(
    source: Path, monkeypatch: pytest.MonkeyPatch, jobs: int = 1
) -> tuple[Any, Any, Any, Any]:
    seen = _capture(monkeypatch)
    added = []
    original_add = OfflinePipeline.add

    def add(self: OfflinePipeline, family: str, record: Any) -> None:
        added.append(family)
        original_add(self, family, record)

    monkeypatch.setattr(OfflinePipeline, "add", add)
    slow = _summary(run(source, W, LATE, progress=False))
    # the reference really is the per-record path: one add per valid record
    assert len(added) == slow["stats"][0]
    slow_windows = list(seen)
    seen.clear()
    fast = _summary(run_fast(source, W, LATE, progress=False, jobs=jobs))
    return slow, fast, slow_windows, list(seen)


def _assert_same(source: Path, monkeypatch: pytest.MonkeyPatch, jobs: int = 1) -> dict[str, Any]:
    slow, fast, slow_windows, fast_windows = _both(source, monkeypatch, jobs)
    assert len(fast_windows) == len(slow_windows)
    for a, b in zip(slow_windows, fast_windows, strict=True):
        assert a == b, f"window {a[0]} differs"
    for key in slow:
        assert fast[key] == slow[key], key
    return slow


@pytest.mark.parametrize(
    ("scenario", "rate", "days", "onset", "minutes"),
    [("momo", 8.0, 0.06, 0.5, 30.0), ("qiwi", 15.0, 0.05, 0.5, 30.0), ("io", 5.0, 0.06, 0.5, 30.0)],
)
def test_simulated_traffic_same_windows_and_incidents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scenario: str, rate: float, days: float,
    onset: float, minutes: float,
) -> None:  # fmt: skip
    plan = build_plan(
        scenario=scenario, seed=3, days=days, rate=rate, onset_hour=onset,
        duration_minutes=minutes,
    )  # fmt: skip
    generate(plan, tmp_path, compress=scenario == "qiwi")
    slow = _assert_same(tmp_path, monkeypatch)
    assert slow["stats"][0] > 1000 and slow["pipeline"][4] > 100
    assert slow["incidents"], "the scenario should raise at least one incident"
    # and it was the fast path: every line of a windowed family decoded as a struct
    for path in tmp_path.iterdir():
        if path.name.startswith(("transactions", "balances", "requests")):
            batch = load_file(path)
            assert len(batch.fast) == len(batch.timestamps) > 0 and not batch.slow


def _line(topic: str, value: Any, ts: int | None = None, key: str | None = "k") -> str:
    stamp = value["event_time"] if ts is None else ts
    line = {"topic": topic, "key": key, "timestamp": stamp, "value": value}
    return json.dumps(line, ensure_ascii=False)


def _edge_files(directory: Path) -> None:
    """A calm hour, then every kind of bad or unusual record put into it."""
    plan = build_plan(scenario="calm", seed=5, days=0.05, rate=10.0)
    generate(plan, directory)
    t0 = plan.start

    def lines(topic: str) -> list[str]:
        return (directory / f"{topic}.jsonl").read_text().splitlines()

    def txn(t: int, **over: Any) -> dict[str, Any]:
        v = {"event_id": f"x{t}", "event_time": t, "service": "wallet", "type": "payment",
             "status": "success", "region": "north", "channel": "app", "partner_bank": "ACB",
             "latency_ms": 1500, "amount": 10, "currency": "VND"}  # fmt: skip
        v.update(over)
        return {k: x for k, x in v.items() if x is not ...}

    tx = lines("transactions")
    mid = len(tx) // 2
    t_mid = json.loads(tx[mid])["timestamp"]
    valid_b64 = base64.b64encode(json.dumps(txn(t_mid + 2)).encode()).decode()
    extra = [
        "this is not json",
        "",
        "   ",
        json.dumps([1, 2]),
        _line("transactions", txn(t_mid, event_time=str(t_mid))),  # wrong type
        _line("transactions", txn(t_mid, status="lost")),  # unknown enum
        _line("transactions", txn(t_mid, surprise={"a": [1, 2]}, note="extra")),  # extra: valid
        _line("transactions", txn(t_mid, latency_ms=None)),  # null not allowed
        _line("transactions", txn(t_mid, partner_bank=None)),  # null allowed
        _line("transactions", txn(t_mid, partner_bank=...)),  # missing
        _line("transactions", txn(t_mid, status="completed_late", latency_ms=12_345.5)),
        _line("transactions", txn(t_mid, status="completed_late", latency_ms=...)),
        _line("transactions", txn(t_mid, currency="vnd")),  # pattern
        _line("transactions", txn(t_mid, amount=-1)),  # minimum
        _line("transactions", txn(t_mid, region="")),  # minLength
        _line("transactions", txn(t_mid, region="n\u00f6rd\u00e9")),  # non-ASCII, as is
        json.dumps({"topic": "transactions", "key": "k", "timestamp": t_mid,
                    "value": txn(t_mid, region="s\u00fcd")}),  # escaped: per-record path
        _line("transactions", txn(t_mid, event_time=float(t_mid))),  # integer as 1.0
        _line("transactions", txn(t_mid, event_time=True)),
        _line("transactions", txn(t_mid, event_time=123)),  # below minimum
        json.dumps({"topic": "transactions", "key": "k", "timestamp": t_mid + 2,
                    "value_b64": valid_b64}),
        json.dumps({"topic": "transactions", "key": None, "timestamp": t_mid + 3,
                    "value_b64": base64.b64encode(b"\xff\x00 not json").decode()}),
        json.dumps({"topic": "transactions", "key_b64": "AAE=", "timestamp": t_mid + 4,
                    "value": txn(t_mid + 4)}),
        json.dumps({"topic": "transactions", "key_b64": "!!", "timestamp": t_mid,
                    "value": txn(t_mid)}),  # bad base64: bad line
        json.dumps({"topic": "transactions", "key": 5, "timestamp": t_mid, "value": txn(t_mid)}),
        json.dumps({"topic": "transactions", "timestamp": -1, "value": txn(t_mid)}),
        json.dumps({"topic": "transactions", "timestamp": t_mid}),  # no value
        json.dumps({"topic": "transactions", "key": "k", "timestamp": t_mid, "value": txn(t_mid),
                    "partition": 3}),  # unknown top-level field
        _line("logins", {"event_id": "l1", "event_time": t_mid, "service": "wallet",
                         "region": "north", "outcome": "failure", "reason": "network"}),
        '{"topic":"transactions","key":"k","timestamp":T,"value":{"event_id":"d",'
        '"event_time":T,"service":"wallet","type":"payment","status":"failed","region":"a",'
        '"region":"b","channel":"app"}}'.replace("T", str(t_mid)),  # duplicate key: last wins
        '{"topic":"transactions","key":"k","timestamp":T,"value":{"event_id":"n",'
        '"event_time":T,"service":"wallet","type":"payment","status":"failed","region":"a",'
        '"channel":"app","score":NaN}}'.replace("T", str(t_mid)),  # NaN: Python's json reads it
        _line("transactions", txn(t_mid - 120_000)),  # late
        _line("transactions", txn(t_mid - 9_000)),  # maybe late
        _line("transactions", txn(t_mid + 10), ts=t_mid - 50_000),  # timestamp != event_time
        _line("transactions", txn(t_mid, service="other", channel="ussd")),
    ]  # fmt: skip
    tx[mid:mid] = extra
    body = ("\n".join(tx) + "\n").encode()
    body += b'{"topic":"transactions","key":"k","timestamp":1,"value":{"a":"\xff"}}\n'
    body += (_line("transactions", txn(t_mid + 20)) + "\r\n").encode()
    body += _line("transactions", txn(t_mid + 30)).encode()  # no final newline
    (directory / "transactions.jsonl").write_bytes(body)

    # logins: unsorted (blocks moved), and gzip
    lg = lines("logins")
    random.Random(1).shuffle(lg[100:130])
    lg[10], lg[400] = lg[400], lg[10]
    (directory / "logins.jsonl").unlink()
    with gzip.open(directory / "logins.jsonl.gz", "wt") as f:
        f.write("\n".join(lg) + "\n")

    # balances: zero reads after a funded state, an unknown account, link removals
    bal = lines("balances")
    tb = json.loads(bal[len(bal) // 3])["timestamp"]

    def b(t: int, kind: str, account: str, **more: Any) -> str:
        v = {"event_id": f"b{t}", "event_time": t, "service": "wallet", "kind": kind,
             "account_id": account, **more}  # fmt: skip
        return _line("balances", v)

    more = [
        b(tb, "change", "zz1", balance=500, region="north"),
        b(tb + 1, "read", "zz1", balance=0, region="north"),
        b(tb + 2, "read", "zz1", balance=0.0, region="north"),
        b(tb + 3, "read", "zz2", balance=0),
        b(tb + 4, "change", "zz2", balance=-5),
        b(tb + 5, "read", "zz2", balance=0),
        b(tb + 6, "read", "zz1"),
        b(tb + 7, "bank_link_removed", "zz1", initiated_by="system", region="south"),
        b(tb + 8, "bank_link_removed", "zz1", initiated_by="user", region="south"),
        b(tb + 9, "bank_link_removed", "zz3"),
        b(tb + 10, "bank_link_added", "zz3", initiated_by="bank"),
        b(tb + 10, "bank_link_added", "zz5", balance=9),  # a link event's balance is not kept
        b(tb + 10, "read", "zz5", balance=0),
        b(tb + 11, "read", "zz1", balance=1e13),  # out of range: invalid
        b(tb + 12, "read", "zz4", balance=7),
        b(tb - 200_000, "read", "zz4", balance=0),  # late, but still judged and remembered
        b(tb + 13, "read", "zz4", balance=0),
    ]
    i = len(bal) // 3
    bal[i:i] = more
    (directory / "balances.jsonl").write_text("\n".join(bal) + "\n")

    # requests: zero requests, errors above requests, null downstream errors (invalid)
    rq = lines("requests")
    tr = json.loads(rq[len(rq) // 2])["timestamp"]

    def r(t: int, **more: Any) -> str:
        v = {"event_id": f"r{t}", "event_time": t, "service": "wallet", "section": "home",
             "requests": 0, "errors": 0, **more}  # fmt: skip
        return _line("requests", v)

    j = len(rq) // 2
    rq[j:j] = [r(tr, section="ghost"), r(tr, requests=3, errors=9, downstream_errors=2),
               r(tr, downstream_errors=None), r(tr, requests=2**70)]  # fmt: skip
    (directory / "requests.jsonl").write_text("\n".join(rq) + "\n")

    # maintenance: a declaration, a cancellation; feedback; complaints truncated gzip
    m = {"service": "wallet", "start_time": t0, "end_time": t0 + 3_600_000}
    (directory / "maintenance.jsonl").write_text(
        _line("maintenance", {"event_id": "m1", "event_time": t0 + 60_000, **m}) + "\n"
        + _line("maintenance", {"event_id": "m2", "event_time": t0 + 90_000, "description": "d",
                                **m}) + "\n"
        + _line("maintenance", {"event_id": "m3", "event_time": t0 + 1_200_000,
                                "description": "d", "status": "cancelled", **m}) + "\n"
        + _line("maintenance", {"event_id": "m4", "event_time": t0 + 100, "service": "x"}) + "\n"
    )  # fmt: skip
    cp = (directory / "complaints.jsonl").read_bytes()
    (directory / "complaints.jsonl").unlink()
    packed = gzip.compress(cp)
    (directory / "complaints.jsonl.gz").write_bytes(packed[: len(packed) * 2 // 3])


@pytest.mark.parametrize("jobs", [1, 2])
def test_bad_and_unusual_records_same_as_per_record_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: int
) -> None:
    _edge_files(tmp_path)
    sent = _in_processes(monkeypatch) if jobs > 1 else []
    slow = _assert_same(tmp_path, monkeypatch, jobs)
    assert len(sent) >= 2 if jobs > 1 else not sent  # files really were read elsewhere
    counts = slow["errors"][0]
    assert counts["bad line"] >= 5 and counts["invalid"] >= 8 and counts["unreadable file"] == 1
    assert counts["not UTF-8"] == 1
    assert slow["pipeline"][0] >= 2  # late records
    assert slow["maintenance"]


def _batch(batch: FileBatch) -> tuple[Any, ...]:
    """A file's batch as plain values (decoded rows as their builtins)."""
    import msgspec

    return (
        batch.timestamps.tolist(), msgspec.to_builtins(batch.fast), batch.fast_pos.tolist(),
        [(pos, record.topic, record.timestamp, record.value) for pos, record in batch.slow],
        batch.errors,
    )  # fmt: skip


def test_files_read_in_small_pieces_same_as_read_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pieces of ~2 kB: every file of the edge set (bad lines, a line that is not UTF-8, no
    final newline, gzip, a truncated gzip) splits into many, and the batch is the same as
    from one piece: rows, positions, per-record rows, errors and their line numbers."""
    _edge_files(tmp_path)
    files = [p for p in traffic_files(tmp_path) if not p.name.endswith(".json")]
    whole = {p: _batch(load_file(p)) for p in files}
    monkeypatch.setattr(fastload, "CHUNK_BYTES", 2000)
    pieces = {p: list(fastload._pieces(p)) for p in files if p.name.startswith("trans")}
    assert len(pieces[tmp_path / "transactions.jsonl"]) > 50
    for path in files:
        assert _batch(load_file(path)) == whole[path], path.name
    _assert_same(tmp_path, monkeypatch)  # and so is the whole run, windows and incidents


def test_a_line_that_is_not_utf8_leaves_the_other_lines_on_the_fast_path(
    tmp_path: Path,
) -> None:
    """Only its piece is read line by line: before, the whole file was (per record)."""
    _edge_files(tmp_path)
    batch = load_file(tmp_path / "transactions.jsonl")
    assert len(batch.fast) > 0.9 * len(batch.timestamps) > 1000
    assert [kind for _, kind, _ in batch.errors].count("not UTF-8") == 1


def test_balances_beyond_capacity_replayed_record_by_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    defaults = Extractor.__init__.__defaults__ or ()
    monkeypatch.setattr(Extractor.__init__, "__defaults__", (40, *defaults[1:]))  # capacity 40
    _edge_files(tmp_path)
    _assert_same(tmp_path, monkeypatch)


def test_merge_order_is_heapq_merge_of_unsorted_files() -> None:
    rng = random.Random(7)
    for _ in range(200):
        files = [
            [rng.randrange(20) for _ in range(rng.randrange(0, 12))]
            for _ in range(rng.randrange(1, 5))
        ]
        tagged = [[(t, f, i) for i, t in enumerate(ts)] for f, ts in enumerate(files)]
        expected = [(f, i) for _t, f, i in heapq.merge(*tagged, key=lambda x: x[0])]
        batches = [FileBatch(Path(str(f)), "x", np.array(ts, dtype=np.int64))
                   for f, ts in enumerate(files)]  # fmt: skip
        m = merge_order(batches)
        got: list[tuple[int, int]] = [(0, 0)] * len(expected)
        for f, ts in enumerate(files):
            for i in range(len(ts)):
                got[int(m.rank[m.offsets[f] + i])] = (f, i)
        assert got == expected


class _Observer:
    """Duck-typed SeriesRecorder: keeps every observed score and the updates it follows."""

    def __init__(self) -> None:
        self.calls: list[Any] = []
        self.updates: list[Any] = []
        self.finished = 0

    def follow(self, updates: list[Any]) -> None:
        self.updates = updates

    def __call__(self, signal: Any, seg: Any, t: int, x: Any, score: float, *rest: Any) -> None:
        self.calls.append((signal.name, seg.label, t, sorted(x.items()), score, rest[0]))

    def finish(self) -> None:
        self.finished += 1


@pytest.mark.parametrize("jobs", [1, 2])
def test_warm_start_and_observer_same_as_per_record_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: int
) -> None:
    sent = _in_processes(monkeypatch) if jobs > 1 else []
    history, source = tmp_path / "history", tmp_path / "input"
    generate(build_plan(scenario="calm", seed=8, days=0.04, rate=10.0), history)
    later = build_plan(
        scenario="qiwi", seed=9, days=0.04, rate=10.0, onset_hour=1.3, duration_minutes=30,
        start="2025-10-19T01:00:00Z",
    )  # fmt: skip
    generate(later, source)
    results = []
    for fn in (run, functools.partial(run_fast, jobs=jobs)):
        seen: list[Any] = []
        observer = _Observer()
        result = fn(source, W, LATE, progress=False, warm_start=history, recorder=observer,
                    on_history=lambda h, seen=seen: seen.append(h.line()))  # type: ignore[arg-type]  # fmt: skip
        assert observer.updates is result[0].updates and observer.finished == 1
        results.append((_summary(result), seen, observer.calls))
    (slow, slow_history, slow_calls), (fast, fast_history, fast_calls) = results
    assert fast == slow and fast_history == slow_history and fast_calls == slow_calls
    assert slow_history and slow_calls
    assert len(sent) >= 2 if jobs > 1 else not sent


def test_files_read_in_processes_get_the_codes_of_one_shared_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each process counts with tables of its own; adopted in file order, every file's
    cells, accounts and OTP codes get the codes one table (of cells; of ids, per family)
    filled file after file gives."""
    generate(build_plan(scenario="shopee", seed=5, days=0.03, rate=10.0, onset_hour=0.2,
                        duration_minutes=10), tmp_path / "a")  # fmt: skip
    generate(build_plan(scenario="qiwi", seed=6, days=0.03, rate=10.0, onset_hour=0.2,
                        duration_minutes=10), tmp_path / "b")  # fmt: skip
    for path in (tmp_path / "b").iterdir():  # a second file per family: codes seen twice
        path.rename(tmp_path / "a" / f"{path.name.split('.')[0]}.2.jsonl")
    files = [p for p in traffic_files(tmp_path / "a") if not p.name.endswith(".json")]
    cells, ids = fastload._Cells(), {family: fastload._Codes() for family in fastload.WINDOWED}
    expected = []
    for path in files:  # the reference: one table for every file, in file order
        batch = load_file(path)
        rows = fastload._Rows(batch.fast, [])
        table = ids.get(batch.family, fastload._Codes())
        expected.append(fastload._count(batch.family, rows, cells, table) if batch.fast else None)
    sent = _in_processes(monkeypatch)
    got_cells = fastload._Cells()
    got_ids: dict[str, fastload._Codes] = {}
    batches = [
        fastload._adopt(loaded, got_cells, got_ids) for loaded in fastload.load_counted(files, 2)
    ]
    assert sent and len(sent) < len(files)  # both processes read files
    assert got_cells.keys == cells.keys and got_cells.family == cells.family
    assert {f: list(t) for f, t in got_ids.items() if t} == {
        f: list(t) for f, t in ids.items() if t
    }
    assert len(ids["balances"]) > 100 and len(ids["otp"]) > 100
    for want, batch in zip(expected, batches, strict=True):
        if want is None:
            assert batch.counted is None
            continue
        got = batch.counted
        assert got is not None
        for name in ("event_time", "cell", "account", "code", "stage"):
            a, b = getattr(want, name), getattr(got, name)
            assert (a is None and b is None) or np.array_equal(a, b), (batch.path.name, name)
        for a, b in zip(want.updates, got.updates, strict=True):
            assert np.array_equal(a, b)


_PARENT = os.getpid()
_LOAD_MANY = fastload._load_many


def _die_in_child(paths: list[Path], slot: int = 0) -> list[Any]:
    if os.getpid() != _PARENT:
        os._exit(9)  # as if killed for memory
    return _LOAD_MANY(paths, slot)


def test_a_reading_process_that_dies_is_an_error_naming_its_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _edge_files(tmp_path)
    _in_processes(monkeypatch)
    monkeypatch.setattr(fastload, "_load_many", _die_in_child)
    with pytest.raises(RadarError, match=r"the process reading .*\.jsonl.* --jobs 1"):
        run_fast(tmp_path, W, LATE, progress=False, jobs=2)


def test_files_are_shared_by_their_estimated_records_not_their_bytes(tmp_path: Path) -> None:
    short = tmp_path / "balances.jsonl"  # 3,000 records of 21 bytes
    short.write_bytes(b'{"short": "record"}\n\n' * 3000)
    long = tmp_path / "transactions.jsonl"  # 1,000 records of 101 bytes: more bytes, less work
    long.write_bytes((b'{"long": "' + b"x" * 88 + b'"}\n') * 1000)
    packed = tmp_path / "otp.jsonl.gz"  # 2,000 records, uncompressed size from the trailer
    packed.write_bytes(gzip.compress(b'{"otp": 1}\n' * 2000))
    assert long.stat().st_size > short.stat().st_size
    estimates = {p: fastload.records_estimate(p) for p in (short, long, packed)}
    assert estimates[short] == pytest.approx(6000, rel=0.01)  # blank lines are lines too
    assert estimates[long] == pytest.approx(1000, rel=0.01)
    assert estimates[packed] == pytest.approx(2000, rel=0.01)
    assert fastload.share_out(estimates, 2) == [[short], [packed, long]]
    missing = tmp_path / "logins.jsonl"
    assert fastload.records_estimate(missing) == 0.0  # reading it later reports the error
    broken = tmp_path / "complaints.jsonl.gz"
    broken.write_bytes(b"not gzip at all")
    assert fastload.records_estimate(broken) == len(b"not gzip at all")


@pytest.mark.parametrize("jobs", [1, 2])
def test_reading_reports_the_bytes_read_by_every_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: int
) -> None:
    _edge_files(tmp_path)  # bad lines too: some files are read again line by line
    sent = _in_processes(monkeypatch) if jobs > 1 else []
    monkeypatch.setattr(fastload, "PROGRESS_LINES", 50)
    files = [p for p in traffic_files(tmp_path) if not p.name.endswith(".json")]
    told: list[int] = []
    fastload.load_counted(files, jobs, told.append)
    assert told[-1] == sum(p.stat().st_size for p in files)  # the other process's bytes too
    assert told == sorted(told)  # never backwards
    assert len(set(told)) > 2 * len(files)  # within files, not only at their ends
    assert len(sent) >= 2 if jobs > 1 else not sent


def test_evaluate_shows_its_reading_then_its_windows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from streams import progress

    generate(build_plan(scenario="calm", seed=8, days=0.02, rate=10.0), tmp_path)
    monkeypatch.setattr(progress, "LOG_INTERVAL", 0.0)  # a line at every update
    run_fast(tmp_path, W, LATE, progress=True)
    lines = capsys.readouterr().err.splitlines()
    reading = [line for line in lines if " MB read, " in line]
    total = sum(p.stat().st_size for p in traffic_files(tmp_path) if p.suffix == ".jsonl")
    assert reading and reading[-1].endswith(f"100 % of {total / 1e6:,.0f} MB"), lines
    windows = [i for i, line in enumerate(lines) if " windows, " in line]
    assert windows and min(windows) > lines.index(reading[-1])


def test_a_warm_start_shows_its_own_reading_and_windows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from streams import progress

    history, source = tmp_path / "history", tmp_path / "input"
    generate(build_plan(scenario="calm", seed=8, days=0.02, rate=10.0), history)
    generate(build_plan(scenario="calm", seed=9, days=0.02, rate=10.0,
                        start="2025-10-19T01:00:00Z"), source)  # fmt: skip
    monkeypatch.setattr(progress, "LOG_INTERVAL", 0.0)
    run_fast(source, W, LATE, progress=True, warm_start=history)
    lines = capsys.readouterr().err.splitlines()
    assert any(line.startswith("warm start: ") and " MB read, " in line for line in lines)
    assert any(line.startswith("warm start: ") and " windows, " in line for line in lines)
    assert any(line.startswith("evaluate: ") and " windows, " in line for line in lines)
    run_fast(source, W, LATE, progress=False, warm_start=history)
    assert capsys.readouterr().err == ""
