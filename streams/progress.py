"""Progress of long-running commands (``replay``, ``record``): a count and its rate on stderr.

On a terminal the report is one line rewritten in place (at most a few times a second); when
stderr is a file or a pipe (CI logs, ``2>log``) it is a plain line every ``interval`` seconds,
so logs stay readable. :meth:`Progress.update` is cheap enough to call for every event.

>>> import io
>>> clock = iter([0.0, 1.0, 2.0, 3.0]).__next__
>>> out = io.StringIO()
>>> p = Progress("replay", unit="events", stream=out, tty=False, interval=1.0, clock=clock)
>>> p.update(100)          # t=1: one interval passed -> a line
>>> p.update(300, "at 08:00:05")  # t=2
>>> print(out.getvalue(), end="")
replay: 100 events, 100/s
replay: 300 events, 200/s, at 08:00:05
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import IO

#: Seconds between redraws of the terminal line.
TTY_INTERVAL = 0.25
#: Seconds between lines when stderr is not a terminal.
LOG_INTERVAL = 10.0


class Progress:
    """Reports ``done`` and its rate on ``stream`` (default: stderr).

    Parameters
    ----------
    label
        Prefix of every report, e.g. the command name.
    unit
        What is counted (``events``, ``records``).
    stream
        Where to write; default ``sys.stderr`` (looked up when the reporter is made).
    tty
        Force terminal (one updating line) or log (a line per interval) mode; default: ask
        ``stream.isatty()``.
    interval
        Seconds between reports; default :data:`TTY_INTERVAL` on a terminal, else
        :data:`LOG_INTERVAL`.
    clock
        Monotonic clock in seconds (injected by tests).
    """

    def __init__(
        self,
        label: str,
        unit: str = "events",
        stream: IO[str] | None = None,
        tty: bool | None = None,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.unit = unit
        self.stream: IO[str] = stream if stream is not None else sys.stderr
        if tty is None:
            isatty = getattr(self.stream, "isatty", None)
            tty = bool(isatty and isatty())
        self.tty = tty
        self.interval = (
            interval if interval is not None else (TTY_INTERVAL if tty else LOG_INTERVAL)
        )
        self.clock = clock
        self.started = clock()
        self._next = self.started + self.interval
        self._last_time = self.started
        self._last_done = 0
        self._line_shown = False  # a terminal line is on screen (to be cleared before text)

    def update(self, done: int, detail: str | Callable[[], str] = "") -> None:
        """Tell the reporter the current count; prints when a report is due.

        ``detail`` is added to the report; a callable is only called when one is printed.
        """
        now = self.clock()
        if now < self._next:
            return
        if callable(detail):
            detail = detail()
        self._next = now + self.interval
        rate = (done - self._last_done) / max(now - self._last_time, 1e-9)
        self._last_time, self._last_done = now, done
        text = f"{self.label}: {done:,} {self.unit}, {rate:,.0f}/s"
        if detail:
            text += f", {detail}"
        if self.tty:
            self.stream.write("\r\x1b[K" + text)
            self._line_shown = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        """Print a line of text without garbling the progress line."""
        self._clear()
        self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        """Clear the terminal line (nothing to do in log mode). Safe to call twice."""
        self._clear()
        self.stream.flush()

    def elapsed(self) -> float:
        """Seconds since the reporter was made."""
        return self.clock() - self.started

    def _clear(self) -> None:
        if self._line_shown:
            self.stream.write("\r\x1b[K")
            self._line_shown = False
