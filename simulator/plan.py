"""What to simulate: a validated :class:`SimulationPlan` built from command-line style options.

:func:`build_plan` checks every option and raises :class:`PlanError` naming the option, the
value and the fix; the ``simulate`` command turns that into exit code 2. The plan places the
incidents (``labels.json``) and the benign events (never labelled) in time.

>>> plan = build_plan(scenario="qiwi", seed=3, days=1, rate=20)
>>> plan.start, [i.id for i in plan.incidents], plan.incidents[0].scenario.operator
(1760832000000, ['qiwi-1'], 'mobifone')
>>> build_plan(scenario="qiwi", rate=-1)
Traceback (most recent call last):
...
simulator.plan.PlanError: --rate must be a positive number of events per second, got -1; ...
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from simulator import world as w
from simulator.scenarios import (
    SCENARIOS,
    AnnouncedMaintenance,
    Benign,
    Incident,
    MarketingSurge,
    QuietNight,
    Scenario,
    SlowBankHour,
)

__all__ = [
    "ALL_ORDER",
    "DEFAULT_START",
    "SCENARIO_NAMES",
    "PlanError",
    "SimulationPlan",
    "build_plan",
    "parse_start",
]

#: Default start: the morning of MoMo's outage, so default output is reproducible.
DEFAULT_START = "2025-10-19T00:00:00Z"
#: ``--scenario`` choices.
SCENARIO_NAMES: tuple[str, ...] = ("all", *SCENARIOS, "calm")
#: The incidents of ``all``, one a day in this order.
ALL_ORDER: tuple[str, ...] = ("momo", "mpesa", "shopee", "qiwi", "io")
#: Event times the schemas accept (2000-01-01 .. 2100-01-01).
MIN_TIME_MS, MAX_TIME_MS = 946_684_800_000, 4_102_444_800_000
#: Largest --rate accepted (a sanity bound, not a performance limit).
MAX_RATE = 1_000_000.0
#: Benign events keep this far from incidents so they never mix with them.
BENIGN_MARGIN_MS = 30 * w.MINUTE_MS


class PlanError(ValueError):
    """A bad option: the message names the option, the value and the fix."""

    def __init__(self, option: str, value: Any, problem: str, fix: str) -> None:
        super().__init__(f"{option} {problem}, got {value!r}; {fix}")
        self.option = option
        self.value = value


@dataclass(frozen=True)
class SimulationPlan:
    """Everything a run needs; same plan and seed give byte-identical output."""

    scenario: str
    seed: int
    start: int
    end: int
    rate: float
    incidents: tuple[Incident, ...] = ()
    benign: tuple[Benign, ...] = ()
    #: Length of one generation slice (event time); output is written slice by slice.
    slice_ms: int = 60_000
    #: Interval of one pre-aggregated ``requests`` sample.
    request_interval_ms: int = 10_000

    @property
    def days(self) -> float:
        return (self.end - self.start) / w.DAY_MS

    @property
    def day0(self) -> int:
        """UTC midnight of the start's day: incident onsets are hours after it."""
        return self.start - self.start % w.DAY_MS

    def labels(self) -> list[dict[str, Any]]:
        return [i.label() for i in self.incidents]

    def maintenance_records(self) -> list[dict[str, Any]]:
        """Values for the maintenance topic (without ``event_id``), in time order."""
        records: list[dict[str, Any]] = []
        for inc in self.incidents:
            records.extend(inc.scenario.maintenance_records(inc.start, inc.end))
        for ev in self.benign:
            records.extend(ev.maintenance_records(self.start))
        records = [r for r in records if self.start <= r["event_time"] < self.end]
        return sorted(records, key=lambda r: r["event_time"])

    def feedback_records(self) -> list[dict[str, Any]]:
        """Sparse operator verdicts: each incident confirmed, each campaign "expected".

        Their ``dedup_key`` is ``sim:<label id>`` (the simulator cannot know the incident
        manager's keys), so they exercise the topic without steering anything.
        """
        out: list[dict[str, Any]] = []
        for inc in self.incidents:
            segment = inc.scenario.segments()[0] if inc.scenario.segments() else {}
            out.append(
                {
                    "event_time": inc.start + 45 * w.MINUTE_MS,
                    "service": segment.get("service", "wallet"),
                    "dedup_key": f"sim:{inc.id}",
                    "verdict": "confirmed",
                    "author": "oncall",
                    "comment": f"confirmed: {inc.scenario.cause}",
                }
            )
        for ev in self.benign:
            if isinstance(ev, MarketingSurge):
                out.append(
                    {
                        "event_time": ev.start + 20 * w.MINUTE_MS,
                        "service": ev.service,
                        "dedup_key": f"sim:benign:{ev.kind}:{ev.start}",
                        "verdict": "expected",
                        "author": "oncall",
                        "comment": "marketing campaign",
                    }
                )
        out = [r for r in out if self.start <= r["event_time"] < self.end]
        return sorted(out, key=lambda r: r["event_time"])


def parse_start(text: str | int) -> int:
    """``--start`` as epoch ms: ISO 8601 date or date-time (naive = UTC) or epoch ms.

    >>> parse_start("2025-10-19"), parse_start("2025-10-19T07:00:00+07:00")
    (1760832000000, 1760832000000)
    >>> parse_start("1760832000000")
    1760832000000
    """
    raw = str(text).strip()
    if raw.isdigit():
        ms = int(raw)
    else:
        try:
            dt = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise PlanError(
                "--start",
                text,
                "is not an ISO date/time or epoch milliseconds",
                "give e.g. --start 2025-10-19T00:00:00Z or --start 1760832000000",
            ) from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        ms = round(dt.timestamp() * 1000)
    if not MIN_TIME_MS <= ms < MAX_TIME_MS:
        raise PlanError(
            "--start",
            text,
            "is outside the years 2000-2099 that event times may take",
            "give a date such as 2025-10-19T00:00:00Z",
        )
    return ms


def _positive(option: str, value: float | None, what: str, example: str) -> None:
    if value is not None and (not math.isfinite(value) or value <= 0):
        raise PlanError(option, value, f"must be a positive number {what}", f"give e.g. {example}")


def _variant(
    scenario: Scenario,
    onset_hour: float | None,
    duration_minutes: float | None,
    magnitude: float | None,
    targets: tuple[str, ...] | None,
) -> Scenario:
    changes: dict[str, Any] = {}
    if onset_hour is not None:
        changes["onset_hour"] = onset_hour
    if duration_minutes is not None:
        changes["duration_minutes"] = duration_minutes
    if magnitude is not None:
        changes["magnitude"] = magnitude
    scenario = dataclasses.replace(scenario, **changes)
    if targets is not None:
        try:
            scenario = scenario.with_targets(targets)
        except ValueError as exc:
            raise PlanError(
                "--target",
                ",".join(targets),
                f"is not valid for --scenario {scenario.name} ({exc})",
                f"give {scenario.target_field} from {', '.join(scenario.target_vocab)}",
            ) from None
    return scenario


def build_plan(
    *,
    scenario: str = "all",
    seed: int = 1,
    days: float | None = None,
    start: str | int = DEFAULT_START,
    rate: float = 50.0,
    onset_hour: float | None = None,
    duration_minutes: float | None = None,
    magnitude: float | None = None,
    target: str | None = None,
) -> SimulationPlan:
    """Validate options and place the incidents and benign events.

    ``days`` defaults to 1, or to the days the incidents of ``all`` need (one a day).
    ``onset_hour`` (UTC hour of the incident's day), ``duration_minutes`` and ``magnitude``
    override the scenario's defaults (for ``all``: of every incident); ``target`` (comma
    separated) names the segment of a single scenario (banks for mpesa, the operator for qiwi,
    sections for io, services for momo and shopee).

    Raises :class:`PlanError` for a bad value, an incident outside the simulated days or
    incidents that overlap.
    """
    if scenario not in SCENARIO_NAMES:
        raise PlanError(
            "--scenario", scenario, "is not a scenario", f"choose from {', '.join(SCENARIO_NAMES)}"
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise PlanError("--seed", seed, "must be a non-negative integer", "give e.g. --seed 1")
    _positive("--rate", rate, "of events per second", "--rate 50")
    if rate > MAX_RATE:
        raise PlanError("--rate", rate, f"is above {MAX_RATE:g}", "give a smaller --rate")
    _positive("--days", days, "of days", "--days 1 or --days 0.5")
    _positive("--duration-minutes", duration_minutes, "of minutes", "--duration-minutes 120")
    if duration_minutes is not None and duration_minutes > 24 * 60:
        raise PlanError(
            "--duration-minutes", duration_minutes, "is longer than a day", "give at most 1440"
        )
    if magnitude is not None and not (math.isfinite(magnitude) and 0 < magnitude <= 1):
        raise PlanError(
            "--magnitude",
            magnitude,
            "must be in (0, 1] (1 = the full effect)",
            "give e.g. --magnitude 0.5",
        )
    if onset_hour is not None and not (math.isfinite(onset_hour) and 0 <= onset_hour < 24):
        raise PlanError(
            "--onset-hour", onset_hour, "must be an hour of the day in [0, 24)", "e.g. 9.5"
        )
    targets: tuple[str, ...] | None = None
    if target is not None:
        targets = tuple(t.strip() for t in target.split(",") if t.strip())
        if scenario in ("all", "calm") or not targets:
            raise PlanError(
                "--target",
                target,
                "applies to one incident scenario (momo, mpesa, shopee, qiwi, io)",
                "drop --target or choose such a --scenario",
            )
    start_ms = parse_start(start)

    names = ALL_ORDER if scenario == "all" else () if scenario == "calm" else (scenario,)
    scenarios = [
        _variant(
            dataclasses.replace(SCENARIOS[name](), day=day),
            onset_hour,
            duration_minutes,
            magnitude,
            targets,
        )
        for day, name in enumerate(names)
    ]
    day0 = start_ms - start_ms % w.DAY_MS
    needed = 0.0
    for sc in scenarios:
        _, end = sc.window(day0)
        needed = max(needed, math.ceil((end - start_ms) / w.DAY_MS * 100) / 100)
    if days is None:
        days = float(max(1, math.ceil(needed)))
    end_ms = start_ms + round(days * w.DAY_MS)
    if end_ms > MAX_TIME_MS:
        raise PlanError("--days", days, "runs past the year 2099", "give fewer --days")

    incidents: list[Incident] = []
    for n, sc in enumerate(scenarios, 1):
        s, e = sc.window(day0)
        if s < start_ms:
            raise PlanError(
                "--onset-hour" if onset_hour is not None else "--start",
                onset_hour if onset_hour is not None else start,
                f"puts the {sc.name} onset ({_iso(s)}) before the start ({_iso(start_ms)})",
                "give a later --onset-hour or an earlier --start",
            )
        if e > end_ms:
            raise PlanError(
                "--days",
                round(days, 4),
                f"is too short: the {sc.name} incident ends at {_iso(e)}, after the end "
                f"({_iso(end_ms)})",
                f"give --days {needed:g} or more, or a shorter --duration-minutes",
            )
        if incidents and s < incidents[-1].end:
            raise PlanError(
                "--duration-minutes",
                duration_minutes,
                f"makes the {incidents[-1].scenario.name} and {sc.name} incidents overlap",
                "give a shorter --duration-minutes",
            )
        incidents.append(Incident(f"{sc.name}-{n}", sc, s, e))

    benign = _benign(seed, start_ms, end_ms, incidents)
    return SimulationPlan(scenario, seed, start_ms, end_ms, float(rate), tuple(incidents), benign)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _benign(seed: int, start: int, end: int, incidents: list[Incident]) -> tuple[Benign, ...]:
    """One of each benign event a day (a quiet night only the first night), clear of incidents.

    Times jitter with the seed; an event that would come near an incident is left out.
    """
    rng = random.Random(seed * 7919 + 17)
    day0 = start - start % w.DAY_MS
    events: list[Benign] = []
    n_days = math.ceil((end - day0) / w.DAY_MS)
    maint_services = ("pay", "food", "shop")
    for d in range(n_days):
        base = day0 + d * w.DAY_MS
        jitter = [rng.randint(-30, 30) for _ in range(3)]  # whole minutes
        bank = w.BANKS[rng.randrange(len(w.BANKS))]
        candidates: list[Benign] = []
        if d == 0:
            candidates.append(QuietNight(base, base + 5 * w.HOUR_MS))
        m_start = base + round((2.25 * 60 + jitter[0]) * w.MINUTE_MS)
        candidates.append(
            AnnouncedMaintenance(m_start, m_start + 40 * w.MINUTE_MS, service=maint_services[d % 3])
        )
        s_start = base + round((16.5 * 60 + jitter[1]) * w.MINUTE_MS)
        candidates.append(SlowBankHour(s_start, s_start + w.HOUR_MS, bank=bank))
        c_start = base + round((19 * 60 + jitter[2]) * w.MINUTE_MS)
        candidates.append(MarketingSurge(c_start, c_start + w.HOUR_MS))
        for ev in candidates:
            if ev.start < start or ev.end > end:
                continue
            if any(
                ev.start < inc.end + BENIGN_MARGIN_MS and inc.start - BENIGN_MARGIN_MS < ev.end
                for inc in incidents
            ):
                continue
            events.append(ev)
    events.sort(key=lambda e: e.start)
    return tuple(events)
