"""Labelled payment-platform traffic: the outages of INCIDENTS.md on a realistic background.

Pure (stdlib and numpy, plus :mod:`streams.traffic` to write traffic files); the
``python -m streams simulate`` command is a thin shell over :func:`build_plan` and
:func:`simulate`.

>>> import tempfile
>>> plan = build_plan(scenario="qiwi", seed=5, days=0.02, rate=5, onset_hour=0.1,
...                   duration_minutes=10)
>>> with tempfile.TemporaryDirectory() as d:
...     summary = simulate(plan, d)
>>> summary.labels[0]["cause"], summary.counts["otp"] > 0
('otp_operator_delivery_failure', True)
"""

from simulator.engine import ProgressCallback, SimulationSummary, simulate
from simulator.generate import TOPICS
from simulator.plan import (
    DEFAULT_START,
    SCENARIO_NAMES,
    PlanError,
    SimulationPlan,
    build_plan,
    parse_start,
)
from simulator.scenarios import (
    SCENARIOS,
    Calm,
    Incident,
    Io,
    Momo,
    Mpesa,
    Qiwi,
    Scenario,
    Shopee,
)

__all__ = [
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
