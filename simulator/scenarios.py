"""The outages of ``INCIDENTS.md`` as parameter dataclasses, and the benign background.

Each scenario is a frozen dataclass of parameters with defaults modelled on the real outage:
when it starts (``day`` and ``onset_hour``, UTC), how long it lasts (``duration_minutes``), how
hard it hits (``magnitude`` in (0, 1]: 1 is the full effect, 0.5 half of every change) and which
segment it hits. Checks draw variants with :func:`dataclasses.replace`.

:meth:`Scenario.apply` changes a slice's :class:`~simulator.conditions.Conditions` while the
incident is active; ``level`` is ``magnitude`` times a ramp (a few minutes in, a few out).
Benign events (:class:`MarketingSurge`, :class:`SlowBankHour`, :class:`AnnouncedMaintenance`,
:class:`QuietNight`) work the same way but are never labelled.

>>> Qiwi().segments()[0]
{'service': 'wallet', 'operator': 'mobifone'}
>>> Io(onset_hour=7.0, duration_minutes=60).window(0)
(25200000, 28800000)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from simulator import world as w
from simulator.conditions import (
    Conditions,
    FailRule,
    LatencyRule,
    LoginFailRule,
    PendingRule,
    TxMask,
    mask,
)

__all__ = [
    "SCENARIOS",
    "AnnouncedMaintenance",
    "Benign",
    "Calm",
    "Incident",
    "Io",
    "MarketingSurge",
    "Momo",
    "Mpesa",
    "Qiwi",
    "QuietNight",
    "Scenario",
    "Shopee",
    "SlowBankHour",
]

MIN = w.MINUTE_MS


def _ramp(since_ms: float, until_ms: float, in_min: float, out_min: float) -> float:
    """0..1: linear ramp over ``in_min`` after the start and ``out_min`` before the end."""
    up = 1.0 if in_min <= 0 else min(1.0, 0.15 + since_ms / (in_min * MIN))
    down = 1.0 if out_min <= 0 else min(1.0, until_ms / (out_min * MIN))
    return max(0.0, min(up, down))


@dataclass(frozen=True)
class Scenario:
    """Base of the incident scenarios: timing, strength and the generic plumbing."""

    name: ClassVar[str] = ""
    #: Probable-cause class written into the label (``cause``).
    cause: ClassVar[str] = ""
    #: What ``--target`` sets (a vocabulary name) and the vocabulary it is checked against.
    target_field: ClassVar[str] = ""
    target_vocab: ClassVar[tuple[str, ...]] = ()
    #: Signals that move, for the label (evaluation and humans).
    signals: ClassVar[tuple[str, ...]] = ()

    day: int = 0
    onset_hour: float = 9.0
    duration_minutes: float = 120.0
    magnitude: float = 1.0
    #: Minutes to reach full strength after onset / to recover before the end.
    ramp_in_minutes: float = 3.0
    ramp_out_minutes: float = 5.0

    def window(self, day0_ms: int) -> tuple[int, int]:
        """``(start, end)`` in epoch ms, for a simulation whose day 0 starts at ``day0_ms``."""
        start = day0_ms + self.day * w.DAY_MS + round(self.onset_hour * w.HOUR_MS)
        return start, start + round(self.duration_minutes * MIN)

    def targets(self) -> tuple[str, ...]:
        """The names ``--target`` sets for this scenario."""
        value = getattr(self, self.target_field)
        return tuple(value) if isinstance(value, tuple) else (value,)

    def with_targets(self, names: tuple[str, ...]) -> Scenario:
        """A copy aimed at ``names``; ``ValueError`` naming the choices for an unknown one."""
        for name in names:
            w.index_of(self.target_vocab, name)
        current = getattr(self, self.target_field)
        change: dict[str, Any] = {self.target_field: tuple(names)}
        if not isinstance(current, tuple):
            if len(names) != 1:
                raise ValueError(f"{self.name} takes exactly one {self.target_field}")
            change[self.target_field] = names[0]
        return dataclasses.replace(self, **change)

    def segments(self) -> list[dict[str, str]]:
        """The labelled segments (each a dict of segment dimension -> value)."""
        raise NotImplementedError

    def describe(self) -> str:
        """One sentence for the label's description."""
        raise NotImplementedError

    def apply(self, cond: Conditions, level: float, since_ms: int, until_ms: int) -> None:
        """Change ``cond`` for a slice ``since_ms`` after onset and ``until_ms`` before the end."""
        raise NotImplementedError

    def maintenance_records(self, start: int, end: int) -> list[dict[str, Any]]:
        """Maintenance-topic values this incident publishes (without ids), by default none."""
        return []

    def level(self, since_ms: int, until_ms: int) -> float:
        """Strength at a moment of the incident: ``magnitude`` times the in/out ramp."""
        return self.magnitude * _ramp(
            since_ms, until_ms, self.ramp_in_minutes, self.ramp_out_minutes
        )


def _complaints(
    cond: Conditions,
    services: tuple[str, ...],
    categories: tuple[str, ...],
    factor: float,
    since_ms: int,
    lag_minutes: float = 6.0,
) -> None:
    """People complain a few minutes after they notice: surge after ``lag_minutes``."""
    ramp = min(1.0, max(0.0, (since_ms / MIN - lag_minutes) / 10.0))
    if ramp <= 0:
        return
    rows = mask(w.SERVICES, services)
    cols = mask(w.COMPLAINT_CATEGORIES, categories)
    cond.complaint_surge[np.ix_(rows, cols)] += factor * ramp


def _sections_of(services: tuple[str, ...]) -> np.ndarray:
    return mask(w.SERVICES, services)[w.SECTION_SERVICE]


@dataclass(frozen=True)
class Momo(Scenario):
    """MoMo, 19 October: nationwide login failures, balances shown as 0, bank links lost.

    All regions at once: login failures (server error / network), transaction success
    collapsing, funded accounts reading 0 with no debit, system-initiated bank-link removals,
    a complaint surge on social media. The platform calls it "maintenance" only after
    ``ack_fraction`` of the incident, declaring an end (``declared_end_fraction``) that the
    real end overruns.
    """

    name: ClassVar[str] = "momo"
    cause: ClassVar[str] = "login_outage"
    secondary: ClassVar[tuple[str, ...]] = ("balance_display_fault", "maintenance_overrun")
    target_field: ClassVar[str] = "services"
    target_vocab: ClassVar[tuple[str, ...]] = w.SERVICES
    signals: ClassVar[tuple[str, ...]] = (
        "logins.failure_rate",
        "balances.zero_reads_of_funded_accounts",
        "balances.bank_link_removals",
        "transactions.success_rate",
        "complaints.volume",
        "requests.error_rate",
        "maintenance.overrun",
    )

    onset_hour: float = 8.5
    duration_minutes: float = 330.0
    services: tuple[str, ...] = ("wallet",)
    login_failure: float = 0.8
    transaction_failure: float = 0.85
    #: Fraction of accounts whose (funded) balance reads as 0 at full strength.
    zero_read_accounts: float = 0.35
    #: Fraction of linked accounts whose bank link is removed over the incident.
    link_removals: float = 0.25
    complaint_factor: float = 40.0
    ack_fraction: float = 0.64
    declared_end_fraction: float = 0.82

    def segments(self) -> list[dict[str, str]]:
        return [{"service": s} for s in self.services]

    def describe(self) -> str:
        return (
            f"Nationwide login failures on {', '.join(self.services)} in every region, funded "
            "accounts reading 0 with no debit, bank links removed by the system, transactions "
            "failing, complaints surging; acknowledged late as maintenance, which overran its "
            "declared end"
        )

    def apply(self, cond: Conditions, level: float, since_ms: int, until_ms: int) -> None:
        svc = mask(w.SERVICES, self.services)
        cond.tx_volume[svc] *= 1 + 0.4 * level
        cond.tx_fail.append(
            FailRule(TxMask.of(self.services), self.transaction_failure * level, "SYSTEM_ERROR")
        )
        cond.login_volume[svc] *= 1 + 1.2 * level  # retries
        cond.login_fail.append(
            LoginFailRule(
                svc, self.login_failure * level, ("server_error", "network"), (0.55, 0.45)
            )
        )
        total = self.duration_minutes * MIN
        if until_ms < 0.15 * total:  # at the end users must log out and in again
            cond.forced_extra[svc] += 0.05 * level
        cond.read_volume *= 1 + 1.5 * level
        cond.zero_read_fraction = max(cond.zero_read_fraction, self.zero_read_accounts * level)
        cond.link_removals_per_s += self.link_removals * level / (total / 1000)
        _complaints(
            cond,
            self.services,
            ("login", "balance", "payment", "transfer"),
            self.complaint_factor * level,
            since_ms,
        )
        sec = _sections_of(self.services)
        cond.req_error[sec] += 0.5 * level
        cond.req_latency[sec] *= 1 + 2 * level

    def maintenance_records(self, start: int, end: int) -> list[dict[str, Any]]:
        ack = start + round((end - start) * self.ack_fraction)
        declared_end = start + round((end - start) * self.declared_end_fraction)
        return [
            {
                "event_time": ack,
                "service": service,
                "start_time": start,
                "end_time": declared_end,
                "announced_at": ack,
                "description": "System maintenance (announced after it began)",
                "status": "started",
            }
            for service in self.services
        ]


@dataclass(frozen=True)
class Mpesa(Scenario):
    """M-PESA: bank-to-wallet transfers from one or two banks stay pending for hours.

    Transfers in (and top-ups) from ``banks`` go pending and complete late
    (``completed_late``, median ``delay_minutes``); a few are reversed (failed). The USSD bank
    channel of those banks is down; app request errors rise; transfer complaints rise.
    """

    name: ClassVar[str] = "mpesa"
    cause: ClassVar[str] = "partner_bank_transfer_delay"
    target_field: ClassVar[str] = "banks"
    target_vocab: ClassVar[tuple[str, ...]] = w.BANKS
    signals: ClassVar[tuple[str, ...]] = (
        "transactions.pending_share",
        "transactions.completion_latency",
        "transactions.pending_backlog",
        "requests.error_rate",
    )

    onset_hour: float = 10.0
    duration_minutes: float = 240.0
    banks: tuple[str, ...] = ("ACB", "BIDV")
    service: str = "wallet"
    pending: float = 0.9
    delay_minutes: float = 150.0
    reversed_share: float = 0.05
    ussd_failure: float = 0.9
    request_errors: float = 0.08

    def segments(self) -> list[dict[str, str]]:
        return [{"service": self.service, "partner_bank": b} for b in self.banks]

    def describe(self) -> str:
        return (
            f"Bank-to-wallet transfers from {', '.join(self.banks)} stay pending for hours and "
            "complete late (few fail); their USSD channel is down; app request errors up"
        )

    def apply(self, cond: Conditions, level: float, since_ms: int, until_ms: int) -> None:
        credits = TxMask.of((self.service,), w.PENDABLE_TYPES, self.banks)
        cond.tx_pending.append(
            PendingRule(
                credits, self.pending * level, self.delay_minutes * 60, 0.45, self.reversed_share
            )
        )
        cond.tx_latency.append(LatencyRule(credits, 1 + 3 * level))
        cond.tx_fail.append(
            FailRule(
                TxMask.of((self.service,), None, self.banks, ("ussd",)),
                self.ussd_failure * level,
                "USSD_UNAVAILABLE",
            )
        )
        cond.req_error[_sections_of((self.service,))] += self.request_errors * level
        _complaints(cond, (self.service,), ("transfer",), 12 * level, since_ms, lag_minutes=20)


@dataclass(frozen=True)
class Shopee(Scenario):
    """Shopee, 22 March 2022: many products fail together for over six hours.

    Forced logouts (``session_invalidated``), logins failing as ``account_not_registered``,
    OTP codes not delivered, payments and purchases failing, refunds slow (pending for hours),
    food orders not accepted, complaints surging: one correlated incident.
    """

    name: ClassVar[str] = "shopee"
    cause: ClassVar[str] = "multi_service_outage"
    target_field: ClassVar[str] = "services"
    target_vocab: ClassVar[tuple[str, ...]] = w.SERVICES
    signals: ClassVar[tuple[str, ...]] = (
        "logins.forced_logout_rate",
        "logins.failure_rate",
        "otp.delivery_ratio",
        "transactions.success_rate",
        "transactions.refund_latency",
        "complaints.volume",
    )

    onset_hour: float = 11.0
    duration_minutes: float = 380.0
    services: tuple[str, ...] = ("shop", "pay", "food")
    forced_logouts: float = 0.15
    login_failure: float = 0.5
    otp_undelivered: float = 0.75
    payment_failure: float = 0.55
    order_rejection: float = 0.4
    refund_delay_minutes: float = 240.0

    def segments(self) -> list[dict[str, str]]:
        return [{"service": s} for s in self.services]

    def describe(self) -> str:
        return (
            f"Correlated outage of {', '.join(self.services)}: forced logouts, logins failing "
            "as account_not_registered, OTP not delivered, payments failing, refunds slow, "
            "food orders not accepted"
        )

    def apply(self, cond: Conditions, level: float, since_ms: int, until_ms: int) -> None:
        svc = mask(w.SERVICES, self.services)
        cond.forced_extra[svc] += self.forced_logouts * level
        cond.login_volume[svc] *= 1 + 0.8 * level
        cond.login_fail.append(
            LoginFailRule(svc, self.login_failure * level, ("account_not_registered",), (1.0,))
        )
        cond.otp_deliver[svc, :] *= 1 - self.otp_undelivered * level
        cond.otp_volume[svc, :] *= 1 + 0.5 * level
        cond.tx_fail.append(
            FailRule(
                TxMask.of(self.services, ("payment", "purchase")),
                self.payment_failure * level,
                "PAYMENT_FAILED",
            )
        )
        if "food" in self.services:
            cond.tx_fail.append(
                FailRule(
                    TxMask.of(("food",), ("purchase",)),
                    self.order_rejection * level,
                    "ORDER_NOT_ACCEPTED",
                )
            )
        cond.tx_pending.append(
            PendingRule(
                TxMask.of(self.services, ("refund",)),
                0.85 * level,
                self.refund_delay_minutes * 60,
                0.5,
                0.02,
            )
        )
        _complaints(
            cond, self.services, ("login", "payment", "otp", "refund"), 25 * level, since_ms
        )
        sec = _sections_of(self.services)
        cond.req_error[sec] += 0.25 * level
        cond.req_error[w.SECTION_NAMES.index("checkout")] += 0.2 * level
        cond.req_latency[sec] *= 1 + level


@dataclass(frozen=True)
class Qiwi(Scenario):
    """QIWI: SMS codes sent but never delivered for one mobile operator; others are fine.

    The operator's delivery ratio collapses (``undelivered``) and its delivered codes arrive
    late (``latency_factor``); users ask for new codes; OTP complaints rise.
    """

    name: ClassVar[str] = "qiwi"
    cause: ClassVar[str] = "otp_operator_delivery_failure"
    target_field: ClassVar[str] = "operator"
    target_vocab: ClassVar[tuple[str, ...]] = w.OPERATORS
    signals: ClassVar[tuple[str, ...]] = ("otp.delivery_ratio", "otp.delivery_latency")

    onset_hour: float = 15.0
    duration_minutes: float = 120.0
    operator: str = "mobifone"
    undelivered: float = 0.9
    latency_factor: float = 6.0

    def segments(self) -> list[dict[str, str]]:
        return [{"service": s, "operator": self.operator} for s in w.SERVICES]

    def describe(self) -> str:
        return (
            f"OTP codes sent but not delivered to {self.operator} subscribers (delivery latency "
            "up for them); the other operators deliver normally"
        )

    def apply(self, cond: Conditions, level: float, since_ms: int, until_ms: int) -> None:
        op = w.OPERATORS.index(self.operator)
        cond.otp_deliver[:, op] *= 1 - self.undelivered * level
        cond.otp_latency[op] *= 1 + (self.latency_factor - 1) * level
        cond.otp_volume[:, op] *= 1 + 0.6 * level  # "send me a new code"
        _complaints(cond, w.SERVICES, ("otp",), 6 * level, since_ms)


@dataclass(frozen=True)
class Io(Scenario):
    """IO "cashback" launch: a request surge on wallet sections, then errors there only.

    Requests to ``sections`` ramp to ``surge_factor`` times normal over ``surge_ramp_minutes``;
    from ``errors_after_minutes`` the overloaded sections fail (``error_rate``), slow down and
    their downstream bank services report errors. The rest of the app is fine.
    """

    name: ClassVar[str] = "io"
    cause: ClassVar[str] = "section_overload"
    target_field: ClassVar[str] = "sections"
    target_vocab: ClassVar[tuple[str, ...]] = w.SECTION_NAMES
    signals: ClassVar[tuple[str, ...]] = (
        "requests.rate",
        "requests.error_rate",
        "requests.latency",
        "requests.downstream_errors",
    )

    onset_hour: float = 7.0
    duration_minutes: float = 150.0
    ramp_in_minutes: float = 0.0
    sections: tuple[str, ...] = ("wallet.cards", "wallet.iban")
    surge_factor: float = 8.0
    surge_ramp_minutes: float = 8.0
    errors_after_minutes: float = 12.0
    error_rate: float = 0.45
    latency_factor: float = 12.0

    def segments(self) -> list[dict[str, str]]:
        return [
            {"service": w.SECTIONS[w.SECTION_NAMES.index(s)][0], "section": s}
            for s in self.sections
        ]

    def describe(self) -> str:
        return (
            f"Request surge (x{self.surge_factor:g}) on {', '.join(self.sections)} at a launch, "
            "then errors, latency and downstream bank-service errors in those sections only"
        )

    def apply(self, cond: Conditions, level: float, since_ms: int, until_ms: int) -> None:
        sec = mask(w.SECTION_NAMES, self.sections)
        surge = min(1.0, 0.3 + since_ms / (max(self.surge_ramp_minutes, 0.01) * MIN))
        cond.req_volume[sec] *= 1 + (self.surge_factor - 1) * level * surge
        overload = (since_ms / MIN - self.errors_after_minutes) / 3.0
        if overload > 0:
            hit = level * min(1.0, overload)
            cond.req_error[sec] += self.error_rate * hit
            cond.req_latency[sec] *= 1 + (self.latency_factor - 1) * hit
            cond.req_downstream[sec] = 0.85
        _complaints(cond, ("wallet",), ("other",), 3 * level, since_ms, lag_minutes=15)


@dataclass(frozen=True)
class Calm(Scenario):
    """No incident at all: only the benign background."""

    name: ClassVar[str] = "calm"


#: Scenario name -> dataclass (``calm`` has no incident; ``all`` is a schedule of the others).
SCENARIOS: dict[str, type[Scenario]] = {
    "momo": Momo,
    "mpesa": Mpesa,
    "shopee": Shopee,
    "qiwi": Qiwi,
    "io": Io,
}


@dataclass(frozen=True)
class Incident:
    """A scenario placed in time: what the label describes."""

    id: str
    scenario: Scenario
    start: int
    end: int

    def apply(self, cond: Conditions, t_ms: int) -> None:
        """Change ``cond`` if ``t_ms`` is inside the incident."""
        if self.start <= t_ms < self.end:
            since, until = t_ms - self.start, self.end - t_ms
            self.scenario.apply(cond, self.scenario.level(since, until), since, until)

    def label(self) -> dict[str, Any]:
        """The ``labels.json`` entry."""
        sc = self.scenario
        out: dict[str, Any] = {
            "id": self.id,
            "scenario": sc.name,
            "start": self.start,
            "end": self.end,
            "segments": sc.segments(),
            "cause": sc.cause,
            "description": sc.describe(),
            "secondary_causes": list(getattr(sc, "secondary", ())),
            "signals": list(sc.signals),
            "magnitude": sc.magnitude,
        }
        return out


@dataclass(frozen=True)
class Benign:
    """A benign, unlabelled event: normal business that may look unusual."""

    kind: ClassVar[str] = ""
    start: int
    end: int

    def apply(self, cond: Conditions, t_ms: int) -> None:
        if self.start <= t_ms < self.end:
            self.change(cond)

    def change(self, cond: Conditions) -> None:
        raise NotImplementedError

    def maintenance_records(self, sim_start: int) -> list[dict[str, Any]]:
        return []

    def describe(self) -> dict[str, Any]:
        """The ``benign.json`` entry."""
        fields = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("start", "end")
        }
        return {"kind": self.kind, "start": self.start, "end": self.end, **fields}


@dataclass(frozen=True)
class MarketingSurge(Benign):
    """A campaign: the service's requests x``factor``, more orders, no more errors."""

    kind: ClassVar[str] = "marketing_surge"
    service: str = "shop"
    factor: float = 3.0

    def change(self, cond: Conditions) -> None:
        svc = w.SERVICES.index(self.service)
        cond.req_volume[svc == w.SECTION_SERVICE] *= self.factor
        cond.tx_volume[svc] *= 1 + (self.factor - 1) / 2
        cond.login_volume[svc] *= 1 + (self.factor - 1) / 4
        cond.otp_volume[svc, :] *= 1 + (self.factor - 1) / 4


@dataclass(frozen=True)
class SlowBankHour(Benign):
    """A bank is slow but working: latency x``factor``, a few more short pendings."""

    kind: ClassVar[str] = "slow_bank_hour"
    bank: str = "VCB"
    factor: float = 2.0

    def change(self, cond: Conditions) -> None:
        where = TxMask.of(None, w.BANK_TYPES, (self.bank,))
        cond.tx_latency.append(LatencyRule(where, self.factor))
        credits = TxMask.of(None, w.PENDABLE_TYPES, (self.bank,))
        cond.tx_pending.append(PendingRule(credits, 0.04, 150.0, 0.5, 0.01))


@dataclass(frozen=True)
class AnnouncedMaintenance(Benign):
    """Maintenance announced in advance that starts and ends on time.

    Inside it the service's traffic is much reduced and what remains fails.
    """

    kind: ClassVar[str] = "announced_maintenance"
    service: str = "pay"
    notice_hours: float = 6.0

    def change(self, cond: Conditions) -> None:
        svc = w.SERVICES.index(self.service)
        cond.tx_volume[svc] *= 0.3
        cond.tx_fail.append(FailRule(TxMask.of((self.service,)), 0.95, "MAINTENANCE"))
        sec = svc == w.SECTION_SERVICE
        cond.req_volume[sec] *= 0.5
        cond.req_error[sec] += 0.95
        cond.login_volume[svc] *= 0.3
        cond.login_fail.append(
            LoginFailRule(mask(w.SERVICES, (self.service,)), 0.9, ("server_error",), (1.0,))
        )
        cond.otp_volume[svc, :] *= 0.3

    def maintenance_records(self, sim_start: int) -> list[dict[str, Any]]:
        announced = max(sim_start, self.start - round(self.notice_hours * w.HOUR_MS))
        common = {
            "service": self.service,
            "start_time": self.start,
            "end_time": self.end,
            "announced_at": announced,
            "description": "Planned maintenance of the payment backend",
        }
        return [
            {"event_time": announced, **common, "status": "scheduled"},
            {"event_time": self.start, **common, "status": "started"},
            {"event_time": self.end, **common, "status": "completed"},
        ]


@dataclass(frozen=True)
class QuietNight(Benign):
    """A night quieter than usual (a holiday): every volume x``factor``."""

    kind: ClassVar[str] = "quiet_night"
    factor: float = 0.55

    def change(self, cond: Conditions) -> None:
        cond.volume *= self.factor
