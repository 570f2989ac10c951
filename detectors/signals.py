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

import heapq
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

SEP = "\x1f"
MISSING = "-"

Update = tuple[str, str, int, int]  # service, cell key, counter index, amount
K = TypeVar("K", bound=Hashable)
C = TypeVar("C")


@dataclass(frozen=True)
class Family:
    """One input topic as counts: cell dimensions, counter names and the extractor."""

    name: str
    dimensions: tuple[str, ...]
    counters: tuple[str, ...]
    #: None when the family needs state to extract (OTP, balances: see :class:`Extractor`).
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
OTP_COUNTERS = (*OTP_STAGES, "delivery_latency_s", "in_time", "not_in_time")
_OTP = {name: i for i, name in enumerate(OTP_COUNTERS)}
#: A code requested this long ago and not delivered yet is counted as not delivered in time.
#: SMS codes arrive in seconds (simulated request-to-delivery: median 3.9 s, and 0.02 % of codes
#: over 30 s, 0.14 % at the slowest operator): a user still waiting after 30 s has met an outage.
OTP_DEADLINE_MS = 30_000
_STARTS = frozenset({"requested", "sent"})  # the first of them starts a code's clock
_REACHED = frozenset({"delivered", "verified"})  # the code reached the handset
_ENDED = frozenset({"expired", "failed"})  # the code will never reach it


def _otp(r: Mapping[str, Any]) -> Iterator[Update]:
    service = r["service"]
    key = _key(service, r["operator"], r["provider"])
    stage = r["stage"]
    yield service, key, _OTP[stage], 1
    if stage == "delivered":
        latency = r.get("latency_ms")
        if latency is not None:
            yield service, key, _OTP["delivery_latency_s"], int(latency // 1000)


class OtpDeadlines(Generic[K, C]):
    """Each requested code's outcome at its deadline: delivered within ``deadline_ms`` of its
    request (``in_time``), or not (``not_in_time``), counted once per code.

    An outcome is counted by the record that decides it, in that record's window: the
    delivery (or verification) of a pending code, its failure or expiry, or the first record
    at or after its deadline (a code nobody reports on is late once any later record shows
    the deadline has passed). So a code that is never delivered counts ``deadline_ms`` after
    its request, not when it expires minutes later, and a delivered code that its user never
    types in is still delivered. ``in_time`` of ``in_time + not_in_time`` is a ratio whose
    successes are a subset of its trials, whatever the delays.

    A code's clock starts at its ``requested`` record, or at its ``sent`` record for a
    producer that does not report requests (or a code requested before the stream began).

    State: the codes pending (at most ``deadline_ms`` of requests) and the last ``memory``
    codes decided (minutes of a busy partition's codes), so a redelivered ``requested`` (or a
    ``sent`` after the outcome) does not start a code twice. OTP records of one code must
    share a partition (key them by code, user or segment), as the balances of one account
    do. ``K`` is the code id, ``C`` the cell a code counts in (the extractor's ``(service,
    cell key)``).

    >>> d = OtpDeadlines(deadline_ms=30_000)
    >>> d.step(0, "requested", "a", "cell-x"), d.step(1_000, "requested", "b", "cell-y")
    ([], [])
    >>> d.step(4_000, "delivered", "a", "cell-x")
    [('cell-x', True)]
    >>> d.step(31_000, "sent", "c", "cell-x")  # b's deadline passed: not delivered in time
    [('cell-y', False)]
    >>> d.step(35_000, "delivered", "b", "cell-y")  # too late, and already counted
    []
    """

    def __init__(self, deadline_ms: int = OTP_DEADLINE_MS, memory: int = 100_000) -> None:
        self.deadline_ms = deadline_ms
        self.memory = memory
        self._pending: dict[K, tuple[int, C]] = {}
        self._queue: list[tuple[int, int, K]] = []  # (deadline, order, code)
        self._order = 0
        self._decided: OrderedDict[K, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pending)

    def step(self, t: int, stage: str, code: K, cell: C) -> list[tuple[C, bool]]:
        """One OTP record (event time ``t``): the outcomes it decides, as (cell, in time)."""
        out: list[tuple[C, bool]] = []
        queue, pending = self._queue, self._pending
        while queue and queue[0][0] <= t:  # deadlines passed: late, whatever comes next
            _deadline, _order, late = heapq.heappop(queue)
            entry = pending.pop(late, None)
            if entry is not None:
                out.append((entry[1], False))
                self._decide(late)
        if stage in _STARTS:
            if code not in pending and code not in self._decided:
                pending[code] = (t + self.deadline_ms, cell)
                heapq.heappush(queue, (t + self.deadline_ms, self._order, code))
                self._order += 1
        elif stage in _REACHED or stage in _ENDED:
            entry = pending.pop(code, None)
            if entry is not None:
                out.append((entry[1], stage in _REACHED))
                self._decide(code)
        return out

    def _decide(self, code: K) -> None:
        self._decided[code] = None
        if len(self._decided) > self.memory:
            self._decided.popitem(last=False)


def _otp_decided(
    deadlines: OtpDeadlines[str, tuple[str, str]], r: Mapping[str, Any]
) -> Iterator[Update]:
    """An OTP record's own counts, then the outcomes it decides (in their codes' cells)."""
    yield from _otp(r)
    service = r["service"]
    cell = (service, _key(service, r["operator"], r["provider"]))
    for (to_service, key), in_time in deadlines.step(
        r["event_time"], r["stage"], r["otp_id"], cell
    ):
        yield to_service, key, _OTP["in_time" if in_time else "not_in_time"], 1


# --------------------------------------------------------------------------------- balances

BALANCE_COUNTERS = ("reads", "changes", "zero_unexplained", "link_removed_not_user", "links")
_BAL = {name: i for i, name in enumerate(BALANCE_COUNTERS)}


class AccountBalances:
    """Last known balance per account, bounded (least recently seen accounts are forgotten).

    The invariant: a funded account whose balance reads 0 with no change explaining it is a
    fault (MoMo, 19 October). Only accounts seen before can be judged; a forgotten or new
    account reading 0 is not a violation. Balances are keyed by account on the topic, so each
    account's events meet in one partition and this state is exact per partition.

    With ``track=True`` it also notes, for whoever persists the state (the worker's account
    state topic), each account it first learns of and each whose funded status (balance > 0)
    flips: :meth:`take_changed`. Only funded or not matters to the invariant, so a balance
    that moves and stays positive is not noted. :meth:`recall` puts a persisted balance back.

    >>> state = AccountBalances(track=True)
    >>> [u[2] for u in state.observe({"service": "wallet", "kind": "read", "account_id": "a",
    ...                                "balance": 5000.0})]  # counters: reads
    [0]
    >>> state.take_changed()
    {'a': 5000.0}
    >>> _ = list(state.observe({"service": "wallet", "kind": "read", "account_id": "a",
    ...                         "balance": 4200.0}))
    >>> state.take_changed()  # still funded: nothing to persist
    {}
    >>> fresh = AccountBalances()
    >>> fresh.recall("a", 5000.0)
    >>> [u[2] for u in fresh.observe({"service": "wallet", "kind": "read", "account_id": "a",
    ...                               "balance": 0})]  # reads, zero_unexplained
    [0, 2]
    """

    def __init__(self, capacity: int = 1_000_000, track: bool = False) -> None:
        self.capacity = capacity
        self._last: OrderedDict[str, float] = OrderedDict()
        #: Accounts new or flipped since the last take_changed (None: not tracked).
        self._changed: dict[str, float] | None = {} if track else None

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

    def take_changed(self) -> dict[str, float]:
        """Accounts first seen, or whose funded status flipped, since the last call, with
        their balance then (in the order they changed); empty when not tracking."""
        changed = self._changed
        if not changed:
            return {}
        self._changed = {}
        return changed

    def recall(self, account: str, balance: float) -> None:
        """Put back a balance persisted earlier (not noted as a change)."""
        self._store(account, balance)

    def _remember(self, account: str, balance: float) -> None:
        if self._changed is not None:
            before = self._last.get(account)
            if before is None or (before > 0) != (balance > 0):
                self._changed.pop(account, None)  # re-inserted last: the order they changed
                self._changed[account] = balance
        self._store(account, balance)

    def _store(self, account: str, balance: float) -> None:
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
        Family("otp", ("service", "operator", "provider"), OTP_COUNTERS, None),
        Family("balances", ("service", "region"), BALANCE_COUNTERS, None),
        Family("complaints", ("service",), COMPLAINT_COUNTERS, _complaints),
        Family("requests", ("service", "section"), REQUEST_COUNTERS, _requests),
    )
}  # fmt: skip


class Extractor:
    """Validated record of a family -> updates, with the state some families need."""

    def __init__(self, account_capacity: int = 1_000_000, track_accounts: bool = False) -> None:
        self.balances = AccountBalances(account_capacity, track=track_accounts)
        self.otp: OtpDeadlines[str, tuple[str, str]] = OtpDeadlines()

    def updates(self, family: str, record: Mapping[str, Any]) -> Iterator[Update]:
        extract = FAMILIES[family].extract
        if extract is not None:
            return extract(record)
        if family == "otp":  # each code's outcome at its deadline
            return _otp_decided(self.otp, record)
        return self.balances.observe(record)  # against each account's last known balance
