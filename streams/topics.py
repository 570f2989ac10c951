"""Every topic the worker reads or writes, declared once. Names come from settings."""

from __future__ import annotations

from streams.app import app, settings

#: Input topic name -> input kind (``transactions``, ``logins``, ...).
KIND_OF_TOPIC = {name: kind for kind, name in settings.topics.inputs().items()}

#: Inputs: raw bytes, so that a record Faust cannot decode is still ours to dead-letter.
#: One subscription to every input topic; ``event.message.topic`` says which.
inputs_topic = app.topic(
    *settings.topics.inputs().values(),
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
)

#: Internal: per-window partial counts, partitioned by service and bundled per partition
#: (:mod:`streams.bundles`), and the input partitions' "closed" markers.
windows_topic = app.topic(
    settings.topics.windows, key_serializer="raw", value_serializer="json", internal=True
)

#: Internal, compacted: each account's balance when stage 1 first learned it or its funded
#: status flipped, keyed by account, on the partition of its balances record; written as JSON
#: through Faust's producer (:func:`streams.agents.ingest.publish_accounts`), read back by a
#: worker taking the balances partition over (:func:`streams.agents.ingest.recall_accounts`).
account_state_topic = app.topic(
    settings.topics.account_state, key_serializer="raw", value_serializer="json", internal=True
)

#: Outputs: JSON (CloudEvents incidents keyed by dedup key; dead letters keyed as the input).
incidents_topic = app.topic(
    settings.topics.incidents, key_serializer="raw", value_serializer="json"
)
deadletter_topic = app.topic(
    settings.topics.deadletter, key_serializer="raw", value_serializer="json"
)
