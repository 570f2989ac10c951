"""The obvious approach, for comparison: a Faust agent that scores every event with River.

One agent over the same input topics as the worker; per event it parses the JSON value, turns
it into features (the record's numbers, e.g. ``latency_ms`` and ``amount``, plus one-hot flags
of its outcome fields such as ``status`` or ``stage``), and calls ``score_one`` then
``learn_one`` of a ``MinMaxScaler() | HalfSpaceTrees()`` pipeline (one per input topic, scaled
so that HalfSpaceTrees sees features in [0, 1] as it expects). Events scoring at least
:data:`THRESHOLD` after :data:`WARMUP` events are published to the incidents topic. Records it
cannot parse are counted and skipped.

It runs with exactly the worker's Faust configuration (:func:`streams.app.faust_config`: raw
serialisers, buffers, poll sizes, the embedded broker's settings) and reads the same ``RADAR_*``
variables: ``RADAR_APP_ID`` is its group, the input topic names are the worker's, and
``RADAR_TOPIC_INCIDENTS`` is where it publishes. Start it as the worker is started::

    RADAR_BROKER=kafka://127.0.0.1:PORT RADAR_BROKER_FLAVOUR=tansu RADAR_APP_ID=naive \\
        python -m bench.naive_app worker -l info
"""

from __future__ import annotations

import json
import math
from typing import Any

import faust
from river import anomaly, compose, preprocessing

from streams.app import faust_config, settings

#: Score at or above which an event is reported.
THRESHOLD = 0.95
#: Events per topic before anything is reported (HalfSpaceTrees' first window is empty).
WARMUP = 1_000
#: String fields that become one-hot features ("status=failed": 1.0).
CATEGORICAL = ("status", "outcome", "stage", "kind", "category", "reason", "error_code")
#: Numeric fields that are identities or times, not measurements.
SKIPPED = ("event_time", "interval_ms")

app = faust.App(settings.app_id, **faust_config(settings))
KIND_OF_TOPIC = {name: kind for kind, name in settings.topics.inputs().items()}
inputs = app.topic(
    *KIND_OF_TOPIC, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
)
output = app.topic(settings.topics.incidents, key_serializer="raw", value_serializer="raw")

models: dict[str, Any] = {}
seen: dict[str, int] = {}
unreadable = 0


def features(record: dict[str, Any]) -> dict[str, float]:
    """The record's measurements and outcome flags.

    >>> features({"event_time": 1, "amount": 5, "status": "failed", "region": "north",
    ...           "ok": True, "latency_ms": None})
    {'amount': 5.0, 'status=failed': 1.0}
    """
    x: dict[str, float] = {}
    for name, value in record.items():
        if name in SKIPPED or value is None or isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            if math.isfinite(value):
                x[name] = float(value)
        elif name in CATEGORICAL and isinstance(value, str):
            x[f"{name}={value}"] = 1.0
    return x


def model_for(kind: str) -> Any:
    model = models.get(kind)
    if model is None:
        model = models[kind] = compose.Pipeline(
            preprocessing.MinMaxScaler(), anomaly.HalfSpaceTrees(seed=42)
        )
    return model


@app.agent(inputs, concurrency=1)
async def naive(stream: Any) -> None:
    global unreadable
    async for event in stream.events():
        topic = event.message.topic
        kind = KIND_OF_TOPIC.get(topic, topic)
        try:
            record = json.loads(event.value)
        except (ValueError, TypeError):
            unreadable += 1
            continue
        if not isinstance(record, dict):
            unreadable += 1
            continue
        x = features(record)
        model = model_for(kind)
        score = model.score_one(x)
        model.learn_one(x)
        n = seen[kind] = seen.get(kind, 0) + 1
        if n > WARMUP and score >= THRESHOLD:
            body = {"topic": topic, "offset": event.message.offset, "score": score, "x": x}
            await output.send(key=event.message.key, value=json.dumps(body).encode())


if __name__ == "__main__":
    app.main()
