"""Plans: option checking (errors name the option, value and fix), scheduling, scenarios."""

from __future__ import annotations

import dataclasses
import doctest
import importlib
import itertools

import pytest

import simulator
from simulator import SCENARIOS, Io, Momo, PlanError, Qiwi, build_plan, parse_start
from simulator import world as w
from simulator.generate import TOPICS
from streams.settings import INPUT_TOPICS

START = 1_760_832_000_000  # 2025-10-19T00:00:00Z, a Sunday


def test_topics_are_the_input_topics() -> None:
    assert TOPICS == INPUT_TOPICS


def test_public_exports() -> None:
    assert sorted(simulator.__all__) == sorted(
        [
            "DEFAULT_START",
            "SCENARIOS",
            "SCENARIO_NAMES",
            "TOPICS",
            "Calm",
            "Incident",
            "Io",
            "Momo",
            "Mpesa",
            "PlanError",
            "ProgressCallback",
            "Qiwi",
            "Scenario",
            "Shopee",
            "SimulationPlan",
            "SimulationSummary",
            "build_plan",
            "parse_start",
            "simulate",
        ]
    )


@pytest.mark.parametrize(
    "module",
    [
        "simulator",
        "simulator.world",
        "simulator.conditions",
        "simulator.scenarios",
        "simulator.plan",
    ],
)
def test_doctests(module: str) -> None:
    result = doctest.testmod(
        importlib.import_module(module),
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
    )
    assert result.failed == 0 and result.attempted > 0


@pytest.mark.parametrize(
    ("options", "option", "words"),
    [
        ({"scenario": "paypal"}, "--scenario", "choose from"),
        ({"seed": -1}, "--seed", "non-negative"),
        ({"rate": 0}, "--rate", "--rate 50"),
        ({"rate": float("nan")}, "--rate", "positive"),
        ({"days": -2}, "--days", "positive"),
        ({"start": "yesterday"}, "--start", "2025-10-19T00:00:00Z"),
        ({"start": "1899-01-01"}, "--start", "outside"),
        ({"magnitude": 1.5}, "--magnitude", "(0, 1]"),
        ({"magnitude": 0}, "--magnitude", "(0, 1]"),
        ({"onset_hour": 24}, "--onset-hour", "[0, 24)"),
        ({"duration_minutes": 0}, "--duration-minutes", "positive"),
        ({"duration_minutes": 2000}, "--duration-minutes", "at most 1440"),
        ({"scenario": "qiwi", "days": 0.5}, "--days", "--days 0.71 or more"),
        ({"scenario": "all", "days": 2}, "--days", "or more"),
        ({"scenario": "mpesa", "target": "NOPE"}, "--target", "VCB"),
        ({"scenario": "qiwi", "target": "viettel,mobifone"}, "--target", "exactly one"),
        ({"scenario": "calm", "target": "VCB"}, "--target", "drop --target"),
        (
            {"scenario": "qiwi", "start": "2025-10-19T16:00:00Z"},
            "--start",
            "before the start",
        ),
        (
            {"scenario": "all", "duration_minutes": 1440},  # qiwi would run into io
            "--duration-minutes",
            "overlap",
        ),
    ],
)
def test_bad_options_name_the_option_value_and_fix(
    options: dict[str, object], option: str, words: str
) -> None:
    with pytest.raises(PlanError) as info:
        build_plan(**options)  # type: ignore[arg-type]
    message = str(info.value)
    assert message.startswith(option + " "), message
    assert words in message, message
    assert info.value.option == option


def test_parse_start_forms() -> None:
    assert parse_start("2025-10-19") == START
    assert parse_start("2025-10-19T00:00:00Z") == START
    assert parse_start("2025-10-19T07:00:00+07:00") == START
    assert parse_start(str(START)) == START
    assert parse_start(START) == START


def test_single_scenario_defaults() -> None:
    plan = build_plan(scenario="mpesa")
    assert plan.start == START and plan.days == 1 and plan.rate == 50 and plan.seed == 1
    (inc,) = plan.incidents
    assert inc.start == START + 10 * w.HOUR_MS
    assert inc.end == inc.start + 240 * w.MINUTE_MS
    assert inc.label()["segments"] == [
        {"service": "wallet", "partner_bank": "ACB"},
        {"service": "wallet", "partner_bank": "BIDV"},
    ]


def test_all_spreads_every_incident_over_its_own_day() -> None:
    plan = build_plan(scenario="all")
    names = [i.scenario.name for i in plan.incidents]
    assert names == ["momo", "mpesa", "shopee", "qiwi", "io"]
    assert plan.end >= plan.incidents[-1].end and plan.days <= 5
    for day, inc in enumerate(plan.incidents):
        assert START + day * w.DAY_MS <= inc.start < inc.end <= START + (day + 1) * w.DAY_MS
    for a, b in itertools.pairwise(plan.incidents):
        assert a.end < b.start
    assert len({i.id for i in plan.incidents}) == 5
    causes = {i.scenario.cause for i in plan.incidents}
    assert causes == {
        "login_outage",
        "partner_bank_transfer_delay",
        "multi_service_outage",
        "otp_operator_delivery_failure",
        "section_overload",
    }


def test_benign_events_keep_clear_of_incidents() -> None:
    plan = build_plan(scenario="all", seed=3)
    kinds = {b.kind for b in plan.benign}
    assert {"quiet_night", "announced_maintenance", "slow_bank_hour", "marketing_surge"} <= kinds
    for ev in plan.benign:
        for inc in plan.incidents:
            assert ev.end <= inc.start or inc.end <= ev.start
    calm = build_plan(scenario="calm", days=3)
    assert calm.incidents == () and calm.labels() == []
    assert len(calm.benign) >= 10


def test_timing_options_and_targets_reach_the_scenario() -> None:
    plan = build_plan(
        scenario="qiwi", onset_hour=9.25, duration_minutes=30, magnitude=0.5, target="viettel"
    )
    sc = plan.incidents[0].scenario
    assert isinstance(sc, Qiwi)
    assert (sc.onset_hour, sc.duration_minutes, sc.magnitude, sc.operator) == (
        9.25,
        30,
        0.5,
        "viettel",
    )
    assert plan.incidents[0].start == START + round(9.25 * w.HOUR_MS)
    io = build_plan(scenario="io", target="wallet.cards").incidents[0].scenario
    assert isinstance(io, Io) and io.sections == ("wallet.cards",)
    assert io.segments() == [{"service": "wallet", "section": "wallet.cards"}]


def test_scenarios_are_dataclasses_with_defaults() -> None:
    for name, cls in SCENARIOS.items():
        sc = cls()
        assert sc.name == name and sc.cause
        assert 0 <= sc.onset_hour < 24 and sc.duration_minutes > 0 and sc.magnitude == 1
        variant = dataclasses.replace(sc, magnitude=0.3, day=2)
        assert variant.level(10 * w.MINUTE_MS, 10 * w.MINUTE_MS) == pytest.approx(0.3)
        assert sc.segments() and all("service" in seg for seg in sc.segments())
    momo = Momo()
    records = momo.maintenance_records(0, 100 * w.MINUTE_MS)
    assert records[0]["event_time"] > 0  # acknowledged after the onset
    assert records[0]["end_time"] < 100 * w.MINUTE_MS  # the declared end is overrun


def test_seasonality() -> None:
    import numpy as np

    hours = np.arange(24) * w.HOUR_MS
    profile = w.daily_profile(hours)
    assert profile.max() == pytest.approx(1.0)
    assert 0.10 <= profile.min() <= 0.15
    monday = START + w.DAY_MS
    assert w.weekday_factor(monday) == 1.0 and w.weekday_factor(START) < 0.9
