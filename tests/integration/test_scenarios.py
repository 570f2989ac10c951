"""Each seed outage, replayed through the embedded broker into a worker with default settings
(only ``RADAR_BROKER`` set): exactly one incident per labelled outage on the incidents topic,
each with a trigger and a resolve, every event valid against the JSON Schema.

Seeds here are used by no other test and were not used to tune the detectors. Each scenario
gets its own broker, so the default topic names are used as they are. Two workers sharing
the work: ``test_two_workers``.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jsonschema
import pytest

from streams.broker import EmbeddedBroker, create_topics
from streams.schemas import load_schema
from streams.settings import Settings
from tests.integration.conftest import ROOT, Worker, consume
from tests.integration.scenario_runs import (
    SCENARIOS,
    cli,
    diagnosis,
    env_for,
    incident_events,
    ms,
    one_incident,
    simulate,
)


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every scenario's traffic files, simulated two at a time (one per core)."""
    root = tmp_path_factory.mktemp("scenarios")
    with ThreadPoolExecutor(max_workers=2) as pool:
        outs = pool.map(lambda s: simulate(s, root / s), sorted(SCENARIOS))
        return dict(zip(sorted(SCENARIOS), outs, strict=True))


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_each_seed_outage_is_one_incident_with_a_trigger_and_a_resolve(
    scenario: str, traffic: dict[str, Path], tmp_path: Path
) -> None:
    data = traffic[scenario]
    labels = json.loads((data / "labels.json").read_text())
    assert len(labels) == 1

    with EmbeddedBroker() as broker:
        defaults = Settings()
        create_topics(broker.bootstrap, defaults.topics.all().values(), defaults.partitions)
        env = env_for(broker)
        # Default settings: the worker runs in its own directory (its data dir is relative).
        worker_dir = tmp_path / "worker"
        worker_dir.mkdir()
        worker = Worker(env, tmp_path / "worker.log", cwd=worker_dir)
        try:
            worker.start()
            replayed = cli(["replay", str(data), "--speed", "max"], env, ROOT, timeout=300)
            events = incident_events(broker, defaults.topics.incidents, timeout=240)
            assert worker.alive, worker.log()[-3000:]
            dead = consume(broker.bootstrap, defaults.topics.deadletter, lambda v: False, 2)
        finally:
            worker.stop()
    # What the broker path did, for any failure below (offline `evaluate` runs the same
    # detection on the same files without the broker: comparing with it tells which failed).
    why = diagnosis(replayed, dead, worker.log())

    schema = load_schema("incident")
    for e in events:
        jsonschema.validate(e, schema)
    evs, kinds = one_incident(events, f"{scenario}\n{why}")
    assert kinds[0] == "triggered" and kinds[-1] == "resolved", f"{kinds}\n{why}"
    assert kinds.count("triggered") == 1 and kinds.count("resolved") == 1, f"{kinds}\n{why}"
    assert len({e["id"] for e in evs}) == len(evs)  # no event published twice
    # It is the labelled outage: opened inside it, on one of its services, with its cause.
    label = labels[0]
    trigger = evs[0]
    details = trigger["data"]["payload"]["custom_details"]
    assert label["start"] < ms(details["opened_at"]) <= label["end"], f"{details}\n{label}\n{why}"
    services = {s["service"] for s in label["segments"]}
    assert trigger["data"]["payload"]["component"] in services, f"{details}\n{why}"
    assert evs[-1]["data"]["payload"]["class"] == label["cause"], f"{evs[-1]['data']}\n{why}"
    assert ms(evs[-1]["data"]["payload"]["custom_details"]["window_end"]) > label["end"]
