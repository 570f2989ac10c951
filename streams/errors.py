"""The exception tree: one root, translated at the boundary from the layers below.

``RadarError``
  ``ConfigError``        a setting is wrong (names the variable, the value and the fix)
  ``BrokerError``        the embedded broker cannot be found, started or reached
  ``InvalidRecord``      an input record cannot be used; it goes to the dead-letter topic
"""

from __future__ import annotations


class RadarError(Exception):
    """Root of every error outage-radar raises on purpose."""


class ConfigError(RadarError):
    """A setting (environment variable or command option) is wrong."""


class BrokerError(RadarError):
    """The embedded broker cannot be found, started or reached."""


class InvalidRecord(RadarError):
    """An input record that cannot be used.

    ``kind`` is a short machine-readable class (``not_utf8``, ``not_json``, ``schema``,
    ``too_large``, ``late``); the message says what was wrong, with the value.
    """

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
