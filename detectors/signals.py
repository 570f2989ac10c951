"""What each input topic contributes to a window: its cells, its counters, its extractor.

A *family* is one input topic seen as counts. A validated record becomes one or more
``(service, cell key, counter index, amount)`` updates; stage 1 adds them into the window of the
record's event time. The same extractors run in the worker and in ``evaluate``, so both count
exactly the same things.

A cell key joins the family's dimensions with ``\\x1f``; a missing value is ``-``.

>>> fam = FAMILIES["logins"]
>>> list(fam.extract({"service": "wallet", "region": "north", "outcome": "failure",
...                   "reason": "account_not_registered"}))
[('wallet', 'wallet\\x1fnorth', 1, 1), ('wallet', 'wallet\\x1fnorth', 4, 1)]
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

SEP = "\x1f"
MISSING = "-"

Update = tuple[str, str, int, int]  # service, cell key, counter index, amount


@dataclass(frozen=True)
class Family:
    """One input topic as counts: cell dimensions, counter names and the extractor."""

    name: str
    dimensions: tuple[str, ...]
    counters: tuple[str, ...]
    #: None when the family needs state to extract (balances: see :class:`Extractor`).
    extract: Callable[[Mapping[str, Any]], Iterator[Update]] | None

    def index(self, counter: str) -> int:
        return self.counters.index(counter)


def _key(*parts: Any) -> str:
    return SEP.join(MISSING if p is None or p == "" else str(p) for p in parts)


def split_key(family: Family, key: str) -> dict[str, str]:
    """Cell key -> {dimension: value}."""
    return dict(zip(family.dimensions, key.split(SEP), strict=True))


# ----------------------------------------------------------------------------- transactions

TXN_COUNTERS = ("success", "failed", "pending", "completed_late", "late_latency_s")
_TXN = {name: i for i, name in enumerate(TXN_COUNTERS)}


def _transactions(r: Mapping[str, Any]) -> Iterator[Update]:
    service = r["service"]
    key = _key(service, r.get("partner_bank"), r["region"], r["channel"])
    status = r["status"]
    yield service, key, _TXN[status], 1
    if status == "completed_late":
        latency = r.get("latency_ms")
        if latency is not None:
            yield service, key, _TXN["late_latency_s"], int(latency // 1000)


# ----------------------------------------------------------------------------------- logins

LOGIN_REASONS = ("account_not_registered", "wrong_password", "server_error", "network")
LOGIN_COUNTERS = (
    "success",
    "failure",
    "forced_logout",
    "fail_other",
    *(f"fail_{r}" for r in LOGIN_REASONS),
)
_LOGIN = {name: i for i, name in enumerate(LOGIN_COUNTERS)}


def _logins(r: Mapping[str, Any]) -> Iterator[Update]:
    service = r["service"]
    key = _key(service, r["region"])
    outcome = r["outcome"]
    yield service, key, _LOGIN[outcome], 1
    if outcome == "failure":
        reason = f"fail_{r.get('reason')}"
        yield service, key, _LOGIN.get(reason, _LOGIN["fail_other"]), 1


# -------------------------------------------------------------------------------------- otp

OTP_STAGES = ("requested", "sent", "delivered", "verified", "expired", "failed")
OTP_COUNTERS = (*OTP_STAGES, "delivery_latency_s")
_OTP = {name: i for i, name in enumerate(OTP_COUNTERS)}


def _otp(r: Mapping[str, Any]) -> Iterator[Update]:
    service = r["service"]
    key = _key(service, r["operator"], r["provider"])
    stage = r["stage"]
    yield service, key, _OTP[stage], 1
    if stage == "delivered":
        latency = r.get("latency_ms")
        if latency is not None:
            yield service, key, _OTP["delivery_latency_s"], int(latency // 1000)


# --------------------------------------------------------------------------------- balances

BALANCE_COUNTERS = ("reads", "changes", "zero_unexplained", "link_removed_not_user", "links")
_BAL = {name: i for i, name in enumerate(BALANCE_COUNTERS)}


class AccountBalances:
    """Last known balance per account, bounded (least recently seen accounts are forgotten).

    The invariant: a funded account whose balance reads 0 with no change explaining it is a
    fault (MoMo, 19 October). Only accounts seen before can be judged; a forgotten or new
    account reading 0 is not a violation. Balances are keyed by account on the topic, so each
    account's events meet in one partition and this state is exact per partition.
    """

    def __init__(self, capacity: int = 1_000_000) -> None:
        self.capacity = capacity
        self._last: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._last)

    def observe(self, r: Mapping[str, Any]) -> Iterator[Update]:
        service = r["service"]
        key = _key(service, r.get("region"))
        kind = r["kind"]
        account = r["account_id"]
        if kind == "read":
            yield service, key, _BAL["reads"], 1
            balance = r.get("balance")
            if balance is None:
                return
            before = self._last.get(account)
            if balance == 0 and before is not None and before > 0:
                yield service, key, _BAL["zero_unexplained"], 1
                return  # a faulty read does not overwrite the known balance
            self._remember(account, float(balance))
        elif kind == "change":
            yield service, key, _BAL["changes"], 1
            balance = r.get("balance")
            if balance is not None:
                self._remember(account, float(balance))
        else:
            yield service, key, _BAL["links"], 1
            if kind == "bank_link_removed" and r.get("initiated_by") != "user":
                yield service, key, _BAL["link_removed_not_user"], 1

    def _remember(self, account: str, balance: float) -> None:
        self._last[account] = balance
        self._last.move_to_end(account)
        if len(self._last) > self.capacity:
            self._last.popitem(last=False)


# ------------------------------------------------------------------------------- complaints

COMPLAINT_CATEGORIES = ("login", "balance", "payment", "otp", "transfer", "other")
COMPLAINT_COUNTERS = ("total", *COMPLAINT_CATEGORIES)
_CMP = {name: i for i, name in enumerate(COMPLAINT_COUNTERS)}


def _complaints(r: Mapping[str, Any]) -> Iterator[Update]:
    service = r["service"]
    key = _key(service)
    yield service, key, _CMP["total"], 1
    yield service, key, _CMP.get(r["category"], _CMP["other"]), 1


# --------------------------------------------------------------------------------- requests

REQUEST_COUNTERS = ("requests", "errors", "downstream_errors")


def _requests(r: Mapping[str, Any]) -> Iterator[Update]:
    service = r["service"]
    key = _key(service, r["section"])
    requests = int(r["requests"])
    errors = min(int(r["errors"]), requests)
    yield service, key, 0, requests
    if errors:
        yield service, key, 1, errors
    downstream = r.get("downstream_errors")
    if downstream:
        yield service, key, 2, int(downstream)


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            "transactions", ("service", "partner_bank", "region", "channel"), TXN_COUNTERS,
            _transactions,
        ),
        Family("logins", ("service", "region"), LOGIN_COUNTERS, _logins),
        Family("otp", ("service", "operator", "provider"), OTP_COUNTERS, _otp),
        Family("balances", ("service", "region"), BALANCE_COUNTERS, None),
        Family("complaints", ("service",), COMPLAINT_COUNTERS, _complaints),
        Family("requests", ("service", "section"), REQUEST_COUNTERS, _requests),
    )
}  # fmt: skip


class Extractor:
    """Validated record of a family -> updates, with the state some families need."""

    def __init__(self, account_capacity: int = 1_000_000) -> None:
        self.balances = AccountBalances(account_capacity)

    def updates(self, family: str, record: Mapping[str, Any]) -> Iterator[Update]:
        extract = FAMILIES[family].extract
        if extract is None:  # balances: judged against each account's last known balance
            return self.balances.observe(record)
        return extract(record)
