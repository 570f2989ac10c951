"""Hysteresis between window decisions and incidents, for one (signal, segment)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from detectors.state import check_version

__all__ = ["IncidentLifecycle", "Transition"]

_STATE_VERSION = 1


@dataclass(frozen=True, slots=True)
class Transition:
    """An incident opening or resolving.

    Attributes
    ----------
    action
        "open" or "resolve".
    at_ms
        End (event time, ms) of the window that triggered the transition.
    opened_at_ms
        End of the first anomalous window of the incident; with `reopened` it is the original
        incident's, so the caller keeps the same incident id.
    windows_open
        Windows counted in the incident so far: the anomalous run that opened it, every window
        while open (grey and normal hold-down windows included), and the windows of an earlier
        episode it reopens.
    reopened
        True when an "open" reuses an incident resolved less than `reopen_within_ms` ago.

    """

    action: Literal["open", "resolve"]
    at_ms: int
    opened_at_ms: int
    windows_open: int
    reopened: bool = False


class IncidentLifecycle:
    """Open and resolve one (signal, segment)'s incident from per-window decisions, with hysteresis.

    Fed one decision per closed window, in event-time order, by `update`. Each window is
    *anomalous* (the detector's decision), *normal* (a stricter "clearly recovered" decision the
    caller computes, e.g. score < 2), or neither: a grey zone. `open_after` consecutive anomalous
    windows open an incident; `resolve_after` consecutive normal windows resolve it (the
    hold-down). A grey window keeps an open incident open and restarts the hold-down; it never
    opens one. So an alternating anomalous/normal signal stays one open incident instead of
    flapping.

    When it works: one instance per (signal, segment), fed by the single task that owns that key
    (the decisions must arrive in order). Windows at or before the last one seen are ignored
    (`update` returns None), so redelivering a window after a restart is harmless.

    When it fails: it sees only the decisions it is given. A segment that stops sending windows
    (silence) freezes its incident, open or closed, until the next window; the caller must feed
    a decision for silent windows (silence is a signal) or close incidents itself.

    Parameters
    ----------
    open_after
        Consecutive anomalous windows that open an incident (>= 1).
    resolve_after
        Consecutive normal windows that resolve it (>= 1).
    reopen_within_ms
        If an incident opens less than this many ms (window end to window end) after the previous
        one resolved, it is the same incident reopened: same `opened_at_ms`, `reopened=True`.
        0 disables reopening.

    Examples
    --------

    >>> from detectors.lifecycle import IncidentLifecycle

    >>> life = IncidentLifecycle(open_after=1, resolve_after=3)
    >>> life.update(60_000, anomalous=True, normal=False)
    Transition(action='open', at_ms=60000, opened_at_ms=60000, windows_open=1, reopened=False)

    A grey window keeps it open; three normal windows resolve it:

    >>> life.update(120_000, anomalous=False, normal=False) is None
    True
    >>> for end in (180_000, 240_000, 300_000):
    ...     print(life.update(end, anomalous=False, normal=True))
    None
    None
    Transition(action='resolve', at_ms=300000, opened_at_ms=60000, windows_open=5, reopened=False)
    >>> life.is_open
    False

    No flapping: alternating anomalous and normal windows keep one incident open.

    >>> life = IncidentLifecycle()
    >>> changes = [
    ...     life.update(minute * 60_000, anomalous=minute % 2 == 0, normal=minute % 2 == 1)
    ...     for minute in range(10)
    ... ]
    >>> [t.action for t in changes if t is not None]
    ['open']
    >>> life.is_open, life.opened_at_ms
    (True, 0)

    """

    def __init__(
        self, open_after: int = 1, resolve_after: int = 3, reopen_within_ms: int = 0
    ) -> None:
        if open_after < 1:
            raise ValueError(f"open_after must be >= 1 window, got {open_after!r}")
        if resolve_after < 1:
            raise ValueError(f"resolve_after must be >= 1 window, got {resolve_after!r}")
        if reopen_within_ms < 0:
            raise ValueError(
                f"reopen_within_ms must be >= 0 (0 disables), got {reopen_within_ms!r}"
            )
        self.open_after = open_after
        self.resolve_after = resolve_after
        self.reopen_within_ms = reopen_within_ms

        self._open = False
        self._opened_at_ms: int | None = None
        self._windows_open = 0
        self._anomalous_run = 0
        self._run_started_ms: int | None = None
        self._normal_run = 0
        self._last_window_end_ms: int | None = None
        self._resolved_at_ms: int | None = None

    def __repr__(self) -> str:
        return (
            f"IncidentLifecycle(open_after={self.open_after}, resolve_after={self.resolve_after}, "
            f"reopen_within_ms={self.reopen_within_ms})"
        )

    @property
    def is_open(self) -> bool:
        """True while an incident is open."""
        return self._open

    @property
    def opened_at_ms(self) -> int | None:
        """End of the open incident's first anomalous window; None when no incident is open."""
        return self._opened_at_ms if self._open else None

    @property
    def last_window_end_ms(self) -> int | None:
        """End of the last window accepted by `update`, None before the first."""
        return self._last_window_end_ms

    def update(self, window_end_ms: int, anomalous: bool, normal: bool) -> Transition | None:
        """Take one closed window's decisions; return the transition it causes, if any.

        Parameters
        ----------
        window_end_ms
            The window's end, event time in ms. Must increase from call to call; a window at or
            before the last one is a redelivery and is ignored (returns None).
        anomalous
            The detector flags the window.
        normal
            The window is clearly back to normal (stricter than "not anomalous").

        Raises
        ------
        ValueError
            If a window is both anomalous and normal.

        """
        if anomalous and normal:
            raise ValueError(f"window ending at {window_end_ms} is both anomalous and normal")
        if self._last_window_end_ms is not None and window_end_ms <= self._last_window_end_ms:
            return None
        self._last_window_end_ms = window_end_ms

        if self._open:
            self._windows_open += 1
            if not normal:  # anomalous or grey: the hold-down starts again
                self._normal_run = 0
                return None
            self._normal_run += 1
            if self._normal_run < self.resolve_after:
                return None
            self._open = False
            self._normal_run = 0
            self._resolved_at_ms = window_end_ms
            assert self._opened_at_ms is not None
            return Transition("resolve", window_end_ms, self._opened_at_ms, self._windows_open)

        if not anomalous:
            self._anomalous_run = 0
            self._run_started_ms = None
            return None
        if self._anomalous_run == 0:
            self._run_started_ms = window_end_ms
        self._anomalous_run += 1
        if self._anomalous_run < self.open_after:
            return None

        assert self._run_started_ms is not None
        reopened = (
            self.reopen_within_ms > 0
            and self._resolved_at_ms is not None
            and self._opened_at_ms is not None
            and window_end_ms - self._resolved_at_ms < self.reopen_within_ms
        )
        if reopened:
            self._windows_open += self._anomalous_run
        else:
            self._opened_at_ms = self._run_started_ms
            self._windows_open = self._anomalous_run
        self._open = True
        self._anomalous_run = 0
        self._run_started_ms = None
        self._normal_run = 0
        assert self._opened_at_ms is not None
        return Transition("open", window_end_ms, self._opened_at_ms, self._windows_open, reopened)

    def state_dict(self) -> dict[str, Any]:
        """Parameters and state as plain JSON types; `IncidentLifecycle.from_state` reverses it."""
        return {
            "version": _STATE_VERSION,
            "params": {
                "open_after": self.open_after,
                "resolve_after": self.resolve_after,
                "reopen_within_ms": self.reopen_within_ms,
            },
            "open": self._open,
            "opened_at_ms": self._opened_at_ms,
            "windows_open": self._windows_open,
            "anomalous_run": self._anomalous_run,
            "run_started_ms": self._run_started_ms,
            "normal_run": self._normal_run,
            "last_window_end_ms": self._last_window_end_ms,
            "resolved_at_ms": self._resolved_at_ms,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> IncidentLifecycle:
        """Rebuild a lifecycle from `state_dict()` output (possibly through JSON)."""
        check_version(cls.__name__, state, _STATE_VERSION)
        life = cls(**state["params"])
        life._open = bool(state["open"])
        life._opened_at_ms = state["opened_at_ms"]
        life._windows_open = int(state["windows_open"])
        life._anomalous_run = int(state["anomalous_run"])
        life._run_started_ms = state["run_started_ms"]
        life._normal_run = int(state["normal_run"])
        life._last_window_end_ms = state["last_window_end_ms"]
        life._resolved_at_ms = state["resolved_at_ms"]
        return life
