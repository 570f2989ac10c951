"""What is different about one time slice: multipliers and rules the generators obey.

A fresh :class:`Conditions` (the normal platform) is made for every slice; every active incident
and benign event then changes it (:meth:`~simulator.scenarios.Scenario.apply`). Generators only
read it. Rules are small, vectorised masks over the dimensions of a record.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from simulator import world as w

__all__ = ["Conditions", "FailRule", "LatencyRule", "LoginFailRule", "PendingRule", "TxMask"]

S, T, B, C = len(w.SERVICES), len(w.TX_TYPES), len(w.BANKS), len(w.CHANNELS)
OPS, K, N = len(w.OPERATORS), len(w.COMPLAINT_CATEGORIES), len(w.SECTIONS)


def mask(vocab: tuple[str, ...], names: Iterable[str] | None, extra: int = 0) -> np.ndarray:
    """Boolean mask over ``vocab`` (plus ``extra`` trailing slots, e.g. "no bank").

    ``None`` selects everything. Raises ``ValueError`` for a name not in ``vocab``.

    >>> mask(("a", "b", "c"), ["c"]).tolist()
    [False, False, True]
    """
    if names is None:
        return np.ones(len(vocab) + extra, dtype=bool)
    out = np.zeros(len(vocab) + extra, dtype=bool)
    for name in names:
        out[w.index_of(vocab, name)] = True
    return out


@dataclass(frozen=True)
class TxMask:
    """Which transactions a rule touches: by service, type, partner bank and channel.

    ``banks`` has one slot more than :data:`~simulator.world.BANKS`: the last one is "no bank".
    """

    services: np.ndarray
    types: np.ndarray
    banks: np.ndarray
    channels: np.ndarray

    @classmethod
    def of(
        cls,
        services: Iterable[str] | None = None,
        types: Iterable[str] | None = None,
        banks: Iterable[str] | None = None,
        channels: Iterable[str] | None = None,
    ) -> TxMask:
        """A mask from names; ``None`` means any. With ``banks`` given, "no bank" is excluded."""
        return cls(
            mask(w.SERVICES, services),
            mask(w.TX_TYPES, types),
            mask(w.BANKS, banks, extra=1),
            mask(w.CHANNELS, channels),
        )

    def match(
        self, svc: np.ndarray, typ: np.ndarray, bank: np.ndarray, chan: np.ndarray
    ) -> np.ndarray:
        """Boolean array: which of the given transactions the mask selects."""
        return self.services[svc] & self.types[typ] & self.banks[bank] & self.channels[chan]


@dataclass(frozen=True)
class FailRule:
    """Matching transactions fail with probability ``prob`` and error code ``code``."""

    where: TxMask
    prob: float
    code: str


@dataclass(frozen=True)
class PendingRule:
    """Matching credits go pending with probability ``prob`` and settle later.

    The settlement delay is log-normal (median ``delay_median_s``, log-sd ``delay_sigma``);
    ``fail_share`` of the pending ones end as failed (reversed) instead of completing.
    """

    where: TxMask
    prob: float
    delay_median_s: float
    delay_sigma: float
    fail_share: float


@dataclass(frozen=True)
class LatencyRule:
    """Matching transactions take ``factor`` times longer."""

    where: TxMask
    factor: float


@dataclass(frozen=True)
class LoginFailRule:
    """Logins of the masked services fail with ``prob``, for ``reasons`` (weights ``weights``)."""

    services: np.ndarray
    prob: float
    reasons: tuple[str, ...]
    weights: tuple[float, ...]


def _ones(*shape: int) -> np.ndarray:
    return np.ones(shape)


@dataclass
class Conditions:
    """The state of the world during one slice. Defaults are the normal platform."""

    #: Multiplier of every volume (a quiet night).
    volume: float = 1.0
    tx_volume: np.ndarray = field(default_factory=lambda: _ones(S))
    tx_fail: list[FailRule] = field(default_factory=list)
    tx_pending: list[PendingRule] = field(default_factory=list)
    tx_latency: list[LatencyRule] = field(default_factory=list)
    login_volume: np.ndarray = field(default_factory=lambda: _ones(S))
    login_fail: list[LoginFailRule] = field(default_factory=list)
    #: Extra forced logouts per service, as a fraction of the login attempt rate.
    forced_extra: np.ndarray = field(default_factory=lambda: np.zeros(S))
    otp_volume: np.ndarray = field(default_factory=lambda: _ones(S, OPS))
    #: Multiplier of the probability that a sent code is delivered, per service and operator.
    otp_deliver: np.ndarray = field(default_factory=lambda: _ones(S, OPS))
    otp_latency: np.ndarray = field(default_factory=lambda: _ones(OPS))
    read_volume: float = 1.0
    #: Fraction of accounts (the "glitched" ones) whose funded balance reads as 0.
    zero_read_fraction: float = 0.0
    #: Fraction of linked accounts per second whose bank link the system removes.
    link_removals_per_s: float = 0.0
    #: Extra complaint volume per service and category, as a multiple of the normal volume.
    complaint_surge: np.ndarray = field(default_factory=lambda: np.zeros((S, K)))
    req_volume: np.ndarray = field(default_factory=lambda: _ones(N))
    req_error: np.ndarray = field(default_factory=lambda: np.zeros(N))
    req_latency: np.ndarray = field(default_factory=lambda: _ones(N))
    req_downstream: np.ndarray = field(
        default_factory=lambda: np.full(N, w.REQUEST_BASE_DOWNSTREAM_SHARE)
    )

    @property
    def complaints_surging(self) -> bool:
        """True when complaints run at several times their normal volume somewhere."""
        return bool(self.complaint_surge.max() >= 2.0)
