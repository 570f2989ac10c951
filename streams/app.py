"""The one Faust application of outage-radar, configured from :class:`Settings`."""

from __future__ import annotations

from typing import Any

import faust
from faust.sensors.monitor import Monitor

from streams.broker import TANSU_FAUST_SETTINGS, detect_flavour, patch_faust_for_tansu
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


def keep_unacked_head_uncommitted() -> None:
    """Never commit past an unacked record (faust-streaming 0.15.3 does, by one).

    Faust stores the committed offset as the next offset to read, but its head-gap check in
    ``Consumer._new_offset`` treats it as the last one read: with offset N committed, N not
    acked and N+1... acked, ``min(acked) - N`` is 1, "no gap", and it commits past N. Ingest
    holds exactly such records (the first of each open window, see streams.agents.ingest), so
    a restart lost the open windows (measured: a 631-record window read back as 0). Offsets
    Faust knows to be gaps (``_gap``) still go through its own merge. Idempotent.
    """
    from faust.transport.consumer import Consumer

    if getattr(Consumer, "_radar_head_kept", False):
        return
    original = Consumer._new_offset

    def new_offset(self: Any, tp: Any) -> int | None:
        acked, committed = self._acked[tp], self._committed_offset[tp]
        if acked and committed is not None and not self._gap[tp] and min(acked) > committed:
            return None  # the record at `committed` is not acked yet
        result: int | None = original(self, tp)
        return result

    setattr(Consumer, "_new_offset", new_offset)  # noqa: B010
    setattr(Consumer, "_radar_head_kept", True)  # noqa: B010


class QuietMonitor(Monitor):
    """Faust's monitor without its per-record statistics.

    Faust calls its monitor for every message fetched, every event in and out of each stream
    and every send; the figures it keeps serve only Faust's web views. With the web server
    off (``RADAR_WEB_ENABLED=false``, the default) nothing reads them. Measured with
    ``python -m bench.worker_bench`` (medians of 3 runs, the two monitors alternated five
    times, 2026-12-04): ahead in three pairs (+7 %, +12 %, +20 %), even in two (-1.5 %,
    -0.2 %); the machine's own noise is of that order. The rest of the monitor (commits,
    rebalances, assignments) is Faust's own.
    """

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        return None

    def on_stream_event_out(
        self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None
    ) -> None:
        return None

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_send_initiated(self, *args: Any, **kwargs: Any) -> None:
        return None

    def on_send_completed(self, producer: Any, state: Any, metadata: Any) -> None:
        return None


def monitor_for(s: Settings) -> Monitor | None:
    """The monitor the app runs with: Faust's own (None) when its web server is on."""
    return None if s.web_enabled else QuietMonitor()


keep_unacked_head_uncommitted()
if settings.broker_flavour == "tansu":
    patch_faust_for_tansu()

app = faust.App(settings.app_id, monitor=monitor_for(settings), **faust_config(settings))

_flavour: list[str] = []  # the flavour in force, once known


def broker_flavour() -> str:
    """``kafka`` or ``tansu``: the setting, or for ``auto`` (the default) the broker's own
    answer, asked once and only by the commands that talk to the broker."""
    if not _flavour:
        chosen = settings.broker_flavour
        _flavour.append(detect_flavour(settings.bootstrap_servers) if chosen == "auto" else chosen)
    return _flavour[0]


def configure_for_broker() -> str:
    """Before the worker starts: turn on the embedded broker's workarounds if that is what
    ``RADAR_BROKER`` points at (Faust reads these settings when it builds its clients)."""
    flavour = broker_flavour()
    if flavour == "tansu" and settings.broker_flavour == "auto":
        for key, value in TANSU_FAUST_SETTINGS.items():
            setattr(app.conf, key, value)
        patch_faust_for_tansu()
    return flavour
