"""The one wall-clock rule of stage 1: when an input partition counts as quiet."""

from __future__ import annotations

from streams.agents.ingest import quiet_seconds


def test_a_partition_without_records_is_quiet_only_once_the_input_flows() -> None:
    # The worker has been up for 60 s; the replay's first records arrived 2 s ago, and this
    # partition's first batch is a moment behind the others': it is not quiet yet (counting
    # from the worker's start, it was "quiet for 60 s" and got advanced past its records).
    assert quiet_seconds(now=60.0, last_record=None, assigned=0.0, first_handled=58.0) == 2.0
    # Still nothing 5 s after the input started: now it is (an empty partition must not
    # hold back every window for ever).
    assert quiet_seconds(now=63.0, last_record=None, assigned=0.0, first_handled=58.0) == 5.0
    # Nothing handled anywhere yet: nothing is known, so not quiet.
    assert quiet_seconds(now=60.0, last_record=None, assigned=0.0, first_handled=None) is None


def test_a_partition_assigned_by_a_rebalance_gets_its_own_grace() -> None:
    assert quiet_seconds(now=60.0, last_record=None, assigned=59.0, first_handled=10.0) == 1.0
    # A record since: its time counts, whatever the assignment.
    assert quiet_seconds(now=60.0, last_record=52.0, assigned=59.0, first_handled=10.0) == 8.0
