"""Incidents: anomalies that belong to one outage, correlated, with a probable cause.

An ops team acts on one incident that says what is broken, where, since when and probably why,
not on ten per-signal alerts. :class:`IncidentManager` takes the anomalies the
:class:`~detectors.engine.DetectionEngine` opens and resolves, window by window, and

* joins an anomaly to an open incident of the same service, or to any incident that opened
  within ``correlate_ms`` before it (several products failing together: one incident);
* resolves an incident when all its anomalies have resolved;
* names the probable cause from the mix of signals (see :func:`probable_cause`).

Event time only: the same anomalies in the same windows always give the same incidents.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from detectors.engine import Anomaly, Segment

CAUSE_WORDS = {
    "multi_service_outage": "several products failing together (logins, OTP, payments)",
    "login_outage": "login outage",
    "partner_bank_transfer_delay": "transfers from a partner bank pending",
    "otp_operator_delivery_failure": "OTP not delivered by a mobile operator",
    "section_overload": "overload of an app section",
    "balance_display_fault": "balance/ledger display fault",
}


@dataclass
class Incident:
    """One outage: its anomalies (open and resolved), cause and status."""

    key: str
    opened_at_ms: int
    anomalies: list[Anomaly] = field(default_factory=list)
    open_members: set[tuple[str, Segment]] = field(default_factory=set)
    resolved_at_ms: int | None = None
    cause_class: str = ""
    cause: str = ""
    #: The declared maintenance window (start, end) the incident opened in, if any.
    maintenance: tuple[int, int] | None = None
    #: Still open when its maintenance window ended: the maintenance overran (news in itself).
    overran: bool = False
    #: Open for ``LONG_MS`` or more (event time): one step more severe.
    long_running: bool = False
    #: The operator's latest verdict (detectors.feedback.VERDICTS), if any.
    verdict: str | None = None

    @property
    def notes(self) -> list[str]:
        """What operator feedback changed for this incident's signals (see detectors.feedback)."""
        return sorted({a.note for a in self.anomalies if a.note})

    @property
    def is_open(self) -> bool:
        return self.resolved_at_ms is None

    @property
    def services(self) -> set[str]:
        return {a.segment.service for a in self.anomalies}

    @property
    def segments(self) -> list[Segment]:
        return sorted({a.segment for a in self.anomalies if a.action == "open"})

    @property
    def primary(self) -> Anomaly:
        """The opening anomaly with the strongest evidence, of a primary signal if there is one
        (context, such as slower deliveries, explains an incident; it does not measure it)."""
        opens = [a for a in self.anomalies if a.action == "open"]
        opens = [a for a in opens if a.signal.primary] or opens
        return max(opens, key=lambda a: (a.evidence.score, -a.window_end_ms))

    @property
    def signals(self) -> list[str]:
        return sorted({a.signal.name for a in self.anomalies})

    def cause_segments(self) -> list[Segment]:
        """The segments whose signals name the cause (all of them when no rule picked any)."""
        picked = [a.segment for a in self.anomalies if a.action == "open" and
                  a.cause_class == self.cause_class]  # fmt: skip
        return sorted(set(picked)) or self.segments


SEVERITIES = ("critical", "error", "warning", "info")
#: An incident open this long (event time) is one step more severe.
LONG_MS = 30 * 60_000


@dataclass(frozen=True)
class IncidentUpdate:
    """What happened to an incident in one window: opened, updated (grew) or resolved."""

    action: str  # "open" | "update" | "resolve"
    incident: Incident
    at_ms: int
    anomalies: tuple[Anomaly, ...]
    #: As it was when the update happened (the incident goes on changing).
    severity: str = field(init=False)
    #: The incident as it was when the update happened, for what is published of it: updates
    #: can be published after later ones are decided (the worker publishes every update a
    #: windows message completes; measured: an opening inside maintenance published after the
    #: overrun update of a later window was decided said "overran" in its summary).
    state: Incident = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "severity", self._severity())
        inc = self.incident
        state = replace(inc, anomalies=list(inc.anomalies), open_members=set(inc.open_members))
        object.__setattr__(self, "state", state)

    def _severity(self) -> str:
        """From depth, breadth and duration: a collapse (a drop of half) or several services
        is critical, a drop of a fifth an error, less a warning; one step higher once open for
        ``LONG_MS``; inside declared maintenance one step lower, but one step higher than
        outside it once the maintenance overran its declared end; a resolve is info."""
        if self.action == "resolve":
            return "info"
        inc = self.incident
        if inc.verdict in ("expected", "false_alarm"):
            return "info"
        if inc.cause_class == "detector_blind":
            return "error"  # what the detector cannot see may be an outage
        ev = inc.primary.evidence
        observed = getattr(ev, "observed", None)
        expected = getattr(ev, "expected", None)
        depth = expected - observed if observed is not None and expected is not None else 0.0
        level = 0 if (depth >= 0.5 or len(inc.services) > 1) else 1 if depth >= 0.2 else 2
        if inc.long_running:
            level = max(level - 1, 0)
        if inc.overran:
            level = max(level - 1, 0)
        elif inc.maintenance is not None:
            level = min(level + 1, 3)
        return SEVERITIES[level]


def probable_cause(anomalies: Sequence[Anomaly]) -> tuple[str, str]:
    """The probable cause class and words of a set of anomalies.

    Rules, most specific pattern first; each needs the signals that make it, so a shared
    symptom (failing payments, complaints) does not decide the cause:

    * logins, OTP or payments failing on two or more services: ``multi_service_outage``;
    * logins failing (or forced logouts) on one service: ``login_outage``;
    * transfers left pending at a partner bank: ``partner_bank_transfer_delay``;
    * OTP not delivered at a mobile operator: ``otp_operator_delivery_failure``;
    * a request surge and failing requests in the same app section: ``section_overload``;
    * funded accounts reading 0: ``balance_display_fault``;
    * otherwise the strongest anomaly's own cause (of a primary signal if there is one).
    """
    opens = [a for a in anomalies if a.action == "open"] or list(anomalies)
    names = {a.signal.name for a in opens}
    identity = {"logins.success_rate", "logins.forced_logouts", "otp.delivery_ratio",
                "transactions.success_rate"}  # fmt: skip
    identity_services = {a.segment.service for a in opens if a.signal.name in identity}
    identity_kinds = {a.signal.family for a in opens if a.signal.name in identity}
    operators = {
        a.segment.value
        for a in opens
        if a.signal.name == "otp.delivery_ratio" and a.segment.dimension == "operator"
    }
    login = names & {"logins.success_rate", "logins.forced_logouts"}
    if len(identity_services) >= 2 and len(identity_kinds) >= 2 and (login or not operators):
        return "multi_service_outage", "several products failing together on " + ", ".join(
            sorted(identity_services)
        )
    if login:
        services = sorted({a.segment.service for a in opens if a.signal.name in login})
        return "login_outage", "login outage on " + ", ".join(services)
    pending = [a for a in opens if a.signal.name == "transactions.settled_share"]
    if pending:
        return "partner_bank_transfer_delay", "; ".join(sorted({a.cause for a in pending}))
    if operators:
        return "otp_operator_delivery_failure", "OTP codes not delivered by mobile operator " + (
            ", ".join(sorted(o for o in operators if o))
        )
    surged = {a.segment for a in opens if a.signal.name == "requests.volume"}
    failing = {a.segment for a in opens if a.signal.name == "requests.error_rate"}
    if surged & failing:
        sections = ", ".join(sorted(s.value or "" for s in surged & failing))
        return "section_overload", f"overload of section {sections}"
    if "balances.zero_reads" in names:
        return "balance_display_fault", "funded accounts reading 0 with no debit"
    ranked = [a for a in opens if a.signal.primary] or opens
    strongest = max(ranked, key=lambda a: a.evidence.score)
    return strongest.cause_class, strongest.cause


class IncidentManager:
    """Correlates anomalies into incidents, in event time.

    Parameters
    ----------
    correlate_ms
        An anomaly on another service joins an incident that opened at most this long before
        it (default 5 minutes): outages of several products start together.
        An anomaly of the same signal at the same partner bank, region, operator or section
        as an open incident's joins it whenever it starts, on any service: one operator
        failing reaches each product's codes at its own pace.
    context_ms
        A context anomaly (a request surge) that opened at most this long before an incident
        of its service joins it, even if it has ended: the surge that came first explains the
        overload that follows (default 30 minutes).
    reopen_ms
        An anomaly that would open a new incident less than this long after an incident it
        belongs with (same service) resolved reopens that incident instead: same key, so the
        same dedup key on the wire (default 10 minutes). Not an incident an operator's verdict
        closed.
    """

    def __init__(
        self,
        correlate_ms: int = 5 * 60_000,
        context_ms: int = 30 * 60_000,
        reopen_ms: int = 10 * 60_000,
    ) -> None:
        self.correlate_ms = correlate_ms
        self.context_ms = context_ms
        self.reopen_ms = reopen_ms
        self.open: list[Incident] = []
        self.closed: list[Incident] = []
        self._member_of: dict[tuple[str, Segment], Incident] = {}
        #: Context anomalies (non-primary signals) with no incident to join yet, kept for
        #: context_ms after they opened; those still open are in _context_open.
        self._context: dict[tuple[str, Segment], Anomaly] = {}
        self._context_open: set[tuple[str, Segment]] = set()
        #: service -> {maintenance id: (announced at, start, end)}
        self.maintenance: dict[str, dict[str, tuple[int, int, int]]] = {}

    def declare_maintenance(self, record: Mapping[str, Any]) -> None:
        """A record of the maintenance topic: a window is declared, changed or cancelled.

        Incidents that open inside a window declared before they opened say so (and are
        downgraded by the wording that presents them); a window declared after the fact does
        not excuse an incident already open.
        """
        service = str(record.get("service", ""))
        windows = self.maintenance.setdefault(service, {})
        key = str(record.get("description") or record["event_id"])
        if record.get("status") == "cancelled":
            windows.pop(key, None)
            return
        announced = int(record.get("announced_at") or record["event_time"])
        windows[key] = (announced, int(record["start_time"]), int(record["end_time"]))

    def _maintenance_at(self, services: Iterable[str], at_ms: int) -> tuple[int, int] | None:
        for service in services:
            for announced, start, end in self.maintenance.get(service, {}).values():
                if announced <= at_ms and start <= at_ms <= end:
                    return start, end
        return None

    def find(self, key: str) -> Incident | None:
        """The incident with this key, open or resolved (None if unknown)."""
        for inc in (*self.open, *reversed(self.closed)):
            if inc.key == key:
                return inc
        return None

    def announce(self, inc: Incident, at_ms: int) -> IncidentUpdate:
        """An update of an open incident with nothing new but its verdict."""
        return IncidentUpdate("update", inc, at_ms, ())

    def resolve_now(self, inc: Incident, at_ms: int) -> IncidentUpdate:
        """Resolve an open incident now (operator feedback), members and all."""
        for member in list(inc.open_members):
            self._member_of.pop(member, None)
        inc.open_members.clear()
        inc.resolved_at_ms = at_ms
        self.open.remove(inc)
        self.closed.append(inc)
        return IncidentUpdate("resolve", inc, at_ms, ())

    def _reopen(self, a: Anomaly, at_ms: int) -> Incident | None:
        """The incident of ``a``'s service resolved less than ``reopen_ms`` ago, reopened."""
        for inc in reversed(self.closed):
            resolved = inc.resolved_at_ms
            if resolved is None or at_ms - resolved >= self.reopen_ms:
                continue
            if inc.verdict is not None or inc.cause_class == "detector_blind":
                continue  # an operator's verdict closed it: what comes back is news
            if a.segment.service in inc.services:
                self.closed.remove(inc)
                inc.resolved_at_ms = None
                self.open.append(inc)
                return inc
        return None

    @property
    def incidents(self) -> list[Incident]:
        return sorted([*self.closed, *self.open], key=lambda i: (i.opened_at_ms, i.key))

    def process(
        self,
        window_end_ms: int,
        anomalies: Iterable[Anomaly],
        services: Collection[str] | None = None,
    ) -> list[IncidentUpdate]:
        """Apply one window's anomaly changes; return the incident updates, in order.

        ``services``: the services this window was judged for (``None``: all). What time
        alone changes (an overrun, a long outage) is announced only for incidents on one of
        them: an incident whose services are judged by another worker now is that worker's
        to announce (this one would re-open it on the wire after the other resolved it)."""
        touched: dict[str, tuple[Incident, str, list[Anomaly]]] = {}
        for member, ctx in list(self._context.items()):
            if window_end_ms - ctx.opened_at_ms > self.context_ms:
                del self._context[member]
                self._context_open.discard(member)
        for a in sorted(anomalies, key=lambda a: (a.action != "open", a.signal.name, a.segment)):
            member = (a.signal.name, a.segment)
            if a.action == "open":
                inc = self._home(a)
                new = inc is None
                if inc is None and not a.signal.primary:
                    self._context[member] = a  # waits for an incident to give it meaning
                    self._context_open.add(member)
                    continue
                if inc is None and a.signal.primary:
                    inc = self._reopen(a, window_end_ms)
                if inc is None:
                    inc = Incident(key=f"{a.segment.service}/{a.opened_at_ms}",
                                   opened_at_ms=a.opened_at_ms)  # fmt: skip
                    inc.maintenance = self._maintenance_at([a.segment.service], a.opened_at_ms)
                    self.open.append(inc)
                    for ctx_member, ctx in list(self._context.items()):
                        if ctx.segment.service == a.segment.service:
                            del self._context[ctx_member]
                            inc.anomalies.append(ctx)
                            if ctx_member in self._context_open:
                                self._context_open.discard(ctx_member)
                                inc.open_members.add(ctx_member)
                                self._member_of[ctx_member] = inc
                inc.anomalies.append(a)
                inc.open_members.add(member)
                self._member_of[member] = inc
                _, action, changed = touched.get(inc.key, (inc, "open" if new else "update", []))
                touched[inc.key] = (inc, action, [*changed, a])
            else:
                self._context_open.discard(member)
                found = self._member_of.pop(member, None)
                if found is None:
                    continue
                found.anomalies.append(a)
                found.open_members.discard(member)
                _, action, changed = touched.get(found.key, (found, "update", []))
                touched[found.key] = (found, action, [*changed, a])
        for inc in self.open:  # what time alone changes: an overrun, a long outage
            if services is not None and inc.services.isdisjoint(services):
                continue
            grew = False
            ended = inc.maintenance[1] if inc.maintenance is not None else None
            if ended is not None and not inc.overran and window_end_ms > ended:
                inc.overran = grew = True
            if not inc.long_running and window_end_ms - inc.opened_at_ms >= LONG_MS:
                inc.long_running = grew = True
            if grew and inc.key not in touched:
                touched[inc.key] = (inc, "update", [])
        updates = []
        for inc, action, changed in touched.values():
            inc.cause_class, inc.cause = probable_cause(inc.anomalies)
            if not inc.open_members and action != "open":
                action = "resolve"
                inc.resolved_at_ms = window_end_ms
                self.open.remove(inc)
                self.closed.append(inc)
            if action == "update" and changed and all(a.action == "resolve" for a in changed):
                continue  # a member resolved, the incident goes on: nothing to announce
            updates.append(IncidentUpdate(action, inc, window_end_ms, tuple(changed)))
        return updates

    def _home(self, a: Anomaly) -> Incident | None:
        for inc in self.open:
            if a.segment.service in inc.services:
                return inc
        if a.segment.dimension is not None:
            for inc in self.open:
                if any(
                    b.signal.name == a.signal.name
                    and (b.segment.dimension, b.segment.value)
                    == (a.segment.dimension, a.segment.value)
                    for b in inc.anomalies
                ):
                    return inc
        for inc in self.open:
            if 0 <= a.opened_at_ms - inc.opened_at_ms <= self.correlate_ms:
                return inc
        return None
