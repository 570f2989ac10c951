"""The detection engine: every signal of every family, per segment, per complete window.

Fed complete windows in window order (``EngineWindow``: counts per family, service and cell),
it does for each :class:`Signal`:

1. roll the cells up to the segments the signal watches (the service, or the service
   restricted on one dimension: a partner bank, a region, a mobile operator, an app section);
2. score each segment with its own detector (score first, then learn; flagged windows are not
   learned, so an outage never becomes the baseline);
3. attribute: a flagged segment whose anomaly disappears once the cells of another flagged
   segment of the same signal are removed is explained by it, and raises nothing itself;
4. run an :class:`~detectors.lifecycle.IncidentLifecycle` per (signal, segment).

The anomalies that open and resolve are handed to the
:class:`~detectors.incidents.IncidentManager`, which correlates them into incidents.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from detectors.counts import SeasonalCount, SilenceDetector
from detectors.drift import RateDrift
from detectors.invariants import InvariantBurst
from detectors.latency import LatencyShift
from detectors.lifecycle import IncidentLifecycle
from detectors.novelty import MixNovelty
from detectors.rates import SuccessRateDrop
from detectors.signals import (
    FAMILIES,
    LOGIN_REASONS,
    MISSING,
    OTP_DEADLINE_MS,
    Family,
    split_key,
)

Counts = list[int]
#: (signal, segment, window start ms, detector input, score, flagged, detector) -> None;
#: called before the detector learns the window, so ``detector.explain(x)`` shows the
#: baseline the window was judged against.
Observer = Callable[["Signal", "Segment", int, dict[str, Any], float, bool, Any], None]
#: family -> service -> cell key -> counts
FamilyCounts = dict[str, dict[str, dict[str, Counts]]]


class Segment(NamedTuple):
    """The service, or the service restricted on one dimension.

    A named tuple, not a dataclass: segments key every detector, lifecycle and pool, and a
    tuple's hash runs in C (a frozen dataclass's runs in Python for each lookup: ~5 million
    calls for 3.8 hours at ``--rate 20``, measured with cProfile).
    """

    service: str
    dimension: str | None = None
    value: str | None = None

    def __lt__(self, other: object) -> bool:  # None sorts as "" (a tuple would not compare it)
        if not isinstance(other, Segment):
            return NotImplemented
        return (self.service, self.dimension or "", self.value or "") < (
            other.service,
            other.dimension or "",
            other.value or "",
        )

    @property
    def label(self) -> str:
        if self.dimension is None:
            return self.service
        return f"{self.service}/{self.dimension}={self.value}"

    def as_dict(self) -> dict[str, str]:
        d = {"service": self.service}
        if self.dimension is not None and self.value is not None:
            d[self.dimension] = self.value
        return d


@dataclass
class EngineWindow:
    """One complete window: counts per family, service and cell (see detectors.signals).

    ``services`` are the services the window speaks for, ``None`` (the default) for every
    service. A service it does not cover is not fed the zeros of a silence: a worker whose
    windows-topic partition of that service moved to another worker must not read the
    service as silent.
    """

    start_ms: int
    families: FamilyCounts = field(default_factory=dict)
    services: frozenset[str] | None = None


@dataclass(frozen=True)
class Signal:
    """One thing watched per segment: which counts, which detector, what it means."""

    name: str
    family: str
    rollups: tuple[str | None, ...]  # dimensions watched, most specific first; None = service
    make: Callable[[int], Any]  # window_ms -> a fresh detector
    x: Callable[[Sequence[int], int], dict[str, Any]]  # (counts, window start) -> input
    what: str  # "login success rate", for summaries
    cause_class: Callable[[Segment], str]
    cause: Callable[[Segment], str]
    #: False for context signals (a request surge): they join incidents, never open one,
    #: since a surge that is handled fine is not an outage.
    primary: bool = True
    #: Also judge each segment on the sum of its recent windows (rates): a sustained failure
    #: of a quiet segment gathers evidence that no single window holds.
    pooled: bool = False
    #: Feed every segment seen before a window of zero counts when it sends nothing (silence
    #: signals): a window that is never fed cannot be seen to be silent.
    zero_fill: bool = False
    #: Judge the sum of the windows of the last ``span_ms`` instead of each window alone (a
    #: mix of outcomes needs more events than a quiet segment's window holds).
    span_ms: int = 0
    #: A counter of the family that proves the signal's input is complete: until a window shows
    #: it (anywhere in the family), the signal is neither judged nor learned, from the window
    #: after it on. The mix of OTP code fates: an expiry comes one code lifetime after its
    #: send, so for the first lifetime of a stream the fates are deliveries without expiries (a
    #: mix that, learned, makes every later window look novel). The first expiry marks one
    #: lifetime passed, whatever the platform's lifetime is.
    settles_on: str | None = None
    #: Another signal of the same family that reports this one's outages first: no segment of
    #: a service is judged here (nor learned) while that signal has an anomaly open anywhere in
    #: the service (a bank's collapse moves the service's total too). Drift: a collapse is the
    #: rate signal's to report; the drift detector must not take it for a drift (nor, after
    #: it, keep the incident open while its recent level forgets the collapse).
    defers_to: str | None = None


def _c(family: str, name: str) -> int:
    return FAMILIES[family].index(name)


def _rate(ok: Callable[[Sequence[int]], int], total: Callable[[Sequence[int]], int]) -> Any:
    def x(counts: Sequence[int], t: int) -> dict[str, Any]:
        n = total(counts)
        return {"successes": max(0, min(ok(counts), n)), "trials": n}

    return x


def _count(index: int) -> Any:
    def x(counts: Sequence[int], t: int) -> dict[str, Any]:
        return {"t": t, "count": counts[index]}

    return x


def _violations(index: int) -> Any:
    def x(counts: Sequence[int], t: int) -> dict[str, Any]:
        return {"t": t, "violations": counts[index]}

    return x


def _latency(count: int, total_s: int) -> Any:
    """``{"count": completions, "sum": their latency in ms}`` (a :class:`LatencyShift` input).
    The windows count whole seconds per completion (3.9 s counts 3 s): a slowdown is judged as
    a ratio, and the truncation weighs less the slower the completions."""

    def x(counts: Sequence[int], t: int) -> dict[str, Any]:
        return {"t": t, "count": counts[count], "sum": 1000.0 * counts[total_s]}

    return x


def _events(*indices: int) -> Any:
    def x(counts: Sequence[int], t: int) -> dict[str, Any]:
        return {"t": t, "count": sum(counts[i] for i in indices)}

    return x


def _mix(family: str, *names: str) -> Any:
    """``{"counts": {name: count}}`` of some of ``family``'s counters (a :class:`MixNovelty`
    input)."""
    pairs = tuple((name, _c(family, name)) for name in names)

    def x(counts: Sequence[int], t: int) -> dict[str, Any]:
        return {"counts": {name: counts[i] for name, i in pairs}}

    return x


def _novelty(family: str, what: str, *names: str, settles_on: str | None = None) -> Signal:
    """A service's mix of ``family`` outcomes, over the last minute, unlike any before.

    Context, not primary: it joins (and explains) an incident another signal opens; a mix
    never seen before is not always an outage (a new app version, a new failure code)."""
    return Signal(
        f"{family}.mix", family, (None,),
        lambda w: MixNovelty(),
        _mix(family, *names),
        f"{what} mix",
        *_by_dimension({None: "novel_outcome_mix"},
                       {None: f"{what} mix on {{s}} unlike any seen before"}),
        primary=False,
        span_ms=60_000,
        settles_on=settles_on,
    )  # fmt: skip


def _drift(window_ms: int) -> RateDrift:
    """A drift detector with a 6-hour reference and a 5-minute recent level."""
    return RateDrift(
        reference_half_life=max(2.0, 6 * 3_600_000 / window_ms),
        recent_half_life=max(1.0, 300_000 / window_ms),
        max_batch=max(1, 600_000 // window_ms),
    )


def _silence(family: str, what: str, rollups: tuple[str | None, ...], *indices: int) -> Signal:
    """``family`` stopped arriving from a service (or a segment of it, e.g. a partner bank)."""
    return Signal(
        f"{family}.silence", family, rollups,
        # 20 events expected over the silent run: bursty, quiet sources go quiet for minutes by
        # chance. OTP has no silence signal: each code is a burst of 4-6 events, so its windows
        # are far from independent and a quiet service's OTP stream pauses for minutes (measured:
        # 2-5 false silences per half day per scenario); its delivery ratio watches it instead.
        lambda w: SilenceDetector(window_ms=w, min_expected=20.0),
        _events(*indices),
        f"{what} arriving",
        *_by_dimension(
            {None: "source_silence"},
            {None: f"no {what} arriving from {{s}}",
             **{d: f"no {what} arriving for {d.replace('_', ' ')} {{v}} of {{s}}"
                for d in rollups if d is not None}},
        ),
        zero_fill=True,
    )  # fmt: skip


def _by_dimension(
    classes: Mapping[str | None, str], words: Mapping[str | None, str]
) -> tuple[Callable[[Segment], str], Callable[[Segment], str]]:
    def cause_class(seg: Segment) -> str:
        return classes.get(seg.dimension, classes[None])

    def cause(seg: Segment) -> str:
        return words.get(seg.dimension, words[None]).format(s=seg.service, v=seg.value)

    return cause_class, cause


T, L, OTP, B, C, R = "transactions", "logins", "otp", "balances", "complaints", "requests"
# Counter positions, looked up once (the signals read them every window).
_t_ok, _t_failed, _t_pending = _c(T, "success"), _c(T, "failed"), _c(T, "pending")
_r_req, _r_err = _c(R, "requests"), _c(R, "errors")
_l_ok, _l_fail, _l_forced = _c(L, "success"), _c(L, "failure"), _c(L, "forced_logout")
_o_ok, _o_in_time, _o_late = _c(OTP, "delivered"), _c(OTP, "in_time"), _c(OTP, "not_in_time")
_t_events = (_t_ok, _t_failed, _t_pending, _c(T, "completed_late"))
_l_events = (_l_ok, _l_fail, _l_forced)
_b_events = (_c(B, "reads"), _c(B, "changes"))


# The rates that a signal and its drift both watch.
_txn_success = _rate(lambda c: c[_t_ok], lambda c: c[_t_ok] + c[_t_failed])
_login_success = _rate(lambda c: c[_l_ok], lambda c: c[_l_ok] + c[_l_fail])
#: Each OTP code's outcome at its deadline (detectors.signals.OtpDeadlines).
_otp_in_time = _rate(lambda c: c[_o_in_time], lambda c: c[_o_in_time] + c[_o_late])
_OTP_IN_TIME = f"OTP codes delivered within {OTP_DEADLINE_MS // 1000} s"
_req_success = _rate(lambda c: c[_r_req] - c[_r_err], lambda c: c[_r_req])


def default_signals() -> list[Signal]:
    """The signals of the five outages of INCIDENTS.md (and silence)."""
    rate = SuccessRateDrop
    return [
        Signal(
            "transactions.success_rate", T, ("partner_bank", "region", "channel", None),
            lambda w: rate(),
            _txn_success,
            "transaction success rate",
            *_by_dimension(
                {"partner_bank": "partner_bank_failure", "region": "regional_failure",
                 "channel": "channel_failure", None: "payment_failure"},
                {"partner_bank": "transactions through partner bank {v} failing",
                 "region": "transactions in region {v} failing",
                 "channel": "transactions on channel {v} failing",
                 None: "transactions failing across {s}"},
            ),
            pooled=True,
        ),
        Signal(
            "transactions.settled_share", T, ("partner_bank", None),
            lambda w: rate(),
            _rate(lambda c: c[_t_ok] + c[_t_failed],
                  lambda c: c[_t_ok] + c[_t_failed] + c[_t_pending]),
            "share of transactions settled at once (not left pending)",
            *_by_dimension(
                {None: "partner_bank_transfer_delay"},
                {"partner_bank": "transfers from partner bank {v} pending",
                 None: "transfers on {s} pending"},
            ),
            pooled=True,
        ),
        Signal(
            "logins.success_rate", L, ("region", None),
            lambda w: rate(),
            _login_success,
            "login success rate",
            *_by_dimension(
                {None: "login_outage"},
                {"region": "logins failing in region {v} of {s}", None: "logins failing on {s}"},
            ),
            pooled=True,
        ),
        Signal(
            "logins.forced_logouts", L, (None,),
            lambda w: SeasonalCount(direction="up", window_ms=w),
            _count(_l_forced),
            "forced logouts",
            *_by_dimension({None: "session_invalidation"}, {None: "sessions invalidated on {s}"}),
        ),
        Signal(
            "otp.delivery_ratio", OTP, ("operator", "provider", None),
            lambda w: rate(),
            # Each code's outcome at its deadline (detectors.signals.OtpDeadlines): delivered
            # within 30 s of its request or not, counted when that is known. Not deliveries
            # against sends of the same window (some land in the next one: more deliveries than
            # sends in one window, fewer in the next; measured: 5 false incidents in a calm
            # week), nor against expiries (minutes late, and an unused delivered code expires).
            _otp_in_time,
            _OTP_IN_TIME,
            *_by_dimension(
                {"operator": "otp_operator_delivery_failure",
                 "provider": "otp_provider_delivery_failure", None: "otp_delivery_failure"},
                {"operator": "OTP codes not delivered by mobile operator {v}",
                 "provider": "OTP codes not delivered by SMS provider {v}",
                 None: "OTP codes not delivered on {s}"},
            ),
            pooled=True,
        ),
        Signal(
            "otp.delivery_latency", OTP, ("operator", None),
            lambda w: LatencyShift(window_ms=w),
            _latency(_o_ok, _c(OTP, "delivery_latency_s")),
            "OTP delivery latency",
            *_by_dimension(
                {"operator": "otp_operator_delivery_failure", None: "otp_delivery_failure"},
                {"operator": "OTP codes delivered late by mobile operator {v}",
                 None: "OTP codes delivered late on {s}"},
            ),
            # Context: codes delivered twice as slowly still arrive in time; the delivery
            # ratio says when they stop arriving. Slower deliveries explain that incident.
            primary=False,
        ),
        Signal(
            "balances.zero_reads", B, (None,),
            lambda w: InvariantBurst(),
            _violations(_c(B, "zero_unexplained")),
            "funded accounts reading 0 with no debit",
            *_by_dimension({None: "balance_display_fault"},
                           {None: "funded accounts reading 0 with no debit on {s}"}),
        ),
        Signal(
            "balances.link_removals", B, (None,),
            lambda w: InvariantBurst(),
            _violations(_c(B, "link_removed_not_user")),
            "bank links removed without a user action",
            *_by_dimension({None: "bank_link_fault"},
                           {None: "bank links removed without a user action on {s}"}),
        ),
        Signal(
            "complaints.volume", C, (None,),
            lambda w: SeasonalCount(direction="up", window_ms=w),
            _count(_c(C, "total")),
            "complaints",
            *_by_dimension({None: "complaint_surge"}, {None: "complaints surging on {s}"}),
        ),
        Signal(
            "requests.error_rate", R, ("section", None),
            lambda w: rate(),
            _req_success,
            "request success rate",
            *_by_dimension(
                {"section": "section_failure", None: "app_failure"},
                {"section": "requests to section {v} failing", None: "requests failing on {s}"},
            ),
            pooled=True,
        ),
        Signal(
            "requests.volume", R, ("section",),
            lambda w: SeasonalCount(direction="up", window_ms=w, half_life=max(1.0, 300_000 / w)),
            _count(_r_req),
            "requests",
            *_by_dimension({None: "traffic_surge"}, {None: "request surge on section {v}"}),
            primary=False,
        ),
        Signal(
            "transactions.success_drift", T, ("partner_bank", None),
            _drift,
            _txn_success,
            "transaction success rate (sustained drift against the last hours)",
            *_by_dimension(
                {"partner_bank": "partner_bank_failure", None: "payment_failure"},
                {"partner_bank": "transactions through partner bank {v} failing more and more",
                 None: "transactions failing more and more across {s}"},
            ),
            defers_to="transactions.success_rate",
        ),
        Signal(
            "otp.delivery_drift", OTP, ("operator", None),
            _drift,
            _otp_in_time,
            f"{_OTP_IN_TIME} (sustained drift against the last hours)",
            *_by_dimension(
                {"operator": "otp_operator_delivery_failure", None: "otp_delivery_failure"},
                {"operator": "OTP codes delivered less and less by mobile operator {v}",
                 None: "OTP codes delivered less and less on {s}"},
            ),
            defers_to="otp.delivery_ratio",
        ),
        Signal(
            "requests.error_drift", R, ("section", None),
            _drift,
            _req_success,
            "request success rate (sustained drift against the last hours)",
            *_by_dimension(
                {"section": "section_failure", None: "app_failure"},
                {"section": "requests to section {v} failing more and more",
                 None: "requests failing more and more on {s}"},
            ),
            defers_to="requests.error_rate",
        ),
        Signal(
            "logins.success_drift", L, (None,),
            _drift,
            _login_success,
            "login success rate (sustained drift against the last hours)",
            *_by_dimension({None: "login_outage"}, {None: "logins failing more and more on {s}"}),
            defers_to="logins.success_rate",
        ),
        _novelty(T, "transaction outcome", "success", "failed", "pending", "completed_late"),
        _novelty(L, "login outcome", "success", "forced_logout", "fail_other",
                 *(f"fail_{r}" for r in LOGIN_REASONS)),
        _novelty(OTP, "OTP code outcome", "delivered", "expired", "failed", settles_on="expired"),
        _silence(T, "transactions", ("partner_bank", None), *_t_events),
        _silence(L, "login attempts", (None,), *_l_events),
        _silence(B, "balance events", (None,), *_b_events),
        _silence(R, "request samples", ("section", None), _r_req),
    ]  # fmt: skip


@dataclass(frozen=True)
class Anomaly:
    """One (signal, segment) opening or resolving, with the window's evidence."""

    action: str  # "open" | "resolve"
    signal: Signal
    segment: Segment
    opened_at_ms: int
    window_start_ms: int
    window_end_ms: int
    evidence: Any  # the detector's evidence: observed, expected, bounds, score, volume, ...
    windows_open: int
    #: What operator feedback changed for this (signal, segment), if anything.
    note: str = ""

    @property
    def cause_class(self) -> str:
        return self.signal.cause_class(self.segment)

    @property
    def cause(self) -> str:
        return self.signal.cause(self.segment)


class _Pool:
    """Running sum of a service's cells over its last ``size`` windows."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: deque[dict[str, list[int]]] = deque()
        self.total: dict[str, list[int]] = {}

    def push(self, cells: Mapping[str, Counts]) -> dict[str, list[int]]:
        copy = {k: list(v) for k, v in cells.items()}
        self.items.append(copy)
        for k, v in copy.items():
            have = self.total.get(k)
            if have is None:
                self.total[k] = list(v)
            else:
                for i, x in enumerate(v):
                    have[i] += x
        if len(self.items) > self.size:
            for k, v in self.items.popleft().items():
                have = self.total[k]
                for i, x in enumerate(v):
                    have[i] -= x
                if not any(have):
                    del self.total[k]
        return self.total


class _Rollup:
    """A segment's summed counts and the cell keys behind them (as a set only when asked:
    attribution needs it for flagged segments, most windows flag none)."""

    __slots__ = ("_cells", "counts", "keys")

    def __init__(self, counts: Counts, keys: Sequence[str] = ()) -> None:
        self.counts = counts
        self.keys = keys
        self._cells: set[str] | None = None

    @property
    def cells(self) -> set[str]:
        if self._cells is None:
            self._cells = set(self.keys)
        return self._cells


class _RollPlan:
    """Which segments each cell key of one (family, rollups, service) rolls up to, as slots:
    worked out once per key, so a window's rollup hashes small integers, not segments."""

    def __init__(self, family: Family, rollups: tuple[str | None, ...], service: str) -> None:
        self.family = family
        self.rollups = rollups
        self.service = service
        self.slot: dict[Segment, int] = {}
        self.segments: list[Segment] = []
        self.of_key: dict[str, tuple[int, ...]] = {}

    def slots(self, key: str) -> tuple[int, ...]:
        dims = split_key(self.family, key)
        out = []
        for dim in self.rollups:
            if dim is None:
                seg = Segment(self.service)
            else:
                if dims.get(dim, MISSING) == MISSING:
                    continue
                seg = Segment(self.service, dim, dims[dim])
            slot = self.slot.get(seg)
            if slot is None:
                slot = self.slot[seg] = len(self.segments)
                self.segments.append(seg)
            out.append(slot)
        found = self.of_key[key] = tuple(out)
        return found


_PLANS: dict[tuple[str, tuple[str | None, ...], str], _RollPlan] = {}


def _roll(family: Family, signal: Signal, service: str, cells: Mapping[str, Counts]) -> Any:
    """The cells summed per segment the signal watches (in order of first contribution),
    with the cells behind each."""
    plan = _PLANS.get((family.name, signal.rollups, service))
    if plan is None:
        plan = _PLANS[(family.name, signal.rollups, service)] = _RollPlan(
            family, signal.rollups, service
        )
    of_key = plan.of_key
    parts: dict[int, list[Counts]] = {}
    keys: dict[int, list[str]] = {}
    for key, counts in cells.items():
        slots = of_key.get(key)
        if slots is None:
            slots = plan.slots(key)
        for slot in slots:
            have = parts.get(slot)
            if have is None:
                parts[slot] = [counts]
                keys[slot] = [key]
            else:
                have.append(counts)
                keys[slot].append(key)
    segments = plan.segments
    return {
        segments[slot]: _Rollup(
            list(have[0]) if len(have) == 1 else list(map(sum, zip(*have, strict=True))),
            keys[slot],
        )
        for slot, have in parts.items()
    }


class DetectionEngine:
    """Every signal, every segment, every window; returns the anomalies that open/resolve.

    Parameters
    ----------
    window_ms
        Window length.
    signals
        What to watch (default: :func:`default_signals`).
    open_after, resolve_after
        Lifecycle hysteresis per (signal, segment): consecutive anomalous windows to open,
        consecutive clearly normal windows to resolve.
    normal_score
        A window scoring below this (and not flagged, with a warm baseline) is clearly normal.
    pool_ms
        Span of the running sum that pooled signals are also judged on (default 5 minutes).
    single_window_score
        A warm rate's window, flagged alone, opens from this score; under it, only with the
        window before it flagged too (see the attribute).
    """

    def __init__(
        self,
        window_ms: int,
        signals: Sequence[Signal] | None = None,
        open_after: int = 1,
        resolve_after: int = 3,
        normal_score: float = 2.0,
        pool_ms: int = 5 * 60_000,
        observer: Observer | None = None,
        single_window_score: float = 5.25,
    ) -> None:
        self.window_ms = window_ms
        #: Called for every scored (signal, segment, window): reports and plots read the
        #: series through it; ``None`` (the default) costs nothing.
        self.observer = observer
        self.signals = list(default_signals() if signals is None else signals)
        self.open_after = open_after
        self.resolve_after = resolve_after
        self.normal_score = normal_score
        self.pool_ms = pool_ms
        #: A warm rate flagged on one window alone opens only from this score (standard
        #: deviations); under it, the window before must be flagged too. Every segment's window
        #: is a test: at 1,000 simulated events/s, 138-142 rate segments with trials per window
        #: make ~1.2 million tests a day, and chance windows beyond the threshold of 4 opened
        #: false incidents (measured: 2 in half a calm day, 1 in five 2.4-hour scenarios, e.g. 6
        #: of 41 payments failing in one region where 0.5 were expected, z = 4.0). 5.25 is the
        #: one-sided normal tail of ~8e-8, ~0.1 chance openings a day at that many tests; two
        #: windows beyond 4 in a row by chance, ~1e-9. A larger drop opens on its first window,
        #: a weaker one on its second.
        self.single_window_score = single_window_score
        #: Every segment that ever had a lifecycle, per (signal, service).
        self.members: dict[tuple[str, str], set[Segment]] = {}
        #: Rate members flagged on their last window: that window's start.
        self.flagged_at: dict[tuple[str, Segment], int] = {}
        self.pools: dict[tuple[str, str], _Pool] = {}
        #: Running sums of the signals judged over ``Signal.span_ms``.
        self.spans: dict[tuple[str, str], _Pool] = {}
        self.detectors: dict[tuple[str, Segment], Any] = {}
        #: Pooled signals judge the running sum with detectors of their own, learned at that
        #: scale (a per-window baseline misjudges it: e.g. OTP deliveries land one window after
        #: their sends, which makes single windows far noisier than their sum).
        self.pooled_detectors: dict[tuple[str, Segment], Any] = {}
        self.lifecycles: dict[tuple[str, Segment], IncidentLifecycle] = {}
        #: Open rate anomalies: the rate they opened with, and their recent windows' counts
        #: (the evidence of recovery, see ``_recovered``).
        self.open_level: dict[tuple[str, Segment], float] = {}
        self.recovery: dict[tuple[str, Segment], deque[Counts]] = {}
        #: Open rate anomalies: window start of the last window that looked like the outage.
        self.unflagged: dict[tuple[str, Segment], int] = {}
        #: Segments seen so far per (zero-fill signal, service): fed 0 when they send nothing.
        self.known: dict[tuple[str, str], set[Segment]] = {}
        #: Feedback: extra anomalous windows needed to open, and what changed, per member.
        self.extra_windows: dict[tuple[str, Segment], int] = {}
        self.notes: dict[tuple[str, Segment], str] = {}
        self.windows_seen = 0
        #: Signals whose ``settles_on`` counter has been seen (judged from the next window on).
        self.settled: set[str] = set()
        #: This window's cells rolled up, per (window, family, rollups, service): see _signal.
        self._rolled: dict[tuple[Any, ...], dict[Segment, _Rollup]] = {}

    def detector(self, signal: Signal, segment: Segment) -> Any:
        key = (signal.name, segment)
        det = self.detectors.get(key)
        if det is None:
            det = self.detectors[key] = signal.make(self.window_ms)
        return det

    def pooled_detector(self, signal: Signal, segment: Segment) -> Any:
        key = (signal.name, segment)
        det = self.pooled_detectors.get(key)
        if det is None:
            det = self.pooled_detectors[key] = signal.make(self.window_ms)
            if isinstance(det, SuccessRateDrop):  # its sums overlap: the windows' dispersion
                det.dispersion_source = self.detector(signal, segment)
        return det

    def process(self, window: EngineWindow) -> list[Anomaly]:
        """Score one complete window; return the anomalies that opened or resolved."""
        self.windows_seen += 1
        self._rolled.clear()
        out: list[Anomaly] = []
        for signal in self.signals:
            family = FAMILIES[signal.family]
            services = window.families.get(signal.family, {})
            if signal.settles_on is not None and signal.name not in self.settled:
                i = family.index(signal.settles_on)
                if any(c[i] for cells in services.values() for c in cells.values()):
                    self.settled.add(signal.name)
                continue
            names = set(services)
            if signal.zero_fill:
                covered = window.services
                names |= {
                    s for (sig, s) in self.known
                    if sig == signal.name and (covered is None or s in covered)
                }  # fmt: skip
            for service in sorted(names):
                cells = services.get(service, {})
                out.extend(self._signal(window, signal, family, service, cells))
        return out

    def _signal(
        self,
        window: EngineWindow,
        signal: Signal,
        family: Family,
        service: str,
        cells: Mapping[str, Counts],
    ) -> list[Anomaly]:
        t = window.start_ms
        if signal.span_ms > self.window_ms:
            span = self.spans.get((signal.name, service))
            if span is None:
                span = self.spans[(signal.name, service)] = _Pool(signal.span_ms // self.window_ms)
            cells = span.push(cells)
            rollups: dict[Segment, _Rollup] = _roll(family, signal, service, cells)
        else:  # signals of a family often watch the same segments: rolled up once a window
            memo = (t, family.name, signal.rollups, service)
            found = self._rolled.get(memo)
            if found is None:
                found = self._rolled[memo] = _roll(family, signal, service, cells)
            rollups = dict(found)  # zero-fill adds to it
        if signal.defers_to is not None and self._deferred(signal.defers_to, service):
            return []
        if signal.zero_fill:
            known = self.known.setdefault((signal.name, service), set())
            known.update(rollups)
            for seg in known - rollups.keys():
                rollups[seg] = _Rollup([0] * len(family.counters))
        score: dict[Segment, float] = {}
        flagged: set[Segment] = set()
        dets: dict[Segment, Any] = {}
        xs: dict[Segment, dict[str, Any]] = {}
        for seg, roll in rollups.items():
            det = dets[seg] = self.detector(signal, seg)
            x = xs[seg] = signal.x(roll.counts, t)
            score[seg] = det.score_one(x)
            if det.is_anomalous(x):
                flagged.add(seg)
            if self.observer is not None:
                self.observer(signal, seg, t, x, score[seg], seg in flagged, det)
        roots = self._attribute(signal, flagged, rollups, cells, t)
        if signal.zero_fill and Segment(service) in roots:
            roots = {Segment(service)}  # the whole service is silent: so is each part of it
        # Pooled evidence opens an incident and keeps the outage out of the baseline; it does
        # not hold one open (the pool remembers the outage for pool_ms after it ends).
        pflagged: set[Segment] = set()
        proots: set[Segment] = set()
        pevidence: dict[Segment, Any] = {}
        if signal.pooled:
            pool = self.pools.get((signal.name, service))
            if pool is None:
                size = max(1, self.pool_ms // self.window_ms)
                pool = self.pools[(signal.name, service)] = _Pool(size)
            pooled_cells = pool.push(cells)
            pooled: dict[Segment, _Rollup] = _roll(family, signal, service, pooled_cells)
            pflagged = set()
            for seg, roll in pooled.items():
                if seg not in rollups:
                    continue
                x = signal.x(roll.counts, t)
                pdet = self.pooled_detector(signal, seg)
                if seg not in flagged and pdet.is_anomalous(x):
                    pflagged.add(seg)
                    pevidence[seg] = x
                elif seg not in flagged:
                    pdet.learn_one(x)
            if pflagged:
                proots = self._attribute(
                    signal, flagged | pflagged, pooled, pooled_cells, t, pooled=True
                )
                proots &= pflagged
        end = t + self.window_ms
        out = []
        for seg in sorted(rollups):
            det = dets[seg]
            x_now = xs[seg]
            normal = seg not in flagged and det.warm and score[seg] < self.normal_score
            key = (signal.name, seg)
            life = self.lifecycles.get(key)
            if life is None:
                life = self.lifecycles[key] = self._lifecycle(key)
                self.members.setdefault((signal.name, service), set()).add(seg)
            pooled_counts = seg in proots and not life.is_open
            if pooled_counts and key in self.extra_windows:  # stricter after a false alarm
                pooled_counts = det.warm and score[seg] >= self.normal_score
            anomalous = seg in roots and self._confirmed(key, det, score[seg], t)
            anomalous = anomalous or pooled_counts
            if seg in flagged:
                self.flagged_at[key] = t
            else:
                self.flagged_at.pop(key, None)
            if life.is_open and key in self.open_level:
                outage = seg in flagged or seg in pflagged  # this window, or the recent pool
                normal = self._recovered(signal, key, det, rollups[seg].counts, outage, t)
            tr = life.update(end, anomalous=anomalous, normal=normal and not anomalous)
            if tr is not None:  # evidence (with bounds) only for what is reported
                if tr.action == "open" and seg not in roots:
                    shown = self.pooled_detector(signal, seg).explain(pevidence[seg])
                    opening_x = pevidence[seg]
                else:
                    shown = det.explain(x_now)
                    opening_x = x_now
                if tr.action == "open" and signal.pooled and opening_x.get("trials"):
                    self.open_level[key] = opening_x["successes"] / opening_x["trials"]
                else:
                    self.open_level.pop(key, None)
                    self.recovery.pop(key, None)
                    self.unflagged.pop(key, None)
            # An outage is not learned, unless the detector keeps its reference itself.
            if (seg not in flagged and seg not in pflagged) or getattr(
                det, "sees_every_window", False
            ):
                det.learn_one(x_now)
            if tr is not None and tr.action == "resolve" and signal.pooled:
                # The pool still holds the outage's windows: start it afresh, or they would
                # reopen this segment (or flag its neighbours) for pool_ms after the recovery.
                self.pools.pop((signal.name, service), None)
            if tr is not None:
                out.append(
                    Anomaly(tr.action, signal, seg, tr.opened_at_ms, t, end, shown,
                            tr.windows_open, self.notes.get(key, ""))
                )  # fmt: skip
        return out

    def _deferred(self, name: str, service: str) -> bool:
        """Whether signal ``name`` has an open anomaly anywhere in ``service`` (see
        ``Signal.defers_to``: a bank's collapse also moves the service's total)."""
        for seg in self.members.get((name, service), ()):
            life = self.lifecycles.get((name, seg))
            if life is not None and life.is_open:
                return True
        return False

    def _confirmed(self, key: tuple[str, Segment], det: Any, score: float, t: int) -> bool:
        """Whether a flagged window may open ``key`` (see ``single_window_score``): any
        detector but a warm rate's, a score beyond ``single_window_score``, or the window before
        flagged too. A cold rate is flagged only below a 50 % success rate: that is no chance."""
        if not isinstance(det, SuccessRateDrop) or not det.warm:
            return True
        return score >= self.single_window_score or self.flagged_at.get(key) == t - self.window_ms

    def _recovered(
        self,
        signal: Signal,
        key: tuple[str, Segment],
        det: Any,
        counts: Counts,
        outage: bool,
        t: int,
    ) -> bool:
        """Whether an open rate anomaly is clearly over, judged on the most recent windows that
        hold enough evidence to tell (not on this window alone: a window with 0 or 2 trials
        says nothing about a recovery). ``outage``: this window or the recent pool is flagged.

        Walking back from this window, windows are added up until their trials are enough that
        the outage, had it gone on at the rate it opened with, would have been flagged on them
        (the detector's own rule decides). Those recent windows are clearly normal when their
        rate is not flagged and scores below ``normal_score``. Without enough evidence, the
        window is grey (the incident stays open) unless nothing, neither a window nor the pool,
        has looked like the outage for ``2 * pool_ms``: a segment too quiet to prove its
        recovery is not held open for ever.

        >>> from detectors.rates import SuccessRateDrop
        >>> eng = DetectionEngine(10_000)
        >>> sig = next(s for s in eng.signals if s.name == "logins.success_rate")
        >>> det = SuccessRateDrop()
        >>> for _ in range(50):
        ...     det.learn_one({"successes": 95, "trials": 100})
        >>> key = (sig.name, Segment("wallet"))
        >>> eng.open_level[key] = 0.2  # opened at a 20 % login success rate
        >>> # login counters: success, failure, forced logout
        >>> eng._recovered(sig, key, det, [0, 0, 0], False, 0)  # no login at all: no evidence
        False
        >>> eng._recovered(sig, key, det, [2, 0, 0], False, 0)  # 2 successes: not enough yet
        False
        >>> eng._recovered(sig, key, det, [20, 1, 0], False, 0)  # 22 of 23 recently: recovered
        True
        >>> eng._recovered(sig, key, det, [1, 9, 0], True, 0)  # 1 of 10 now: not over
        False
        >>> quiet = (sig.name, Segment("shop"))  # a segment that sends nothing after its outage
        >>> eng.open_level[quiet] = 0.2
        >>> [eng._recovered(sig, quiet, det, [0, 0, 0], False, t) for t in (0, 590_000, 600_000)]
        [False, False, True]
        """
        limit = max(1, 2 * self.pool_ms // self.window_ms)
        recent = self.recovery.get(key)
        if recent is None:
            recent = self.recovery[key] = deque(maxlen=limit)
        recent.append(list(counts))
        if not det.warm:
            return False
        if outage or key not in self.unflagged:
            self.unflagged[key] = t  # the last window that looked like the outage
        total = [0] * len(counts)
        for window in reversed(recent):
            for i, v in enumerate(window):
                total[i] += v
            x = signal.x(total, t)
            trials = x.get("trials", 0)
            if trials <= 0:
                continue
            at_outage_rate = {"successes": round(self.open_level[key] * trials), "trials": trials}
            if det.is_anomalous(at_outage_rate):  # enough to tell the outage from a recovery
                return not det.is_anomalous(x) and det.score_one(x) < self.normal_score
        return t - self.unflagged[key] >= 2 * self.pool_ms

    def _lifecycle(self, member: tuple[str, Segment]) -> IncidentLifecycle:
        return IncidentLifecycle(
            open_after=self.open_after + self.extra_windows.get(member, 0),
            resolve_after=self.resolve_after,
        )

    # ------------------------------------------------------------------ feedback

    def require_more_evidence(self, members: Iterable[tuple[str, Segment]], because: str) -> None:
        """After a false alarm: each member needs one more anomalous window in a row to open,
        and its detectors one more standard deviation of evidence (at most
        ``detectors.feedback.MAX_EXTRA_WINDOWS`` more of each), and pooled evidence counts only
        in windows that are not clearly normal themselves (the pool remembers a one-window
        blip for ``pool_ms``). Verdicts are applied between windows, so no detector holds a
        judgement made at the old threshold."""
        from detectors.feedback import MAX_EXTRA_WINDOWS

        for member in members:
            extra = min(self.extra_windows.get(member, 0) + 1, MAX_EXTRA_WINDOWS)
            if extra > self.extra_windows.get(member, 0):
                for det in (self.detectors.get(member), self.pooled_detectors.get(member)):
                    if det is not None and hasattr(det, "threshold"):
                        det.threshold += 1.0
            self.extra_windows[member] = extra
            life = self.lifecycles.get(member)
            if life is not None:
                life.open_after = self.open_after + extra
            self.notes[member] = (
                f"needs {self.open_after + extra} anomalous windows in a row and {extra} more "
                f"standard deviation(s) of evidence to open ({because})"
            )

    def rebaseline(self, members: Iterable[tuple[str, Segment]], because: str) -> None:
        """The level an incident saw is the new normal: its members' detectors start again
        from it, and so do the detectors of the same signal whose segments overlap them (a
        bank's new level moves its region's and its service's rates too). Rates restart from
        the rate of the last ``pool_ms`` (pooled signals) or from the prior; counts keep their
        daily shape; invariant bursts forget their background rate. The signals that defer to
        a member's signal (its drift) start again too: they watch the same rate."""
        members = list(members)
        members += [
            (s.name, seg) for name, seg in members for s in self.signals if s.defers_to == name
        ]
        for name, seg in members:
            signal = next((s for s in self.signals if s.name == name), None)
            if signal is None:
                continue
            pool = self.pools.get((name, seg.service))
            recent = _roll(FAMILIES[signal.family], signal, seg.service, pool.total) if pool else {}
            for key in [k for k in self.detectors if k[0] == name and k[1].service == seg.service]:
                other = key[1]
                if other != seg and seg.dimension is not None and other.dimension == seg.dimension:
                    continue  # a sibling (another bank): untouched
                rate = None
                if other in recent:
                    x = signal.x(recent[other].counts, 0)
                    if x.get("trials"):
                        rate = min(max(x["successes"] / x["trials"], 0.01), 0.99)
                for det in (self.detectors.get(key), self.pooled_detectors.get(key)):
                    if isinstance(det, SuccessRateDrop):
                        det.rebaseline(rate)
                    elif isinstance(det, RateDrift):
                        det.rebaseline()
                    elif isinstance(det, SeasonalCount):
                        det.rebaseline(keep_season=True)
                    elif isinstance(det, InvariantBurst):
                        det.reset()
                self.extra_windows.pop(key, None)
                self.notes[key] = f"re-baselined ({because})"

    def close(self, members: Iterable[tuple[str, Segment]]) -> None:
        """End the members' open anomalies without a resolve (their incident was closed by
        feedback); a lasting anomaly opens a new one once it has the evidence again."""
        for member in members:
            if member in self.lifecycles:
                self.lifecycles[member] = self._lifecycle(member)
            self.open_level.pop(member, None)
            self.recovery.pop(member, None)
            self.unflagged.pop(member, None)
        services = {(name, seg.service) for name, seg in members}
        for pool_key in services:
            self.pools.pop(pool_key, None)

    def _attribute(
        self,
        signal: Signal,
        flagged: set[Segment],
        rollups: Mapping[Segment, _Rollup],
        cells: Mapping[str, Counts],
        t: int,
        pooled: bool = False,
    ) -> set[Segment]:
        """The flagged segments that no set of flagged segments of another dimension explains.

        Segment ``a`` is explained by dimension ``d`` when removing the cells of the flagged
        segments of ``d`` that overlap ``a`` makes ``a`` look normal, and those segments are
        the narrower explanation: they cover fewer cells than the flagged segments of ``a``'s
        own dimension that overlap them (one bank rather than every region it serves, one
        region rather than every bank; ties go to the dimension listed first in the signal).
        The service total is explained by any dimension that makes it look normal.
        """
        priority = {dim: i for i, dim in enumerate(signal.rollups)}
        by_dim: dict[str | None, list[Segment]] = {}
        for seg in flagged:
            by_dim.setdefault(seg.dimension, []).append(seg)

        def overlapping(a: Segment, dim: str | None) -> list[Segment]:
            return [b for b in by_dim.get(dim, []) if rollups[a].cells & rollups[b].cells]

        def breadth(segments: Iterable[Segment]) -> int:
            covered: set[str] = set()
            for seg in segments:
                covered |= rollups[seg].cells
            return len(covered)

        def normal_without(a: Segment, others: list[Segment]) -> bool:
            removed: set[str] = set()
            for b in others:
                removed |= rollups[a].cells & rollups[b].cells
            if not removed:
                return False
            residual = list(rollups[a].counts)
            for key in removed:
                for i, v in enumerate(cells[key]):
                    residual[i] -= v
            judge = self.pooled_detector(signal, a) if pooled else self.detector(signal, a)
            return not judge.is_anomalous(signal.x(residual, t))

        roots = set()
        for a in flagged:
            explained = False
            for dim in by_dim:
                if dim == a.dimension or dim is None:
                    continue
                others = overlapping(a, dim)
                if not others or not normal_without(a, others):
                    continue
                if a.dimension is None:
                    explained = True
                    break
                mirror = {m for b in others for m in overlapping(b, a.dimension)}
                narrower = (breadth(others), priority[dim]) < (
                    breadth(mirror),
                    priority[a.dimension],
                )
                if narrower:
                    explained = True
                    break
            if not explained:
                roots.add(a)
        return roots
