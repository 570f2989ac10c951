"""Each scenario's incident is visible in its own data; calm stays calm; every record is valid.

Every scenario runs once (module fixtures, a seed no other test uses) over a few hours around
its incident at a small rate. Checks compare a signal inside the labelled window with the same
signal outside it, for the labelled segment, with generic thresholds ("at least 5x the
baseline", "drops by at least half"), never values fitted to one seed.
"""

from __future__ import annotations

import itertools
import json
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from simulator import TOPICS, build_plan, simulate
from streams.traffic import line_for
from streams.validation import decode

Record = tuple[int, str, dict[str, Any]]
ALL = ("wallet", "shop", "food", "pay")
MIN = 60_000


@dataclass
class Run:
    dir: Path
    labels: list[dict[str, Any]]
    benign: list[dict[str, Any]]
    lines: dict[str, list[str]]
    records: dict[str, list[Record]]

    @property
    def label(self) -> dict[str, Any]:
        assert len(self.labels) == 1
        return self.labels[0]

    def inside(self, ts: int) -> bool:
        return self.label["start"] <= ts < self.label["end"]


def _run(tmp: pytest.TempPathFactory, name: str, **options: Any) -> Run:
    out = tmp.mktemp(name)
    simulate(build_plan(**options), out)
    lines: dict[str, list[str]] = {}
    records: dict[str, list[Record]] = {}
    for topic in TOPICS:
        text = (out / f"{topic}.jsonl").read_text(encoding="utf-8")
        lines[topic] = text.splitlines()
        parsed = [json.loads(line) for line in lines[topic]]
        records[topic] = [(r["timestamp"], r["key"], r["value"]) for r in parsed]
    return Run(
        out,
        json.loads((out / "labels.json").read_text()),
        json.loads((out / "benign.json").read_text()),
        lines,
        records,
    )


RUNS: dict[str, dict[str, Any]] = {
    # scenario -> options: a few hours around the incident, a seed used nowhere else
    "momo": dict(
        seed=101, start="2025-10-19T07:00:00Z", days=4.5 / 24, rate=4, duration_minutes=120
    ),
    "mpesa": dict(
        seed=202, start="2025-10-20T09:00:00Z", days=3.5 / 24, rate=5, duration_minutes=90
    ),
    "shopee": dict(
        seed=303, start="2025-10-21T10:00:00Z", days=3.5 / 24, rate=4, duration_minutes=120
    ),
    "qiwi": dict(seed=404, start="2025-10-22T14:00:00Z", days=3.5 / 24, rate=5),
    "io": dict(seed=505, start="2025-10-23T06:00:00Z", days=3 / 24, rate=3, duration_minutes=90),
    "calm": dict(seed=606, start="2025-10-19T00:00:00Z", days=1, rate=1.5),
}


@pytest.fixture(scope="module", params=list(RUNS))
def any_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Run:
    return _cached(request.param, tmp_path_factory)


_CACHE: dict[str, Run] = {}


def _cached(name: str, tmp: pytest.TempPathFactory) -> Run:
    if name not in _CACHE:
        _CACHE[name] = _run(tmp, name, scenario=name, **RUNS[name])
    return _CACHE[name]


class Runs:
    """Scenario name -> its run, simulated on first use (once per module)."""

    def __init__(self, tmp: pytest.TempPathFactory) -> None:
        self.tmp = tmp

    def __getitem__(self, name: str) -> Run:
        return _cached(name, self.tmp)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    yield Runs(tmp_path_factory)
    _CACHE.clear()


def ratio(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


# -- every scenario: contracts of the output ---------------------------------------------------


def test_every_topic_has_a_file_in_time_order(any_run: Run) -> None:
    for topic in TOPICS:
        times = [ts for ts, _, _ in any_run.records[topic]]
        assert all(a <= b for a, b in itertools.pairwise(times)), topic
        assert all(ts == v["event_time"] for ts, _, v in any_run.records[topic]), topic
    for topic in ("transactions", "logins", "otp", "balances", "requests"):
        assert any_run.records[topic], f"{topic} is empty"


def test_records_validate_and_match_the_canonical_line(any_run: Run) -> None:
    for topic in TOPICS:
        lines = any_run.lines[topic]
        if not lines:
            continue
        sample = sorted({0, len(lines) - 1, *range(0, len(lines), 7)} - {-1})
        for i in sample:
            obj = json.loads(lines[i])
            raw = json.dumps(obj["value"]).encode()
            decode(topic, raw, max_bytes=1_000_000)  # raises InvalidRecord if not
            assert obj["topic"] == topic
            assert line_for(topic, obj["key"], obj["timestamp"], obj["value"]) == lines[i]


def test_keys_are_segment_strings(any_run: Run) -> None:
    def key_of(topic: str, v: dict[str, Any]) -> str:
        if topic == "transactions":
            return f"{v['service']}|{v['partner_bank'] or '-'}|{v['region']}|{v['channel']}"
        if topic == "logins":
            return f"{v['service']}|{v['region']}"
        if topic == "otp":
            return f"{v['service']}|{v['operator']}|{v['provider']}"
        if topic == "balances":
            return str(v["account_id"])
        if topic == "complaints":
            return f"{v['service']}|{v['category']}"
        if topic == "requests":
            return f"{v['service']}|{v['section']}"
        return str(v["service"])

    for topic in TOPICS:
        for _, key, value in any_run.records[topic]:
            assert key == key_of(topic, value), (topic, key)


def test_ids_unique_and_labels_well_formed(any_run: Run) -> None:
    for topic in TOPICS:
        ids = [v["event_id"] for _, _, v in any_run.records[topic]]
        assert len(ids) == len(set(ids)), topic
    for label in any_run.labels:
        assert isinstance(label["id"], str) and label["id"]
        assert isinstance(label["start"], int) and isinstance(label["end"], int)
        assert label["start"] < label["end"]
        assert label["segments"] and all(
            isinstance(seg, dict)
            and "service" in seg
            and all(isinstance(x, str) for x in seg.values())
            for seg in label["segments"]
        )
        assert isinstance(label["cause"], str) and label["cause"]
        assert isinstance(label["description"], str) and label["description"]


def test_otp_lifecycle_and_pending_transfers_are_consistent(any_run: Run) -> None:
    stages: dict[str, list[str]] = defaultdict(list)
    for _, _, v in any_run.records["otp"]:
        stages[v["otp_id"]].append(v["stage"])
    for seq in stages.values():
        if seq[0] != "requested":
            continue  # requested before the run: none, the first slice starts the run
        assert seq.count("requested") == 1
        assert "verified" not in seq or "delivered" in seq
        assert not ("verified" in seq and "expired" in seq)
    first: dict[str, str] = {}
    for _, _, v in any_run.records["transactions"]:
        tx = v["transaction_id"]
        if tx in first:
            assert first[tx] == "pending", "only a pending transaction gets a second record"
            assert v["status"] in ("success", "completed_late", "failed")
        else:
            first[tx] = v["status"]


def test_balances_chain_and_reads_show_them(any_run: Run) -> None:
    last: dict[str, int] = {}
    tx_ids = {v["transaction_id"] for _, _, v in any_run.records["transactions"]}
    glitch = [(lab["start"], lab["end"]) for lab in any_run.labels if lab["scenario"] == "momo"]
    reads = 0
    for ts, _, v in any_run.records["balances"]:
        acc = v["account_id"]
        if v["kind"] == "change":
            assert v["transaction_id"] in tx_ids, "every change is explained"
            assert v["balance"] >= 0
            if acc in last:
                assert v["previous_balance"] == last[acc]
            last[acc] = v["balance"]
        elif v["kind"] == "read" and acc in last and not any(a <= ts < b for a, b in glitch):
            assert v["balance"] == last[acc], "a read shows the balance"
            reads += 1
    assert reads > 0


# -- momo ----------------------------------------------------------------------------------------


def _funded_zero_reads(run: Run) -> Counter[bool]:
    """Reads of 0 for accounts seen funded before (inside / outside the label)."""
    funded: set[str] = set()
    zeros: Counter[bool] = Counter()
    for ts, _, v in run.records["balances"]:
        if v["kind"] not in ("read", "change"):
            continue
        if v["kind"] == "read" and v["balance"] == 0 and v["account_id"] in funded:
            zeros[bool(run.label and run.inside(ts))] += 1
        if v["balance"] > 0:
            funded.add(v["account_id"])
    return zeros


def test_momo(runs: Runs) -> None:
    run = runs["momo"]
    label = run.label
    assert label["cause"] == "login_outage" and label["segments"] == [{"service": "wallet"}]
    tries: Counter[tuple[bool, str]] = Counter()
    fails: Counter[tuple[bool, str]] = Counter()
    for ts, _, v in run.records["logins"]:
        if v["service"] == "wallet" and v["outcome"] != "forced_logout":
            tries[run.inside(ts), v["region"]] += 1
            fails[run.inside(ts), v["region"]] += v["outcome"] == "failure"
    regions = sorted({r for _, r in tries})
    assert len(regions) >= 3
    for region in regions:  # nationwide: every region at once
        inside = ratio(fails[True, region], tries[True, region])
        outside = ratio(fails[False, region], tries[False, region])
        assert inside >= max(0.3, 5 * outside), region

    ok: Counter[bool] = Counter()
    done: Counter[bool] = Counter()
    for ts, _, v in run.records["transactions"]:
        if v["service"] == "wallet" and v["status"] in ("success", "failed"):
            done[run.inside(ts)] += 1
            ok[run.inside(ts)] += v["status"] == "success"
    assert ratio(ok[True], done[True]) <= 0.5 * ratio(ok[False], done[False])

    zeros = _funded_zero_reads(run)
    assert zeros[True] >= 20 and zeros[False] == 0
    removed = Counter(
        run.inside(ts)
        for ts, _, v in run.records["balances"]
        if v["kind"] == "bank_link_removed" and v["initiated_by"] == "system"
    )
    assert removed[True] >= 5 and removed[False] == 0

    minutes_in = (label["end"] - label["start"]) / MIN
    minutes_out = (
        run.records["requests"][-1][0] - run.records["requests"][0][0]
    ) / MIN - minutes_in
    complaints = Counter(run.inside(ts) for ts, _, _ in run.records["complaints"])
    assert complaints[True] / minutes_in >= 3 * complaints[False] / minutes_out

    late = [
        v
        for ts, _, v in run.records["maintenance"]
        if v["service"] == "wallet" and ts > label["start"]
    ]
    assert late, "the maintenance is acknowledged after the onset"
    assert all(v["end_time"] < label["end"] for v in late), "and the real end overruns it"


# -- mpesa ---------------------------------------------------------------------------------------


def test_mpesa(runs: Runs) -> None:
    run = runs["mpesa"]
    label = run.label
    assert label["cause"] == "partner_bank_transfer_delay"
    banks = [seg["partner_bank"] for seg in label["segments"]]
    assert 1 <= len(banks) <= 2
    first: dict[str, tuple[int, str, str]] = {}  # transaction -> (time, bank, first status)
    settled: dict[str, tuple[int, str]] = {}
    for ts, _, v in run.records["transactions"]:
        if v["type"] not in ("transfer_in", "topup") or v["service"] != "wallet":
            continue
        if v["transaction_id"] in first:
            settled[v["transaction_id"]] = (ts, v["status"])
        else:
            first[v["transaction_id"]] = (ts, v["partner_bank"], v["status"])
    last = run.records["transactions"][-1][0]
    total: Counter[tuple[bool, str]] = Counter()
    slow: Counter[tuple[bool, str]] = Counter()
    outcomes: Counter[str] = Counter()
    for tx, (ts, bank, status) in first.items():
        if ts > last - 10 * MIN:
            continue  # too close to the end to tell
        total[run.inside(ts), bank] += 1
        if status != "pending":
            continue
        end = settled.get(tx)
        slow[run.inside(ts), bank] += end is None or end[0] - ts > 10 * MIN
        if end is not None and run.inside(ts) and bank in banks:
            outcomes[end[1]] += 1
    baseline = ratio(sum(slow[False, b] for b in banks), sum(total[False, b] for b in banks))
    for bank in banks:  # pending longer than 10 minutes
        assert ratio(slow[True, bank], total[True, bank]) >= max(0.3, 10 * baseline), bank
    others = sorted({b for _, b in total if b not in banks})
    assert others
    for bank in others:  # the other banks are fine
        assert ratio(slow[True, bank], total[True, bank]) < 0.05, bank
    # pending, then completed late: few outright failures
    assert outcomes["completed_late"] > 0
    assert outcomes["failed"] <= 0.15 * sum(outcomes.values())


# -- shopee --------------------------------------------------------------------------------------


def test_shopee(runs: Runs) -> None:
    run = runs["shopee"]
    label = run.label
    services = {seg["service"] for seg in label["segments"]}
    assert len(services) >= 2, "many products together"
    tries: Counter[tuple[bool, str]] = Counter()
    forced: Counter[tuple[bool, str]] = Counter()
    unregistered: Counter[tuple[bool, str]] = Counter()
    for ts, _, v in run.records["logins"]:
        key = (run.inside(ts), v["service"])
        if v["outcome"] == "forced_logout":
            forced[key] += 1
        else:
            tries[key] += 1
            unregistered[key] += v["reason"] == "account_not_registered"

    def normal(counts: Counter[tuple[bool, str]]) -> float:  # outside, every service
        return ratio(sum(counts[False, s] for s in ALL), sum(tries[False, s] for s in ALL))

    for service in sorted(services):
        assert ratio(forced[True, service], tries[True, service]) >= 5 * normal(forced)
        assert ratio(unregistered[True, service], tries[True, service]) >= max(
            0.1, 5 * normal(unregistered)
        )

    for service in sorted(services):
        requested: dict[str, int] = {}
        sent: Counter[bool] = Counter()
        delivered: Counter[bool] = Counter()
        for ts, _, v in run.records["otp"]:
            if v["service"] != service:
                continue
            if v["stage"] == "requested":
                requested[v["otp_id"]] = ts
            elif v["otp_id"] in requested and v["stage"] in ("sent", "delivered"):
                where = run.inside(requested[v["otp_id"]])
                (sent if v["stage"] == "sent" else delivered)[where] += 1
        lost_in = 1 - ratio(delivered[True], sent[True])
        lost_out = 1 - ratio(delivered[False], sent[False])
        assert lost_in >= max(0.2, 5 * lost_out)

        paid: Counter[bool] = Counter()
        tried: Counter[bool] = Counter()
        for ts, _, v in run.records["transactions"]:
            if v["service"] == service and v["type"] in ("payment", "purchase"):
                tried[run.inside(ts)] += 1
                paid[run.inside(ts)] += v["status"] == "success"
        assert ratio(paid[True], tried[True]) <= 0.5 * ratio(paid[False], tried[False])

    # refunds are slow: settled long after they were made
    made: dict[str, int] = {}
    delays: list[int] = []
    for ts, _, v in run.records["transactions"]:
        if v["type"] == "refund" and v["service"] in services:
            if v["transaction_id"] in made:
                delays.append(ts - made[v["transaction_id"]])
            elif run.inside(ts) and v["status"] == "pending":
                made[v["transaction_id"]] = ts
    assert len(made) >= 10 and (not delays or statistics.median(delays) > 30 * MIN)

    # the wallet is not part of it
    tries_w: Counter[bool] = Counter()
    fails_w: Counter[bool] = Counter()
    for ts, _, v in run.records["logins"]:
        if v["service"] == "wallet" and v["outcome"] != "forced_logout":
            tries_w[run.inside(ts)] += 1
            fails_w[run.inside(ts)] += v["outcome"] == "failure"
    assert ratio(fails_w[True], tries_w[True]) <= 2 * ratio(fails_w[False], tries_w[False]) + 0.02


# -- qiwi ----------------------------------------------------------------------------------------


def test_qiwi(runs: Runs) -> None:
    run = runs["qiwi"]
    label = run.label
    operators = {seg["operator"] for seg in label["segments"]}
    assert len(operators) == 1
    (operator,) = operators
    requested: dict[str, int] = {}
    sent: Counter[tuple[bool, str]] = Counter()
    delivered: Counter[tuple[bool, str]] = Counter()
    latency: dict[tuple[bool, bool], list[float]] = defaultdict(list)
    for ts, _, v in run.records["otp"]:
        if v["stage"] == "requested":
            requested[v["otp_id"]] = ts
            continue
        if v["otp_id"] not in requested:
            continue
        where = run.inside(requested[v["otp_id"]])
        if v["stage"] == "sent":
            sent[where, v["operator"]] += 1
        elif v["stage"] == "delivered":
            delivered[where, v["operator"]] += 1
            latency[where, v["operator"] == operator].append(v["latency_ms"])
    ops = sorted({op for _, op in sent})
    assert len(ops) >= 3
    ratio_in = {op: ratio(delivered[True, op], sent[True, op]) for op in ops}
    ratio_out = {op: ratio(delivered[False, op], sent[False, op]) for op in ops}
    others = [op for op in ops if op != operator]
    assert ratio_in[operator] <= 0.5 * min(ratio_in[op] for op in others)
    assert ratio_out[operator] >= 0.9
    for op in others:  # the other operators stay normal
        assert ratio_in[op] >= 0.9 * ratio_out[op], op
    assert statistics.median(latency[True, True]) >= 3 * statistics.median(latency[True, False])


# -- io ------------------------------------------------------------------------------------------


def test_io(runs: Runs) -> None:
    run = runs["io"]
    label = run.label
    assert label["cause"] == "section_overload"
    sections = {seg["section"] for seg in label["segments"]}
    req: Counter[tuple[bool, str]] = Counter()
    err: Counter[tuple[bool, str]] = Counter()
    down: Counter[tuple[bool, str]] = Counter()
    p50: dict[tuple[bool, str], list[float]] = defaultdict(list)
    for ts, _, v in run.records["requests"]:
        key = (run.inside(ts), v["section"])
        req[key] += v["requests"]
        err[key] += v["errors"]
        down[key] += v["downstream_errors"]
        if v["requests"]:
            p50[key].append(v["latency_ms_p50"])
    all_sections = sorted({s for _, s in req})
    calm = [s for s in all_sections if s.startswith("shop.")]

    def share(inside: bool, section: str) -> float:  # relative to unaffected sections
        return req[inside, section] / sum(req[inside, s] for s in calm)

    for section in sorted(sections):
        assert share(True, section) >= 6 * share(False, section), section
        err_in = ratio(err[True, section], req[True, section])
        assert err_in >= max(0.1, 10 * ratio(err[False, section], req[False, section]))
        assert statistics.median(p50[True, section]) >= 3 * statistics.median(p50[False, section])
        assert down[True, section] >= 10 * max(1, down[False, section])
    for section in all_sections:  # the rest of the app is fine
        if section in sections:
            continue
        err_in = ratio(err[True, section], req[True, section])
        assert err_in <= 2 * ratio(err[False, section], req[False, section]) + 0.005, section


# -- calm ----------------------------------------------------------------------------------------


def test_calm_has_no_labels_and_normal_signals(runs: Runs) -> None:
    run = runs["calm"]
    assert run.labels == []
    kinds = {b["kind"] for b in run.benign}
    assert {"marketing_surge", "announced_maintenance", "slow_bank_hour"} <= kinds
    maintenance = [
        (v["service"], v["start_time"], v["end_time"])
        for _, _, v in run.records["maintenance"]
        if v.get("status") == "completed"
    ]
    assert maintenance, "the announced maintenance starts and ends on time"

    def declared(service: str, ts: int) -> bool:
        return any(s == service and a <= ts < b for s, a, b in maintenance)

    hour = 3_600_000

    def hourly_rates(topic: str, group: str, good: Any, bad: Any) -> list[tuple[float, int]]:
        n: Counter[tuple[int, str]] = Counter()
        m: Counter[tuple[int, str]] = Counter()
        for ts, _, v in run.records[topic]:
            if declared(v.get("service", ""), ts):
                continue
            if good(v) or bad(v):
                n[ts // hour, v[group]] += 1
                m[ts // hour, v[group]] += bool(bad(v))
        return [(m[k] / n[k], n[k]) for k in n if n[k] >= 100]

    for rate, _ in hourly_rates(
        "logins",
        "service",
        lambda v: v["outcome"] == "success",
        lambda v: v["outcome"] == "failure",
    ):
        assert rate < 0.1
    for rate, _ in hourly_rates(
        "transactions",
        "service",
        lambda v: v["status"] == "success",
        lambda v: v["status"] == "failed",
    ):
        assert rate < 0.1
    for rate, _ in hourly_rates(
        "otp", "operator", lambda v: v["stage"] == "delivered", lambda v: v["stage"] == "sent"
    ):
        assert rate < 0.6  # sent / (sent + delivered): about half when every code arrives
    req: Counter[tuple[int, str]] = Counter()
    err: Counter[tuple[int, str]] = Counter()
    for ts, _, v in run.records["requests"]:
        if not declared(v["service"], ts):
            req[ts // hour, v["section"]] += v["requests"]
            err[ts // hour, v["section"]] += v["errors"]
    assert all(err[k] / req[k] < 0.02 for k in req if req[k] >= 200)
    assert _funded_zero_reads(run)[False] == 0
    assert not any(v.get("initiated_by") == "system" for _, _, v in run.records["balances"])
    # seasonality: the night trough is a small fraction of the peak
    per_hour = Counter((ts // hour) % 24 for ts, _, _ in run.records["transactions"])
    assert 0.03 <= per_hour[3] / per_hour[12] <= 0.25
    # complaints follow the traffic, no surge
    logins = Counter(ts // hour for ts, _, _ in run.records["logins"])
    complaints = Counter(ts // hour for ts, _, _ in run.records["complaints"])
    busy = [h for h in logins if logins[h] >= 300]
    per_login = [complaints[h] / logins[h] for h in busy]
    assert max(per_login) <= 3 * statistics.median(per_login)
