"""Traffic lines by template: the fast path of the simulator.

A line is exactly what :func:`streams.traffic.line_for` writes for the same record (compact
JSON, the same key order), but it is built with one ``%`` format per record from precomputed
JSON fragments instead of ``json.dumps`` (a test checks the two agree). Vocabulary words are
plain (checked in :mod:`simulator.world`), so nothing needs escaping.

Keys (the segment of the record):

- transactions: ``service|partner_bank|region|channel`` (``-`` for no bank)
- logins: ``service|region``
- otp: ``service|operator|provider``
- balances: the account id
- complaints: ``service|category``
- requests: ``service|section``
- maintenance and feedback: the service
"""

from __future__ import annotations

import itertools
import json

import numpy as np

from simulator import world as w

__all__ = ["NO_BANK_KEY", "Templates", "jstr"]

#: Key part for a transaction without a partner bank.
NO_BANK_KEY = "-"
#: Status names by code (``Platform`` uses the codes).
STATUSES: tuple[str, ...] = ("success", "failed", "pending", "completed_late")
OTP_STAGES: tuple[str, ...] = ("requested", "sent", "delivered", "verified", "expired", "failed")
LINK_KINDS: tuple[str, ...] = ("bank_link_added", "bank_link_removed")
INITIATORS: tuple[str, ...] = ("user", "system")


def jstr(value: str | None) -> str:
    """JSON text of a string or null (a fragment)."""
    return json.dumps(value, ensure_ascii=False)


def _head(topic: str) -> str:
    return '{"topic":"' + topic + '","key":"%s","timestamp":%d,"value":{"event_id":"'


def _objects(items: list[str]) -> np.ndarray:
    arr = np.empty(len(items), dtype=object)
    arr[:] = items
    return arr


class Templates:
    """Line templates and fragment tables for one run (ids carry the seed)."""

    def __init__(self, seed: int) -> None:
        p = f"s{seed}-"
        self.tx_prefix = p + "tx"
        self.otp_prefix = p + "otp"
        b_json = [*[jstr(b) for b in w.BANKS], "null"]
        b_key = [*w.BANKS, NO_BANK_KEY]
        self.bank_json = _objects(b_json)

        # transactions: segment (service, bank, region, channel) -> key and fragment
        keys, frags = [], []
        for s, b, r, c in itertools.product(
            range(len(w.SERVICES)), range(len(b_key)), range(len(w.REGIONS)), range(len(w.CHANNELS))
        ):
            keys.append(f"{w.SERVICES[s]}|{b_key[b]}|{w.REGIONS[r]}|{w.CHANNELS[c]}")
            frags.append(
                f'"service":"{w.SERVICES[s]}","region":"{w.REGIONS[r]}",'
                f'"channel":"{w.CHANNELS[c]}","partner_bank":{b_json[b]}'
            )
        self.tx_keys, self.tx_frags = _objects(keys), _objects(frags)
        # (type, status, error code or none) -> fragment; error index len(ERROR_CODES) = none
        outcome = []
        codes = [*[jstr(e) for e in w.ERROR_CODES], "null"]
        for t, st, e in itertools.product(
            range(len(w.TX_TYPES)), range(len(STATUSES)), range(len(codes))
        ):
            outcome.append(
                f'"type":"{w.TX_TYPES[t]}","status":"{STATUSES[st]}","error_code":{codes[e]}'
            )
        self.tx_outcomes = _objects(outcome)
        self.n_codes = len(codes)
        self.tx = (
            _head("transactions")
            + p
            + 't%d","event_time":%d,%s,%s,"latency_ms":%d,"amount":%d,"currency":"VND",'
            '"account_id":"a%07d","transaction_id":"' + self.tx_prefix + '%d"}}'
        )

        # balances
        bal = _head("balances").replace('"key":"%s"', '"key":"a%07d"') + p
        self.balance_change = (
            bal + 'b%d","event_time":%d,"service":"wallet","kind":"change",'
            '"account_id":"a%07d","balance":%d,"previous_balance":%d,'
            '"transaction_id":"' + self.tx_prefix + '%d","initiated_by":"user",'
            '"partner_bank":%s,"region":"%s"}}'
        )
        self.balance_read = (
            bal + 'b%d","event_time":%d,"service":"wallet","kind":"read",'
            '"account_id":"a%07d","balance":%d,"region":"%s"}}'
        )
        self.link = (
            bal + 'b%d","event_time":%d,"service":"wallet","kind":"%s",'
            '"account_id":"a%07d","initiated_by":"%s","partner_bank":%s,"region":"%s"}}'
        )

        # logins: (service, region) -> key, fragment; outcome/reason fragments
        keys, frags = [], []
        for s, r in itertools.product(range(len(w.SERVICES)), range(len(w.REGIONS))):
            keys.append(f"{w.SERVICES[s]}|{w.REGIONS[r]}")
            frags.append(f'"service":"{w.SERVICES[s]}","region":"{w.REGIONS[r]}"')
        self.login_keys, self.login_frags = _objects(keys), _objects(frags)
        reasons = ['"outcome":"success","reason":null']
        reasons += [f'"outcome":"failure","reason":"{r}"' for r in w.LOGIN_REASONS[1:]]
        reasons += [f'"outcome":"forced_logout","reason":"{r}"' for r in w.LOGOUT_REASONS]
        self.login_outcomes = _objects(reasons)
        self.forced_offset = len(w.LOGIN_REASONS)
        self.login_clients = _objects(
            [
                f'"channel":"{c}","app_version":"{v}"'
                for c, v in itertools.product(w.LOGIN_CHANNELS, w.APP_VERSIONS)
            ]
        )
        self.login = _head("logins") + p + 'l%d","event_time":%d,%s,%s,%s,"account_id":"a%07d"}}'

        # otp: (service, operator, provider) -> key, fragment
        keys, frags = [], []
        for s, o, v in itertools.product(
            range(len(w.SERVICES)), range(len(w.OPERATORS)), range(len(w.PROVIDERS))
        ):
            keys.append(f"{w.SERVICES[s]}|{w.OPERATORS[o]}|{w.PROVIDERS[v]}")
            frags.append(
                f'"service":"{w.SERVICES[s]}","operator":"{w.OPERATORS[o]}",'
                f'"provider":"{w.PROVIDERS[v]}"'
            )
        self.otp_keys, self.otp_frags = _objects(keys), _objects(frags)
        self.otp = (
            _head("otp")
            + p
            + 'o%d","event_time":%d,%s,"stage":"%s","otp_id":"'
            + self.otp_prefix
            + '%d","region":"%s","latency_ms":%d,"purpose":"%s","account_id":"a%07d"}}'
        )

        # complaints: (service, category) -> key, fragment
        keys, frags = [], []
        for s, k in itertools.product(range(len(w.SERVICES)), range(len(w.COMPLAINT_CATEGORIES))):
            keys.append(f"{w.SERVICES[s]}|{w.COMPLAINT_CATEGORIES[k]}")
            frags.append(f'"service":"{w.SERVICES[s]}","category":"{w.COMPLAINT_CATEGORIES[k]}"')
        self.complaint_keys, self.complaint_frags = _objects(keys), _objects(frags)
        self.complaint = (
            _head("complaints")
            + p
            + 'c%d","event_time":%d,%s,"channel":"%s","region":"%s","text":"%s",'
            '"sentiment":%r}}'
        )

        # requests: section -> key, fragment, downstream fragment
        self.request_keys = _objects([f"{s[0]}|{s[1]}" for s in w.SECTIONS])
        self.request_frags = _objects(
            [f'"service":"{s[0]}","section":"{s[1]}"' for s in w.SECTIONS]
        )
        self.request_downstream = _objects([jstr(s[4]) for s in w.SECTIONS])
        self.request = (
            _head("requests")
            + p
            + 'r%d","event_time":%d,%s,"requests":%d,"errors":%d,"latency_ms_p50":%d,'
            '"latency_ms_p99":%d,"interval_ms":%d,"downstream":%s,"downstream_errors":%d}}'
        )
        self.request_empty = (
            _head("requests")
            + p
            + 'r%d","event_time":%d,%s,"requests":0,"errors":0,"interval_ms":%d,'
            '"downstream":%s,"downstream_errors":0}}'
        )
        self.event_prefix = p
