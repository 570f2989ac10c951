"""The simulated platform, one time slice at a time: counts, records, account state.

:class:`Platform` draws every record of a slice with vectorised numpy (Poisson counts per
segment with mild gamma overdispersion, categorical attributes, outcomes), keeps the state that
makes records consistent over time (account balances and bank links, pending transfers that
settle later, OTP codes whose later stages fall in later slices) and hands finished lines to an
:class:`Outbox`, which holds records whose event time lies in a later slice until then.

All randomness comes from the one ``numpy.random.Generator`` it is given, drawn in a fixed
order, so the same plan and seed give the same records.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from simulator import world as w
from simulator.conditions import Conditions
from simulator.plan import SimulationPlan
from simulator.templates import OTP_STAGES, Templates
from streams.settings import INPUT_TOPICS

__all__ = ["TOPICS", "Outbox", "Platform"]

#: Every input topic, in the order of DESIGN.md.
TOPICS: tuple[str, ...] = INPUT_TOPICS

S, T, B, C = len(w.SERVICES), len(w.TX_TYPES), len(w.BANKS), len(w.CHANNELS)
OPS, K = len(w.OPERATORS), len(w.COMPLAINT_CATEGORIES)

# Volumes at the daily peak, per event of --rate (the budget of all topics together).
TX_RATE = 0.34  # transactions started per second
READ_RATE = 0.14  # balance reads
LINK_ADD_RATE, LINK_REMOVE_RATE = 0.004, 0.0015  # draws (only some accounts qualify)
LOGIN_RATE = 0.14
FORCED_BASE = 0.004  # forced logouts per login attempt, normally
OTP_RATE = 0.045  # codes requested (each makes about four records)
COMPLAINT_RATE = 0.004
REQUEST_RATE = 10.0  # app requests per second inside the requests samples
#: Gamma shape of the per-slice overdispersion (coefficient of variation 1/sqrt(k)).
DISPERSION = 40.0
REQUEST_DISPERSION = 80.0

BASE_FAIL = 0.008
#: Share of people short of balance who try to pay from it anyway.
OVERSPEND = 0.1
BASE_PENDING = 0.012
BASE_DELAY_S, BASE_DELAY_SIGMA, BASE_REVERSED = 100.0, 0.8, 0.02
#: A pending transfer settled later than this is ``completed_late``, else ``success``.
LATE_AFTER_MS = 10 * w.MINUTE_MS
MAX_DELAY_MS = 5 * w.DAY_MS
OTP_TTL_MS = 5 * w.MINUTE_MS
OTP_DELIVERY = 0.975
OTP_PROVIDER_FAILURE = 0.003
OTP_VERIFIED = 0.92


def _cdf(p: Sequence[float] | np.ndarray) -> np.ndarray:
    c = np.cumsum(np.asarray(p, dtype=float), axis=-1)
    c = c / c[..., -1:]
    c[..., -1] = 1.0
    return c


def _pick(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Categorical draws from one distribution (its cdf) with uniforms ``u``."""
    return np.minimum(np.searchsorted(cdf, u, side="right"), len(cdf) - 1)


def _pick_rows(cdfs: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Categorical draws, each from its own row of cdfs (``cdfs[i]`` for draw ``i``)."""
    return (u[:, None] >= cdfs[:, :-1]).sum(axis=1)


TYPE_CDF = _cdf(w.TYPE_MIX)
CHANNEL_CDF = _cdf(w.CHANNEL_MIX)
REGION_CDF = _cdf(w.REGION_SHARE)
BANK_CDF = _cdf(w.BANK_SHARE)
ERROR_CDF = _cdf(w.BASE_ERROR_MIX)
PROVIDER_CDF = _cdf(w.PROVIDER_SHARE)
PURPOSE_CDF = _cdf(w.OTP_PURPOSE_SHARE)
LOGIN_CDF = _cdf(w.LOGIN_BASE)
CLIENT_CDF = _cdf(np.outer(w.LOGIN_CHANNEL_SHARE, w.APP_VERSION_SHARE).ravel())
CHANNEL_BASE_CDF = _cdf(w.COMPLAINT_CHANNEL_BASE)
CHANNEL_SURGE_CDF = _cdf(w.COMPLAINT_CHANNEL_SURGE)


def _type_mask(names: tuple[str, ...]) -> np.ndarray:
    return np.array([t in names for t in w.TX_TYPES])


IS_BANK_TYPE = _type_mask(w.BANK_TYPES)
IS_CREDIT = _type_mask(w.CREDIT_TYPES)
IS_DEBIT = _type_mask(w.DEBIT_TYPES)
IS_PENDABLE = _type_mask(w.PENDABLE_TYPES)
CARD_ELIGIBLE = _type_mask(("payment", "purchase"))
LATENCY_MEDIAN = np.where(IS_BANK_TYPE, 900.0, 350.0)
TOPUP = w.TX_TYPES.index("topup")
ERR_INSUFFICIENT = w.ERROR_CODES.index("INSUFFICIENT_FUNDS")
ERR_REVERSED = w.ERROR_CODES.index("REVERSED")
ERR_NONE = len(w.ERROR_CODES)
STAGE = {name: i for i, name in enumerate(OTP_STAGES)}
TEXTS = np.empty((K, 3), dtype=object)
for _k, _texts in enumerate(w.COMPLAINT_TEXTS):
    TEXTS[_k, :] = _texts
REGION_NAMES = np.array(w.REGIONS, dtype=object)
STAGE_NAMES = np.array(OTP_STAGES, dtype=object)
PURPOSE_NAMES = np.array(w.OTP_PURPOSES, dtype=object)
CHANNEL_NAMES = np.array(w.COMPLAINT_CHANNELS, dtype=object)
LINK_KIND_NAMES = np.array(["bank_link_added", "bank_link_removed"], dtype=object)
INITIATOR_NAMES = np.array(["user", "system"], dtype=object)

Batch = dict[str, np.ndarray]


def _split_by_slice(ts: np.ndarray, start: int, slice_ms: int) -> list[tuple[int, np.ndarray]]:
    """``(slice index, positions)`` groups of event times, slices ascending, stable inside."""
    if ts.size == 0:
        return []
    b = (ts - start) // slice_ms
    if b.min() == b.max():
        return [(int(b[0]), np.arange(ts.size))]
    order = np.argsort(b, kind="stable")
    bs = b[order]
    cuts = (np.flatnonzero(np.diff(bs)) + 1).tolist()
    bounds = [0, *cuts, ts.size]
    return [(int(bs[lo]), order[lo:hi]) for lo, hi in itertools.pairwise(bounds)]


class Outbox:
    """Finished lines per slice and topic; a line waits here until its slice is written."""

    def __init__(self, start: int, end: int, slice_ms: int) -> None:
        self.start, self.end, self.slice_ms = start, end, slice_ms
        self.current = 0
        self._slices: dict[int, dict[str, list[tuple[np.ndarray, list[str]]]]] = {}

    def add(self, topic: str, ts: np.ndarray, lines: list[str]) -> None:
        """Queue ``lines`` (event times ``ts``); lines at or after the end are dropped.

        Raises ``AssertionError`` for a line older than the current slice (a generator bug:
        it could no longer be written in order).
        """
        if not lines:
            return
        ts = np.asarray(ts, dtype=np.int64)
        if ts.max() >= self.end:
            keep = np.flatnonzero(ts < self.end)
            ts = ts[keep]
            lines = [lines[i] for i in keep.tolist()]
            if not lines:
                return
        groups = _split_by_slice(ts, self.start, self.slice_ms)
        if groups[0][0] < self.current:
            raise AssertionError("a record older than the current slice")
        if len(groups) == 1:
            self._put(groups[0][0], topic, ts, lines)
            return
        for index, pos in groups:
            self._put(index, topic, ts[pos], [lines[i] for i in pos.tolist()])

    def _put(self, index: int, topic: str, ts: np.ndarray, lines: list[str]) -> None:
        self._slices.setdefault(index, {}).setdefault(topic, []).append((ts, lines))

    def take(self, index: int) -> dict[str, list[str]]:
        """The lines of slice ``index`` per topic, each list in event-time order."""
        self.current = index + 1
        out: dict[str, list[str]] = {}
        for topic, parts in self._slices.pop(index, {}).items():
            if len(parts) == 1:
                ts, lines = parts[0]
            else:
                ts = np.concatenate([p[0] for p in parts])
                lines = [line for p in parts for line in p[1]]
            if ts.size > 1 and bool((np.diff(ts) < 0).any()):
                order = np.argsort(ts, kind="stable").tolist()
                lines = [lines[i] for i in order]
            out[topic] = lines
        return out

    @property
    def pending_lines(self) -> int:
        """Lines waiting for later slices (memory in use)."""
        return sum(len(p[1]) for d in self._slices.values() for v in d.values() for p in v)


def _concat(batches: list[Batch]) -> Batch:
    if len(batches) == 1:
        return batches[0]
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def _take(batch: Batch, pos: np.ndarray) -> Batch:
    return {k: v[pos] for k, v in batch.items()}


def _first_unique(values: np.ndarray) -> np.ndarray:
    """``values`` without repeats, first occurrences kept in their order."""
    _, first = np.unique(values, return_index=True)
    first.sort()
    return values[first]


class Platform:
    """Accounts, pending work and the per-slice generators of every topic."""

    def __init__(self, plan: SimulationPlan, rng: np.random.Generator) -> None:
        self.plan = plan
        self.rng = rng
        self.t = Templates(plan.seed)
        self.rate = plan.rate
        self.outbox = Outbox(plan.start, plan.end, plan.slice_ms)
        n = int(min(400_000, max(2_000, plan.rate * 400)))
        self.n_accounts = n
        self.acc_region = _pick(REGION_CDF, rng.random(n)).astype(np.int64)
        linked = rng.random(n) < 0.7
        self.acc_bank = np.where(linked, _pick(BANK_CDF, rng.random(n)), -1).astype(np.int64)
        funded = rng.random(n) >= 0.08
        opening = np.round(np.exp(np.log(2.5e6) + 1.1 * rng.standard_normal(n)), -3) + 1000
        self.balance = np.where(funded, opening, 0).astype(np.int64)
        activity = np.exp(rng.standard_normal(n)) * np.where(funded, 1.0, 0.1)
        self.acc_cdf = _cdf(activity)
        self.glitch_u = rng.random(n)
        self.settlements: dict[int, list[Batch]] = {}
        self.ids = dict.fromkeys(TOPICS, 0)
        self.tx_count = 0
        self.otp_count = 0

    # -- helpers -----------------------------------------------------------------------------

    def _accounts(self, count: int) -> np.ndarray:
        return np.minimum(
            np.searchsorted(self.acc_cdf, self.rng.random(count), side="right"),
            self.n_accounts - 1,
        )

    def _ids(self, topic: str, count: int) -> list[int]:
        first = self.ids[topic]
        self.ids[topic] = first + count
        return list(range(first, first + count))

    def _gamma(self, *shape: int, k: float = DISPERSION) -> np.ndarray:
        return self.rng.gamma(k, 1.0 / k, shape)

    # -- one slice ---------------------------------------------------------------------------

    def step(self, index: int, t0: int, t1: int, cond: Conditions) -> None:
        """Generate every record of the slice ``[t0, t1)`` into the outbox."""
        dur = (t1 - t0) / 1000.0
        mid = np.array([(t0 + t1) // 2])
        p = float(w.daily_profile(mid)[0]) * w.weekday_factor(int(mid[0])) * cond.volume
        svc_prof = np.full(S, p)
        svc_prof[w.SERVICES.index("food")] *= float(w.food_factor(mid)[0])
        changes = self._transactions(index, t0, t1, dur, svc_prof, cond)
        self._balances(t0, t1, dur, p, cond, changes)
        self._logins(t0, t1, dur, svc_prof, cond)
        self._otp(t0, t1, dur, svc_prof, cond)
        self._complaints(t0, t1, dur, svc_prof, cond)
        self._requests(t0, t1, svc_prof, cond)

    def _transactions(
        self, index: int, t0: int, t1: int, dur: float, svc_prof: np.ndarray, cond: Conditions
    ) -> Batch:
        rng = self.rng
        lam = self.rate * TX_RATE * w.TX_SERVICE_SHARE * svc_prof * cond.tx_volume
        counts = rng.poisson(lam * self._gamma(S) * dur)
        n = int(counts.sum())
        svc = np.repeat(np.arange(S), counts)
        ts = rng.integers(t0, t1, n)
        u = rng.random((n, 7))
        typ = _pick_rows(TYPE_CDF[svc], u[:, 0])
        chan = _pick_rows(CHANNEL_CDF[svc], u[:, 1])
        acc = self._accounts(n)
        region = self.acc_region[acc]
        card = CARD_ELIGIBLE[typ] & (u[:, 2] < w.CARD_FUNDED_SHARE)
        normals = rng.standard_normal((n, 2))
        spread = np.exp(0.9 * normals[:, 0])
        amount = np.maximum(1000, np.round(w.AMOUNT_MEDIAN[svc, typ] * spread, -3))
        # People mostly know their balance: short of money, they pay by card or top up first
        # instead; only a few try anyway (and fail with INSUFFICIENT_FUNDS).
        short = IS_DEBIT[typ] & ~card & (amount >= self.balance[acc]) & (u[:, 6] >= OVERSPEND)
        card |= short & CARD_ELIGIBLE[typ]
        topup = short & ~CARD_ELIGIBLE[typ]
        typ = np.where(topup, TOPUP, typ)
        amount = np.where(
            topup, np.maximum(1000, np.round(w.AMOUNT_MEDIAN[svc, TOPUP] * spread, -3)), amount
        ).astype(np.int64)
        from_balance = IS_DEBIT[typ] & ~card
        linked = self.acc_bank[acc]
        bank = np.where(linked >= 0, linked, _pick(BANK_CDF, u[:, 3]))
        bank = np.where(IS_BANK_TYPE[typ] | card, bank, B)
        latency = LATENCY_MEDIAN[typ] * np.exp(0.5 * normals[:, 1])
        for lat_rule in cond.tx_latency:
            latency[lat_rule.where.match(svc, typ, bank, chan)] *= lat_rule.factor

        status = np.zeros(n, dtype=np.int64)
        err = np.full(n, ERR_NONE, dtype=np.int64)
        failed = np.flatnonzero(u[:, 4] < BASE_FAIL)
        status[failed] = 1
        err[failed] = _pick(ERROR_CDF, rng.random(failed.size))
        for rule in cond.tx_fail:
            hit = (
                rule.where.match(svc, typ, bank, chan) & (status == 0) & (rng.random(n) < rule.prob)
            )
            status[hit] = 1
            err[hit] = w.ERROR_CODES.index(rule.code)

        pend_p = np.where(IS_PENDABLE[typ] & (bank < B), BASE_PENDING, 0.0)
        median = np.full(n, BASE_DELAY_S)
        sigma = np.full(n, BASE_DELAY_SIGMA)
        reversed_share = np.full(n, BASE_REVERSED)
        for p_rule in cond.tx_pending:
            m = p_rule.where.match(svc, typ, bank, chan) & IS_CREDIT[typ]
            pend_p[m] = np.maximum(pend_p[m], p_rule.prob)
            median[m], sigma[m], reversed_share[m] = (
                p_rule.delay_median_s,
                p_rule.delay_sigma,
                p_rule.fail_share,
            )
        pending = (status == 0) & (rng.random(n) < pend_p)

        debit = np.flatnonzero((status == 0) & from_balance)
        if debit.size:
            uniq, inv = np.unique(acc[debit], return_inverse=True)
            spent = np.bincount(inv, weights=amount[debit])
            short = debit[(spent >= self.balance[uniq])[inv]]
            status[short] = 1
            err[short] = ERR_INSUFFICIENT
        status[pending] = 2

        txn = np.arange(self.tx_count, self.tx_count + n)
        self.tx_count += n
        fresh: Batch = {
            "ts": ts,
            "svc": svc,
            "typ": typ,
            "region": region,
            "chan": chan,
            "bank": bank,
            "status": status,
            "err": err,
            "latency": latency.astype(np.int64),
            "amount": amount,
            "acc": acc,
            "txn": txn,
        }
        self._settle_later(fresh, np.flatnonzero(pending), median, sigma, reversed_share)

        due = self.settlements.pop(index, [])
        batch = _concat([fresh, *due])
        self._write_transactions(batch)

        # balance moves: settled credits (now or late), successful debits of the balance
        st, typ_all = batch["status"], batch["typ"]
        debits = np.zeros(st.size, dtype=bool)
        debits[:n] = from_balance
        moves = ((st == 0) | (st == 3)) & (IS_CREDIT[typ_all] | debits)
        sign = np.where(IS_CREDIT[typ_all], 1, -1)
        pos = np.flatnonzero(moves)
        return {
            "ts": batch["ts"][pos],
            "acc": batch["acc"][pos],
            "delta": (sign * batch["amount"])[pos],
            "txn": batch["txn"][pos],
            "bank": batch["bank"][pos],
            "region": batch["region"][pos],
        }

    def _settle_later(
        self,
        fresh: Batch,
        pos: np.ndarray,
        median: np.ndarray,
        sigma: np.ndarray,
        reversed_share: np.ndarray,
    ) -> None:
        """Schedule the outcome record of each pending transaction (``pos`` in ``fresh``)."""
        if pos.size == 0:
            return
        rng = self.rng
        later = _take(fresh, pos)
        delay = np.minimum(
            median[pos] * 1000 * np.exp(sigma[pos] * rng.standard_normal(pos.size)),
            MAX_DELAY_MS,
        ).astype(np.int64)
        reverse = rng.random(pos.size) < reversed_share[pos]
        later["ts"] = later["ts"] + later["latency"] + delay
        later["latency"] = later["latency"] + delay
        later["status"] = np.where(reverse, 1, np.where(delay > LATE_AFTER_MS, 3, 0))
        later["err"] = np.where(reverse, ERR_REVERSED, ERR_NONE)
        keep = np.flatnonzero(later["ts"] < self.plan.end)
        later = _take(later, keep)
        for index, group in _split_by_slice(later["ts"], self.plan.start, self.plan.slice_ms):
            self.settlements.setdefault(index, []).append(_take(later, group))

    def _write_transactions(self, b: Batch) -> None:
        t = self.t
        n = b["ts"].size
        if n == 0:
            return
        seg = ((b["svc"] * (B + 1) + b["bank"]) * len(w.REGIONS) + b["region"]) * C + b["chan"]
        outcome = (b["typ"] * 4 + b["status"]) * t.n_codes + b["err"]
        ts = b["ts"].tolist()
        lines = list(
            map(
                t.tx.__mod__,
                zip(
                    t.tx_keys[seg].tolist(),
                    ts,
                    self._ids("transactions", n),
                    ts,
                    t.tx_frags[seg].tolist(),
                    t.tx_outcomes[outcome].tolist(),
                    b["latency"].tolist(),
                    b["amount"].tolist(),
                    b["acc"].tolist(),
                    b["txn"].tolist(),
                    strict=True,
                ),
            )
        )
        self.outbox.add("transactions", b["ts"], lines)

    # -- balances ----------------------------------------------------------------------------

    def _balances(
        self, t0: int, t1: int, dur: float, p: float, cond: Conditions, ch: Batch
    ) -> None:
        rng, t = self.rng, self.t
        # changes, in account then time order, with running balances
        order = np.lexsort((ch["ts"], ch["acc"]))
        acc_s = ch["acc"][order]
        delta = ch["delta"][order]
        keys = acc_s * (self.plan.slice_ms + 1) + (ch["ts"][order] - t0)
        if order.size:
            running = np.cumsum(delta)
            first = np.r_[True, acc_s[1:] != acc_s[:-1]]
            group = np.cumsum(first) - 1
            before_group = (running - delta)[np.flatnonzero(first)]
            new = self.balance[acc_s] + running - before_group[group]
            prev = new - delta
            last = np.r_[first[1:], True]
            self.balance[acc_s[last]] = new[last]
            ts_s = ch["ts"][order]
            n = order.size
            lines = list(
                map(
                    t.balance_change.__mod__,
                    zip(
                        acc_s.tolist(),
                        ts_s.tolist(),
                        self._ids("balances", n),
                        ts_s.tolist(),
                        acc_s.tolist(),
                        new.tolist(),
                        prev.tolist(),
                        ch["txn"][order].tolist(),
                        t.bank_json[ch["bank"][order]].tolist(),
                        REGION_NAMES[ch["region"][order]].tolist(),
                        strict=True,
                    ),
                )
            )
            self.outbox.add("balances", ts_s, lines)
        else:
            new = prev = acc_s

        # reads: the balance as of the read's time
        count = int(
            rng.poisson(self.rate * READ_RATE * p * cond.read_volume * dur * self._gamma(1)[0])
        )
        ts = rng.integers(t0, t1, count)
        acc = self._accounts(count)
        value = self.balance[acc]
        if order.size and count:
            rkeys = acc * (self.plan.slice_ms + 1) + (ts - t0)
            at = np.searchsorted(keys, rkeys, side="right") - 1
            here = np.clip(at, 0, None)
            seen = (at >= 0) & (acc_s[here] == acc)
            nxt = np.clip(at + 1, 0, order.size - 1)
            ahead = ~seen & (at + 1 < order.size) & (acc_s[nxt] == acc)
            value = np.where(seen, new[here], np.where(ahead, prev[nxt], value))
        if cond.zero_read_fraction > 0:
            value = np.where(self.glitch_u[acc] < cond.zero_read_fraction, 0, value)
        if count:
            lines = list(
                map(
                    t.balance_read.__mod__,
                    zip(
                        acc.tolist(),
                        ts.tolist(),
                        self._ids("balances", count),
                        ts.tolist(),
                        acc.tolist(),
                        value.tolist(),
                        REGION_NAMES[self.acc_region[acc]].tolist(),
                        strict=True,
                    ),
                )
            )
            self.outbox.add("balances", ts, lines)
        self._links(t0, t1, dur, p, cond)

    def _links(self, t0: int, t1: int, dur: float, p: float, cond: Conditions) -> None:
        rng = self.rng
        adds = _first_unique(self._accounts(int(rng.poisson(self.rate * LINK_ADD_RATE * p * dur))))
        adds = adds[self.acc_bank[adds] < 0]
        self.acc_bank[adds] = _pick(BANK_CDF, rng.random(adds.size))
        self._link_lines(t0, t1, adds, 0, 0)
        drops = _first_unique(
            self._accounts(int(rng.poisson(self.rate * LINK_REMOVE_RATE * p * dur)))
        )
        drops = drops[self.acc_bank[drops] >= 0]
        self._link_lines(t0, t1, drops, 1, 0)
        self.acc_bank[drops] = -1
        if cond.link_removals_per_s > 0:
            linked = int(np.count_nonzero(self.acc_bank >= 0))
            want = int(rng.poisson(linked * cond.link_removals_per_s * dur))
            cand = _first_unique(rng.integers(0, self.n_accounts, 3 * want + 10))
            cand = cand[self.acc_bank[cand] >= 0][:want]
            self._link_lines(t0, t1, cand, 1, 1)
            self.acc_bank[cand] = -1

    def _link_lines(self, t0: int, t1: int, acc: np.ndarray, kind: int, who: int) -> None:
        n = acc.size
        if n == 0:
            return
        t = self.t
        ts = self.rng.integers(t0, t1, n)
        lines = list(
            map(
                t.link.__mod__,
                zip(
                    acc.tolist(),
                    ts.tolist(),
                    self._ids("balances", n),
                    ts.tolist(),
                    [LINK_KIND_NAMES[kind]] * n,
                    acc.tolist(),
                    [INITIATOR_NAMES[who]] * n,
                    t.bank_json[self.acc_bank[acc]].tolist(),
                    REGION_NAMES[self.acc_region[acc]].tolist(),
                    strict=True,
                ),
            )
        )
        self.outbox.add("balances", ts, lines)

    # -- logins ------------------------------------------------------------------------------

    def _logins(self, t0: int, t1: int, dur: float, svc_prof: np.ndarray, cond: Conditions) -> None:
        rng, t = self.rng, self.t
        base = self.rate * LOGIN_RATE * w.LOGIN_SERVICE_SHARE * svc_prof
        counts = rng.poisson(base * cond.login_volume * self._gamma(S) * dur)
        forced = rng.poisson(base * (FORCED_BASE + cond.forced_extra) * dur)
        n_try, n_forced = int(counts.sum()), int(forced.sum())
        n = n_try + n_forced
        if n == 0:
            return
        svc = np.concatenate([np.repeat(np.arange(S), counts), np.repeat(np.arange(S), forced)])
        ts = rng.integers(t0, t1, n)
        acc = self._accounts(n)
        client = _pick(CLIENT_CDF, rng.random(n))
        u = rng.random((n, 2))
        reason = _pick(LOGIN_CDF, u[:, 0])
        for rule in cond.login_fail:
            hit = np.flatnonzero(rule.services[svc] & (rng.random(n) < rule.prob))
            codes = np.array([w.LOGIN_REASONS.index(r) for r in rule.reasons])
            reason[hit] = codes[_pick(_cdf(rule.weights), rng.random(hit.size))]
        extra = cond.forced_extra[svc[n_try:]]
        invalidated = u[n_try:, 1] >= FORCED_BASE / (FORCED_BASE + extra)
        reason[n_try:] = t.forced_offset + invalidated
        seg = svc * len(w.REGIONS) + self.acc_region[acc]
        ts_l = ts.tolist()
        lines = list(
            map(
                t.login.__mod__,
                zip(
                    t.login_keys[seg].tolist(),
                    ts_l,
                    self._ids("logins", n),
                    ts_l,
                    t.login_frags[seg].tolist(),
                    t.login_outcomes[reason].tolist(),
                    t.login_clients[client].tolist(),
                    acc.tolist(),
                    strict=True,
                ),
            )
        )
        self.outbox.add("logins", ts, lines)

    # -- otp ---------------------------------------------------------------------------------

    def _otp(self, t0: int, t1: int, dur: float, svc_prof: np.ndarray, cond: Conditions) -> None:
        rng, t = self.rng, self.t
        lam = self.rate * OTP_RATE * np.outer(w.OTP_SERVICE_SHARE * svc_prof, w.OPERATOR_SHARE)
        counts = rng.poisson(lam * cond.otp_volume * self._gamma(S, OPS) * dur).ravel()
        n = int(counts.sum())
        if n == 0:
            return
        cell = np.repeat(np.arange(S * OPS), counts)
        svc, op = cell // OPS, cell % OPS
        prov = _pick(PROVIDER_CDF, rng.random(n))
        purpose = _pick(PURPOSE_CDF, rng.random(n))
        acc = self._accounts(n)
        ts = rng.integers(t0, t1, n)
        otp = np.arange(self.otp_count, self.otp_count + n)
        self.otp_count += n
        u = rng.random((n, 3))
        logn = rng.standard_normal((n, 3))
        send = np.exp(np.log(400.0) + 0.4 * logn[:, 0])
        deliver = send + np.exp(np.log(3500.0) + 0.6 * logn[:, 1]) * (
            w.OPERATOR_LATENCY[op] * cond.otp_latency[op]
        )
        user = np.exp(np.log(12_000.0) + 0.5 * logn[:, 2])
        failed = u[:, 0] < OTP_PROVIDER_FAILURE
        delivered = ~failed & (u[:, 1] < OTP_DELIVERY * cond.otp_deliver[svc, op])
        delivered &= deliver < 2 * OTP_TTL_MS  # later than that the SMS is lost for good
        verified = delivered & (deliver + user < OTP_TTL_MS) & (u[:, 2] < OTP_VERIFIED)
        expired = ~failed & ~verified
        stages = (
            ("requested", np.ones(n, dtype=bool), np.zeros(n)),
            ("sent", ~failed, send),
            ("failed", failed, send),
            ("delivered", delivered, deliver),
            ("verified", verified, deliver + user),
            ("expired", expired, np.full(n, float(OTP_TTL_MS))),
        )
        seg = (svc * OPS + op) * len(w.PROVIDERS) + prov
        keys, frags = t.otp_keys[seg], t.otp_frags[seg]
        region = REGION_NAMES[self.acc_region[acc]]
        purposes = PURPOSE_NAMES[purpose]
        all_ts: list[np.ndarray] = []
        lines: list[str] = []
        for stage, which, after in stages:
            pos = np.flatnonzero(which)
            if pos.size == 0:
                continue
            lat = after[pos].astype(np.int64)
            when = ts[pos] + lat
            when_l = when.tolist()
            lines.extend(
                map(
                    t.otp.__mod__,
                    zip(
                        keys[pos].tolist(),
                        when_l,
                        self._ids("otp", pos.size),
                        when_l,
                        frags[pos].tolist(),
                        [stage] * pos.size,
                        otp[pos].tolist(),
                        region[pos].tolist(),
                        lat.tolist(),
                        purposes[pos].tolist(),
                        acc[pos].tolist(),
                        strict=True,
                    ),
                )
            )
            all_ts.append(when)
        self.outbox.add("otp", np.concatenate(all_ts), lines)

    # -- complaints --------------------------------------------------------------------------

    def _complaints(
        self, t0: int, t1: int, dur: float, svc_prof: np.ndarray, cond: Conditions
    ) -> None:
        rng, t = self.rng, self.t
        lam = (
            self.rate
            * COMPLAINT_RATE
            * np.outer(w.COMPLAINT_SERVICE_SHARE * svc_prof, w.COMPLAINT_CATEGORY_SHARE)
        )
        counts = rng.poisson(lam * (1 + cond.complaint_surge) * dur).ravel()
        n = int(counts.sum())
        if n == 0:
            return
        cell = np.repeat(np.arange(S * K), counts)
        surging = cond.complaint_surge.ravel()[cell] >= 1
        chan = np.where(
            surging,
            _pick(CHANNEL_SURGE_CDF, rng.random(n)),
            _pick(CHANNEL_BASE_CDF, rng.random(n)),
        )
        text = TEXTS[cell % K, rng.integers(0, 3, n)]
        sentiment = np.clip(np.round(rng.normal(-0.45, 0.25, n) - 0.25 * surging, 2), -1.0, 1.0)
        acc = self._accounts(n)
        ts = rng.integers(t0, t1, n)
        ts_l = ts.tolist()
        lines = list(
            map(
                t.complaint.__mod__,
                zip(
                    t.complaint_keys[cell].tolist(),
                    ts_l,
                    self._ids("complaints", n),
                    ts_l,
                    t.complaint_frags[cell].tolist(),
                    CHANNEL_NAMES[chan].tolist(),
                    REGION_NAMES[self.acc_region[acc]].tolist(),
                    text.tolist(),
                    sentiment.tolist(),
                    strict=True,
                ),
            )
        )
        self.outbox.add("complaints", ts, lines)

    # -- requests ----------------------------------------------------------------------------

    def _requests(self, t0: int, t1: int, svc_prof: np.ndarray, cond: Conditions) -> None:
        rng, t = self.rng, self.t
        step = self.plan.request_interval_ms
        starts = np.arange(t0, t1, step)
        ends = np.minimum(starts + step, t1)
        interval = ends - starts  # (J,)
        n_sec = len(w.SECTIONS)
        lam = (
            self.rate
            * REQUEST_RATE
            * w.SECTION_SHARE
            * svc_prof[w.SECTION_SERVICE]
            * cond.req_volume
        )
        lam = lam[None, :] * (interval[:, None] / 1000.0)
        count = rng.poisson(lam * self._gamma(starts.size, n_sec, k=REQUEST_DISPERSION))
        perr = np.clip(w.REQUEST_BASE_ERROR + cond.req_error, 0.0, 1.0)
        errors = rng.binomial(count, np.broadcast_to(perr, count.shape))
        has_down = np.array([s[4] is not None for s in w.SECTIONS])
        down = rng.binomial(errors, np.broadcast_to(cond.req_downstream, count.shape)) * has_down
        p50 = w.SECTION_LATENCY * cond.req_latency * np.exp(0.08 * rng.standard_normal(count.shape))
        tail = 4.5 * np.exp(0.12 * rng.standard_normal(count.shape)) * np.sqrt(cond.req_latency)
        p99 = p50 * tail
        when = np.repeat(ends - 1, n_sec)
        sec = np.tile(np.arange(n_sec), starts.size)
        count_f = count.ravel()
        ivl = np.repeat(interval, n_sec).tolist()
        ids = self._ids("requests", when.size)
        keys, frags = t.request_keys[sec].tolist(), t.request_frags[sec].tolist()
        dstream = t.request_downstream[sec].tolist()
        p50_i = np.round(p50.ravel()).astype(np.int64)
        p99_i = np.maximum(p50_i, np.round(p99.ravel()).astype(np.int64))
        when_l = when.tolist()
        lines = list(
            map(
                t.request.__mod__,
                zip(
                    keys,
                    when_l,
                    ids,
                    when_l,
                    frags,
                    count_f.tolist(),
                    errors.ravel().tolist(),
                    p50_i.tolist(),
                    p99_i.tolist(),
                    ivl,
                    dstream,
                    down.ravel().tolist(),
                    strict=True,
                ),
            )
        )
        for i in np.flatnonzero(count_f == 0).tolist():  # no requests: no latency to report
            lines[i] = t.request_empty % (
                keys[i],
                when_l[i],
                ids[i],
                when_l[i],
                frags[i],
                ivl[i],
                dstream[i],
            )
        self.outbox.add("requests", when, lines)
