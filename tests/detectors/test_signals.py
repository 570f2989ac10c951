"""detectors.signals: the stateful extractors (each OTP code's outcome at its deadline)."""

from __future__ import annotations

from typing import Any

from detectors.signals import (
    _OTP,
    BALANCE_COUNTERS,
    OTP_DEADLINE_MS,
    SEP,
    AccountBalances,
    Extractor,
    OtpDeadlines,
)

D = OTP_DEADLINE_MS


def test_a_code_is_in_time_when_delivered_or_verified_before_its_deadline() -> None:
    d: OtpDeadlines[str, str] = OtpDeadlines()
    d.step(0, "requested", "a", "x")
    d.step(0, "requested", "b", "y")
    assert d.step(D - 1, "verified", "b", "y") == [("y", True)]  # verified implies delivered
    assert d.step(D - 1, "delivered", "a", "x") == [("x", True)]
    assert d.step(D - 1, "verified", "a", "x") == []  # decided once
    assert len(d) == 0


def test_a_code_not_delivered_by_its_deadline_is_late_at_the_first_record_past_it() -> None:
    d: OtpDeadlines[str, str] = OtpDeadlines()
    d.step(0, "requested", "a", "x")
    assert d.step(D - 1, "sent", "z", "other") == []
    # Any record at or after the deadline decides it, in the code's own cell.
    assert d.step(D, "requested", "z", "other") == [("x", False)]
    assert d.step(D + 5, "delivered", "a", "x") == []  # too late, and counted already


def test_a_late_delivery_is_late_even_when_no_other_record_came_first() -> None:
    d: OtpDeadlines[str, str] = OtpDeadlines()
    d.step(0, "requested", "a", "x")
    assert d.step(D + 4_000, "delivered", "a", "x") == [("x", False)]


def test_failed_and_expired_codes_are_not_in_time() -> None:
    d: OtpDeadlines[str, str] = OtpDeadlines()
    d.step(0, "requested", "a", "x")
    d.step(0, "requested", "b", "x")
    assert d.step(100, "failed", "a", "x") == [("x", False)]
    assert d.step(200, "expired", "b", "x") == [("x", False)]


def test_a_delivered_code_nobody_types_in_is_delivered() -> None:
    # Its expiry, minutes later, is not a delivery failure.
    d: OtpDeadlines[str, str] = OtpDeadlines()
    d.step(0, "requested", "a", "x")
    assert d.step(3_000, "delivered", "a", "x") == [("x", True)]
    assert d.step(300_000, "expired", "a", "x") == []


def test_a_redelivered_request_does_not_start_its_code_again() -> None:
    d: OtpDeadlines[str, str] = OtpDeadlines()
    d.step(0, "requested", "a", "x")
    d.step(1_000, "requested", "a", "x")  # a duplicate while pending
    assert d.step(2_000, "delivered", "a", "x") == [("x", True)]
    d.step(3_000, "requested", "a", "x")  # a duplicate after the outcome
    assert d.step(10 * D, "verified", "z", "x") == []
    assert len(d) == 0


def test_records_of_codes_never_requested_nor_sent_decide_nothing() -> None:
    # A stream that starts after a code was sent: its delivery is not counted.
    d: OtpDeadlines[str, str] = OtpDeadlines()
    assert d.step(0, "delivered", "a", "x") == []
    assert d.step(0, "expired", "b", "x") == []


def test_without_requests_the_clock_starts_at_the_send() -> None:
    d: OtpDeadlines[str, str] = OtpDeadlines()
    d.step(0, "requested", "a", "x")
    d.step(400, "sent", "a", "x")  # already running: the request started it
    d.step(1_000, "sent", "b", "x")  # no request reported: the send starts it
    assert d.step(D, "sent", "z", "x") == [("x", False)]  # a, from its request
    assert d.step(D + 1_000, "delivered", "b", "x") == [("x", False)]  # b, from its send
    d.step(D + 2_000, "requested", "c", "x")
    d.step(D + 3_000, "delivered", "c", "x")
    assert d.step(D + 3_100, "sent", "c", "x") == []  # a send after the outcome starts nothing
    assert d.step(10 * D, "sent", "y", "x") == [("x", False)]  # only z was still pending


def test_outcomes_decided_by_one_record_come_in_deadline_then_request_order() -> None:
    d: OtpDeadlines[str, str] = OtpDeadlines()
    d.step(0, "requested", "a", "x")
    d.step(5, "requested", "b", "y")
    d.step(5, "requested", "c", "z")
    assert d.step(D + 10, "sent", "q", "w") == [("x", False), ("y", False), ("z", False)]


def test_state_is_bounded() -> None:
    d: OtpDeadlines[int, str] = OtpDeadlines(memory=100)
    for i in range(10_000):
        t = i * 100
        d.step(t, "requested", i, "x")
        if i % 2:
            d.step(t, "delivered", i, "x")
    assert len(d) <= D // 100 + 1  # pending: at most a deadline's worth of requests
    assert len(d._decided) == 100 and len(d._queue) <= D // 100 + 1


def _otp(t: int, stage: str, code: str, operator: str = "viettel") -> dict[str, Any]:
    return {"event_time": t, "service": "wallet", "stage": stage, "otp_id": code,
            "operator": operator, "provider": "twilio"}  # fmt: skip


def test_the_extractor_counts_the_stage_then_the_outcomes_it_decides() -> None:
    ex = Extractor()
    x = SEP.join(("wallet", "viettel", "twilio"))
    y = SEP.join(("wallet", "mobifone", "twilio"))
    assert list(ex.updates("otp", _otp(0, "requested", "a"))) == [("wallet", x, 0, 1)]
    list(ex.updates("otp", _otp(0, "requested", "b", "mobifone")))
    got = list(ex.updates("otp", {**_otp(2_500, "delivered", "a"), "latency_ms": 2_500}))
    assert got == [
        ("wallet", x, _OTP["delivered"], 1),
        ("wallet", x, _OTP["delivery_latency_s"], 2),
        ("wallet", x, _OTP["in_time"], 1),
    ]
    # A viettel record past b's deadline decides b, in b's (mobifone) cell.
    got = list(ex.updates("otp", _otp(D, "requested", "c")))
    assert got == [("wallet", x, _OTP["requested"], 1), ("wallet", y, _OTP["not_in_time"], 1)]


# ------------------------------------------------------------------- persisted account state


def _bal(account: str, balance: float | None, kind: str = "read") -> dict[str, Any]:
    rec: dict[str, Any] = {"service": "wallet", "kind": kind, "account_id": account}
    if balance is not None:
        rec["balance"] = balance
    return rec


def _zero_reads(state: AccountBalances, records: list[dict[str, Any]]) -> int:
    zero = BALANCE_COUNTERS.index("zero_unexplained")
    return sum(u[2] == zero for r in records for u in state.observe(r))


def test_tracked_accounts_are_new_ones_and_funded_flips_in_the_order_they_changed() -> None:
    state = AccountBalances(track=True)
    _zero_reads(state, [_bal("a", 10.0), _bal("b", 0.0), _bal("a", 7.5), _bal("c", None)])
    assert state.take_changed() == {"a": 10.0, "b": 0.0}  # c: no balance, nothing known
    assert state.take_changed() == {}
    _zero_reads(state, [_bal("b", 3.0, "change"), _bal("a", 0.0, "change"), _bal("b", 4.0)])
    assert list(state.take_changed().items()) == [("b", 3.0), ("a", 0.0)]
    # A zero read of a funded account is the fault, not a new balance: nothing to persist.
    assert _zero_reads(state, [_bal("b", 0.0)]) == 1
    assert state.take_changed() == {}


def test_an_account_flipping_back_is_noted_once_at_its_latest_balance() -> None:
    state = AccountBalances(track=True)
    _zero_reads(state, [_bal("a", 10.0), _bal("z", 1.0)])
    state.take_changed()
    _zero_reads(
        state, [_bal("a", 0.0, "change"), _bal("z", 0.0, "change"), _bal("a", 2.0, "change")]
    )
    assert list(state.take_changed().items()) == [("z", 0.0), ("a", 2.0)]


def test_untracked_state_notes_nothing() -> None:
    state = AccountBalances()
    _zero_reads(state, [_bal("a", 10.0), _bal("a", 0.0, "change")])
    assert state.take_changed() == {}


def test_recalled_balances_judge_zero_reads_as_the_live_state_would() -> None:
    """Replaying the noted changes into a fresh state gives the same judgements later."""
    live = AccountBalances(track=True)
    first = [_bal(f"a{i}", float(i % 3)) for i in range(30)]
    first += [_bal(f"a{i}", float(i % 2), "change") for i in range(0, 30, 4)]
    _zero_reads(live, first)
    restored = AccountBalances()
    for account, balance in live.take_changed().items():
        restored.recall(account, balance)
    assert restored.take_changed() == {}
    later = [_bal(f"a{i}", 0.0) for i in range(30)]
    assert _zero_reads(restored, later) == _zero_reads(live, later) > 0
