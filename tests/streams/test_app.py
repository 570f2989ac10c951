"""The Faust application's one patch: offsets are never committed past an unacked record."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from faust.transport.consumer import Consumer

import streams.app  # noqa: F401  (applies the patch)


class _Offsets:
    """Just the bookkeeping ``Consumer._new_offset`` reads, for one partition ``tp``."""

    def __init__(self, committed: int | None, acked: list[int], gap: Any = None) -> None:
        self._acked = defaultdict(list, {"tp": list(acked)})
        self._acked_index = defaultdict(set, {"tp": set(acked)})
        self._committed_offset = defaultdict(lambda: None, {"tp": committed})
        self._gap = defaultdict(lambda: None, {"tp": gap})


def new_offset(committed: int | None, acked: list[int]) -> int | None:
    result: int | None = Consumer._new_offset(_Offsets(committed, acked), "tp")  # type: ignore[arg-type]
    return result


def test_the_next_record_unacked_holds_the_commit_back() -> None:
    # Committed 100 (the next to read); 100 is held unacked, 101-110 are acked.
    assert new_offset(100, list(range(101, 111))) is None  # unpatched faust said 111
    assert new_offset(0, list(range(1, 5))) is None  # and at 0 (faust: `if committed_offset`)


def test_acked_from_the_committed_offset_on_commits_up_to_the_first_gap() -> None:
    assert new_offset(100, list(range(100, 111))) == 111
    assert new_offset(100, [100, 101, 102, 105, 106]) == 103
    assert new_offset(None, [7, 8, 9]) == 10  # nothing committed yet: faust's own rule


def test_with_the_web_server_off_the_monitor_keeps_no_per_record_figures() -> None:
    """Faust's monitor counts every message and event for its web views only; without the
    web server the worker runs a quiet one (faster), with it Faust's own."""
    from faust.sensors.monitor import Monitor

    from streams.app import QuietMonitor, monitor_for
    from streams.settings import Settings

    assert isinstance(monitor_for(Settings()), QuietMonitor)
    assert monitor_for(Settings(web_enabled=True)) is None  # Faust's default monitor

    def received_after_one_message(monitor: Monitor) -> int:
        from faust.types import TP

        tp = TP("logins", 0)
        message = type("Message", (), {"tp": tp, "offset": 0, "timestamp": 0.0})()
        monitor.on_message_in(tp, 0, message)
        monitor.on_send_initiated(None, "topic", None, 1, 1)
        return int(monitor.messages_received_total + monitor.messages_sent)

    assert received_after_one_message(Monitor()) == 2  # what the quiet one leaves out
    assert received_after_one_message(QuietMonitor()) == 0
