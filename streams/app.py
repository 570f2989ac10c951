"""The one Faust application of outage-radar, configured from :class:`Settings`."""

from __future__ import annotations

from typing import Any

import faust

from streams.broker import TANSU_FAUST_SETTINGS, patch_faust_for_tansu
from streams.settings import Settings

settings = Settings.from_env()


def faust_config(s: Settings) -> dict[str, Any]:
    """Faust settings derived from ours (the only place they are written)."""
    conf: dict[str, Any] = {
        "broker": s.broker,
        "key_serializer": "raw",
        "value_serializer": "raw",
        "processing_guarantee": "at_least_once",
        "topic_partitions": s.partitions,
        "topic_replication_factor": s.replication,
        "datadir": s.data_dir,
        "web_enabled": s.web_enabled,
        "web_port": s.web_port,
        "consumer_auto_offset_reset": "earliest",
        "producer_linger_ms": 5,
        "stream_buffer_maxsize": 16_384,
        "broker_max_poll_records": 2_000,
        # Ingest holds the first record of each open window unacked (restart safety, see
        # streams.agents.ingest): waiting for every event to be acked before a rebalance or
        # a stop would wait for ever. What is acked is committed; the rest is read again.
        "stream_wait_empty": False,
    }
    if s.broker_flavour == "tansu":
        conf.update(TANSU_FAUST_SETTINGS)
    return conf


if settings.broker_flavour == "tansu":
    patch_faust_for_tansu()

app = faust.App(settings.app_id, **faust_config(settings))
