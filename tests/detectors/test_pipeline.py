"""OfflinePipeline end to end: OTP lifecycle records -> extractor -> windows -> engine."""

from __future__ import annotations

from typing import Any

import numpy as np

from detectors.engine import DetectionEngine, Segment
from detectors.pipeline import OfflinePipeline
from detectors.signals import OTP_DEADLINE_MS

W, LATE = 10_000, 5_000
T0 = 1_760_860_800_000
MIN = 60_000
OPERATORS = ("viettel", "mobifone", "vinaphone")
ONSET = 40 * MIN


def otp_records(seed: int, minutes: int, undelivered: str | None, unused: bool) -> list[Any]:
    """Codes requested at 2 a second per operator, delivered (97.5 %) ~3.5 s later, typed in
    by 80 % of their users within the 5-minute lifetime, the others expire. From ``ONSET``:
    ``undelivered``'s codes are 90 % not delivered; with ``unused``, nobody types codes in."""
    rng = np.random.default_rng(seed)
    out: list[tuple[int, dict[str, Any]]] = []
    for op in OPERATORS:
        n = int(rng.poisson(2 * 60 * minutes))
        for i, at in enumerate(np.sort(rng.uniform(0, minutes * MIN, n)).astype(np.int64)):
            t = T0 + int(at)
            code = f"{op}-{i}"
            after = at >= ONSET
            delivered = rng.random() < (0.1 if after and op == undelivered else 0.975)
            latency = 400 + int(rng.lognormal(np.log(3500.0), 0.6))
            used = delivered and rng.random() < (0.0 if after and unused else 0.8)
            base = {"service": "wallet", "otp_id": code, "operator": op, "provider": "sms"}
            out.append((t, {**base, "event_time": t, "stage": "requested"}))
            out.append((t + 400, {**base, "event_time": t + 400, "stage": "sent"}))
            if delivered:
                stamp = t + latency
                out.append((stamp, {**base, "event_time": stamp, "stage": "delivered",
                                    "latency_ms": latency}))  # fmt: skip
            if used:
                stamp = t + latency + 10_000
                out.append((stamp, {**base, "event_time": stamp, "stage": "verified"}))
            else:
                stamp = t + 300_000
                out.append((stamp, {**base, "event_time": stamp, "stage": "expired"}))
    out.sort(key=lambda e: e[0])
    return [r for _, r in out]


def delivery_opens(records: list[Any]) -> list[tuple[int, Segment]]:
    pipeline = OfflinePipeline(W, LATE, engine=DetectionEngine(W))
    for r in records:
        pipeline.add("otp", r)
    updates = pipeline.finish()
    return sorted(
        {
            (a.window_start_ms, a.segment)
            for u in updates
            for a in u.anomalies
            if a.action == "open" and a.signal.name == "otp.delivery_ratio"
        }
    )


def test_an_operator_that_stops_delivering_is_found_within_its_deadline_and_two_windows() -> None:
    for seed in range(3):
        opens = delivery_opens(otp_records(seed, 50, "mobifone", unused=False))
        assert opens, f"seed {seed}: the operator's outage was not found"
        assert {seg for _, seg in opens} == {Segment("wallet", "operator", "mobifone")}
        first = opens[0][0] - T0
        # Long before any undelivered code expires (5 minutes): its deadline and two windows.
        assert ONSET <= first <= ONSET + OTP_DEADLINE_MS + 2 * W, (seed, first - ONSET)


def test_delivered_codes_nobody_types_in_are_not_a_delivery_failure() -> None:
    # From ONSET every delivered code expires unused: outcomes move (far more expiries), but
    # the codes were delivered, in time.
    for seed in range(3):
        assert delivery_opens(otp_records(seed, 50, None, unused=True)) == []


def test_steady_codes_open_nothing() -> None:
    for seed in range(3):
        assert delivery_opens(otp_records(seed, 50, None, unused=False)) == []
