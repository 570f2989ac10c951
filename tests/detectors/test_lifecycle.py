"""Tests for detectors.lifecycle.IncidentLifecycle."""

from __future__ import annotations

import json

import pytest

from detectors.lifecycle import IncidentLifecycle, Transition

MINUTE = 60_000

A = (True, False)  # anomalous
N = (False, True)  # clearly normal
G = (False, False)  # grey zone


def feed(
    life: IncidentLifecycle, pattern: list[tuple[bool, bool]], start: int = 1
) -> list[tuple[int, Transition]]:
    """Feed one decision per minute; return [(minute, transition)] for each transition."""
    out = []
    for i, (anomalous, normal) in enumerate(pattern, start=start):
        transition = life.update(i * MINUTE, anomalous=anomalous, normal=normal)
        if transition is not None:
            out.append((i, transition))
    return out


def test_open_then_resolve_after_the_hold_down() -> None:
    life = IncidentLifecycle(open_after=1, resolve_after=3)
    assert not life.is_open and life.opened_at_ms is None
    changes = feed(life, [N, A, A, N, N, N, N])
    assert changes == [
        (2, Transition("open", 2 * MINUTE, 2 * MINUTE, 1)),
        (6, Transition("resolve", 6 * MINUTE, 2 * MINUTE, 5)),
    ]
    assert not life.is_open and life.opened_at_ms is None


def test_hold_down_needs_consecutive_normal_windows() -> None:
    life = IncidentLifecycle(resolve_after=3)
    changes = feed(life, [A, N, N, A, N, N])
    assert [t.action for _, t in changes] == ["open"]
    assert life.is_open and life.opened_at_ms == MINUTE
    assert feed(life, [N], start=7) == [(7, Transition("resolve", 7 * MINUTE, MINUTE, 7))]


def test_open_after_counts_consecutive_anomalous_windows() -> None:
    life = IncidentLifecycle(open_after=3)
    assert feed(life, [A, A, N, A, A, G, A, A]) == []  # runs broken by normal and grey windows
    changes = feed(life, [A], start=9)
    # opened_at is the first window of the run that opened it; the run counts as open windows.
    assert changes == [(9, Transition("open", 9 * MINUTE, 7 * MINUTE, 3))]


def test_no_flapping_on_alternating_decisions() -> None:
    life = IncidentLifecycle(resolve_after=3)
    changes = feed(life, [A, N] * 30)
    assert [t.action for _, t in changes] == ["open"]
    assert life.is_open


def test_grey_zone_keeps_an_incident_open_and_restarts_the_hold_down() -> None:
    life = IncidentLifecycle(resolve_after=3)
    changes = feed(life, [A, N, N, G, N, N, G, G, N, N])
    assert [t.action for _, t in changes] == ["open"]
    assert life.is_open
    assert [t.action for _, t in feed(life, [N], start=11)] == ["resolve"]


def test_grey_zone_does_not_open_an_incident() -> None:
    life = IncidentLifecycle()
    assert feed(life, [G] * 20) == []
    assert not life.is_open


def test_reopen_within_the_window_reuses_the_incident() -> None:
    life = IncidentLifecycle(resolve_after=2, reopen_within_ms=5 * MINUTE)
    first = feed(life, [A, A, N, N])  # open at 1, resolve at 4
    assert [(m, t.action) for m, t in first] == [(1, "open"), (4, "resolve")]
    again = feed(life, [N, A], start=5)  # reopens at 6: 2 minutes after resolving
    assert again == [(6, Transition("open", 6 * MINUTE, 1 * MINUTE, 5, reopened=True))]
    assert life.opened_at_ms == MINUTE
    final = feed(life, [N, N], start=7)
    assert final == [(8, Transition("resolve", 8 * MINUTE, MINUTE, 7))]


def test_reopen_after_the_window_is_a_new_incident() -> None:
    life = IncidentLifecycle(resolve_after=2, reopen_within_ms=5 * MINUTE)
    feed(life, [A, N, N])  # resolve at 3
    changes = feed(life, [N] * 5 + [A], start=4)  # anomalous at 9: 6 minutes later
    assert changes == [(9, Transition("open", 9 * MINUTE, 9 * MINUTE, 1))]


def test_reopen_is_disabled_by_default() -> None:
    life = IncidentLifecycle(resolve_after=1)
    feed(life, [A, N])
    assert feed(life, [A], start=3) == [(3, Transition("open", 3 * MINUTE, 3 * MINUTE, 1))]


def test_redelivered_and_late_windows_are_ignored() -> None:
    life = IncidentLifecycle(resolve_after=1)
    assert life.update(2 * MINUTE, anomalous=True, normal=False) is not None
    assert life.update(2 * MINUTE, anomalous=True, normal=False) is None  # redelivery
    assert life.update(1 * MINUTE, anomalous=False, normal=True) is None  # late
    assert life.is_open and life.last_window_end_ms == 2 * MINUTE


def test_contradictory_decisions_raise() -> None:
    with pytest.raises(ValueError, match="both anomalous and normal"):
        IncidentLifecycle().update(MINUTE, anomalous=True, normal=True)


@pytest.mark.parametrize(
    "params", [{"open_after": 0}, {"resolve_after": 0}, {"reopen_within_ms": -1}]
)
def test_invalid_parameters_raise(params: dict[str, int]) -> None:
    with pytest.raises(ValueError, match=next(iter(params))):
        IncidentLifecycle(**params)


@pytest.mark.parametrize("cut", range(0, 16))
def test_state_round_trip_mid_stream(cut: int) -> None:
    pattern = [A, A, G, N, N, A, N, N, N, N, A, A, N, G, N, N]
    params = {"open_after": 2, "resolve_after": 2, "reopen_within_ms": 3 * MINUTE}
    reference = IncidentLifecycle(**params)
    expected = feed(reference, pattern)

    life = IncidentLifecycle(**params)
    before = feed(life, pattern[:cut])
    restored = IncidentLifecycle.from_state(json.loads(json.dumps(life.state_dict())))
    after = feed(restored, pattern[cut:], start=cut + 1)
    assert before + after == expected
    assert restored.state_dict() == reference.state_dict()
    assert repr(restored) == repr(reference)


def test_unknown_state_version_is_refused() -> None:
    with pytest.raises(ValueError, match="version"):
        IncidentLifecycle.from_state({**IncidentLifecycle().state_dict(), "version": 2})
