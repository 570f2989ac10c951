"""The simulated platform: its services, app sections, partners and seasonality.

Everything here is static vocabulary (tuples, never sets, so iteration order never depends on
``PYTHONHASHSEED``) and pure functions of time. Shares are the fractions of traffic each value
gets; they need not sum to one (they are normalised where used).

Every string in the vocabulary is written into JSON lines by a template without escaping, so it
must be plain: :func:`check_plain` enforces that at import time.

Times are UTC; the platform's "local" day is the UTC day (the seasonality is centred on it).

>>> round(float(daily_profile(np.array([3.5 * HOUR_MS]))[0]), 2)
0.12
>>> round(float(daily_profile(np.array([12 * HOUR_MS]))[0]), 2)
1.0
>>> weekday_factor(1_760_832_000_000)  # 2025-10-19, a Sunday
0.82
"""

from __future__ import annotations

import json
import re

import numpy as np

__all__ = [
    "APP_VERSIONS",
    "BANKS",
    "BANK_SHARE",
    "CHANNELS",
    "COMPLAINT_CATEGORIES",
    "COMPLAINT_CHANNELS",
    "CREDIT_TYPES",
    "DAY_MS",
    "DEBIT_TYPES",
    "HOUR_MS",
    "MINUTE_MS",
    "OPERATORS",
    "OTP_PURPOSES",
    "PROVIDERS",
    "REGIONS",
    "SECTIONS",
    "SERVICES",
    "TX_TYPES",
    "daily_profile",
    "index_of",
    "weekday_factor",
]

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000

#: Products of the platform (``service`` in every record).
SERVICES: tuple[str, ...] = ("wallet", "shop", "food", "pay")
#: Share of transactions, logins and OTP codes per service.
TX_SERVICE_SHARE = np.array([0.42, 0.28, 0.14, 0.16])
LOGIN_SERVICE_SHARE = np.array([0.50, 0.26, 0.14, 0.10])
OTP_SERVICE_SHARE = np.array([0.46, 0.22, 0.10, 0.22])

REGIONS: tuple[str, ...] = ("north", "central", "south", "west")
REGION_SHARE = np.array([0.36, 0.16, 0.38, 0.10])

BANKS: tuple[str, ...] = ("VCB", "TCB", "ACB", "BIDV", "MBB")
BANK_SHARE = np.array([0.30, 0.24, 0.18, 0.16, 0.12])

CHANNELS: tuple[str, ...] = ("app", "web", "ussd", "pos")
#: Channel mix per service (rows follow SERVICES).
CHANNEL_MIX = np.array(
    [
        [0.74, 0.06, 0.14, 0.06],  # wallet: USSD for transfers, a little POS
        [0.72, 0.28, 0.00, 0.00],  # shop
        [0.96, 0.04, 0.00, 0.00],  # food
        [0.55, 0.10, 0.05, 0.30],  # pay: bills and QR at the counter
    ]
)

TX_TYPES: tuple[str, ...] = (
    "payment",
    "transfer_in",
    "transfer_out",
    "topup",
    "withdrawal",
    "refund",
    "purchase",
)
#: Transaction type mix per service (rows follow SERVICES, columns TX_TYPES).
TYPE_MIX = np.array(
    [
        [0.30, 0.22, 0.18, 0.20, 0.10, 0.00, 0.00],  # wallet
        [0.00, 0.00, 0.00, 0.00, 0.00, 0.08, 0.92],  # shop
        [0.00, 0.00, 0.00, 0.00, 0.00, 0.05, 0.95],  # food
        [1.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00],  # pay
    ]
)
#: Median amount (VND) per service and type; amounts are log-normal around it.
AMOUNT_MEDIAN = np.array(
    [
        [120e3, 1.5e6, 8e5, 1e6, 1.2e6, 1e5, 1e5],
        [1e5, 1e5, 1e5, 1e5, 1e5, 1.6e5, 1.8e5],
        [1e5, 1e5, 1e5, 1e5, 1e5, 9e4, 9e4],
        [2.5e5, 1e5, 1e5, 1e5, 1e5, 1e5, 1e5],
    ]
)
#: Types that always involve a partner bank (money moves between the wallet and a bank).
BANK_TYPES: tuple[str, ...] = ("transfer_in", "transfer_out", "topup", "withdrawal")
#: Types that credit the wallet balance / debit it (payments and purchases only when paid
#: from the balance, not by a bank card).
CREDIT_TYPES: tuple[str, ...] = ("transfer_in", "topup", "refund")
DEBIT_TYPES: tuple[str, ...] = ("payment", "transfer_out", "withdrawal", "purchase")
#: Types whose money comes from a bank and may stay pending at the bank.
PENDABLE_TYPES: tuple[str, ...] = ("transfer_in", "topup")
#: Share of payments and purchases paid by a linked bank card (no balance change).
CARD_FUNDED_SHARE = 0.3

#: Error codes of failed transactions (``error_code``); the first ones are the background mix.
ERROR_CODES: tuple[str, ...] = (
    "DECLINED",
    "BANK_TIMEOUT",
    "LIMIT_EXCEEDED",
    "SYSTEM_ERROR",
    "INVALID_OTP",
    "INSUFFICIENT_FUNDS",
    "REVERSED",
    "SERVICE_UNAVAILABLE",
    "MAINTENANCE",
    "PAYMENT_FAILED",
    "ORDER_NOT_ACCEPTED",
    "USSD_UNAVAILABLE",
)
#: Background failure mix over the first five codes.
BASE_ERROR_MIX = np.array([0.45, 0.20, 0.15, 0.10, 0.10])

OPERATORS: tuple[str, ...] = ("viettel", "vinaphone", "mobifone", "vietnamobile")
OPERATOR_SHARE = np.array([0.46, 0.25, 0.22, 0.07])
#: Baseline delivery latency multiplier per operator (small operators are a little slower).
OPERATOR_LATENCY = np.array([1.0, 1.1, 1.15, 1.4])
PROVIDERS: tuple[str, ...] = ("esms", "twilio", "infobip")
PROVIDER_SHARE = np.array([0.45, 0.30, 0.25])
OTP_PURPOSES: tuple[str, ...] = ("login", "payment", "transfer", "link_bank")
OTP_PURPOSE_SHARE = np.array([0.35, 0.45, 0.15, 0.05])

APP_VERSIONS: tuple[str, ...] = ("5.12.1", "5.11.3", "5.10.0")
APP_VERSION_SHARE = np.array([0.62, 0.30, 0.08])
LOGIN_CHANNELS: tuple[str, ...] = ("app", "web")
LOGIN_CHANNEL_SHARE = np.array([0.86, 0.14])
#: Login outcomes and reasons; index 0 is success, the rest are failure reasons.
LOGIN_REASONS: tuple[str, ...] = (
    "success",
    "wrong_password",
    "network",
    "server_error",
    "account_not_registered",
    "otp_failed",
)
#: Background probability of each login outcome (success first).
LOGIN_BASE = np.array([0.9725, 0.018, 0.004, 0.001, 0.0015, 0.003])
#: Reasons of forced logouts: background expiry, incident invalidation.
LOGOUT_REASONS: tuple[str, ...] = ("session_expired", "session_invalidated")

#: App sections: (service, section, share of requests, median latency ms, downstream).
SECTIONS: tuple[tuple[str, str, float, float, str | None], ...] = (
    ("wallet", "home", 0.16, 60.0, None),
    ("wallet", "wallet.cards", 0.04, 120.0, "card-vault"),
    ("wallet", "wallet.iban", 0.03, 140.0, "bank-gateway"),
    ("wallet", "wallet.transfer", 0.08, 180.0, "bank-gateway"),
    ("wallet", "wallet.history", 0.07, 90.0, None),
    ("shop", "shop.search", 0.14, 110.0, None),
    ("shop", "shop.product", 0.14, 80.0, None),
    ("shop", "checkout", 0.08, 200.0, "payment-gateway"),
    ("food", "food.menu", 0.10, 90.0, None),
    ("food", "food.orders", 0.06, 150.0, "restaurant-api"),
    ("pay", "pay.bills", 0.05, 160.0, "biller-gateway"),
    ("pay", "pay.qr", 0.05, 130.0, "payment-gateway"),
)
SECTION_NAMES: tuple[str, ...] = tuple(s[1] for s in SECTIONS)
SECTION_SERVICE = np.array([SERVICES.index(s[0]) for s in SECTIONS])
SECTION_SHARE = np.array([s[2] for s in SECTIONS])
SECTION_LATENCY = np.array([s[3] for s in SECTIONS])
#: Background error probability of a request, and the share of errors caused downstream.
REQUEST_BASE_ERROR = 0.003
REQUEST_BASE_DOWNSTREAM_SHARE = 0.3

COMPLAINT_CATEGORIES: tuple[str, ...] = (
    "login",
    "balance",
    "payment",
    "otp",
    "transfer",
    "refund",
    "other",
)
COMPLAINT_CATEGORY_SHARE = np.array([0.18, 0.10, 0.22, 0.10, 0.14, 0.08, 0.18])
COMPLAINT_SERVICE_SHARE = np.array([0.45, 0.25, 0.15, 0.15])
COMPLAINT_CHANNELS: tuple[str, ...] = (
    "support_ticket",
    "social_media",
    "app_review",
    "call_center",
    "email",
    "chat",
)
COMPLAINT_CHANNEL_BASE = np.array([0.30, 0.15, 0.10, 0.15, 0.10, 0.20])
#: During an outage people go to social media first.
COMPLAINT_CHANNEL_SURGE = np.array([0.12, 0.50, 0.10, 0.10, 0.03, 0.15])
#: Complaint texts per category (short, plain ASCII).
COMPLAINT_TEXTS: tuple[tuple[str, ...], ...] = (
    ("cannot log in", "login keeps failing with a network error", "app logged me out"),
    ("my balance shows 0", "balance is wrong", "money disappeared from my wallet"),
    ("payment failed", "charged but order unpaid", "cannot pay at checkout"),
    ("OTP code never arrives", "no SMS code", "OTP came too late"),
    ("bank transfer not received", "transfer stuck pending", "top-up not credited"),
    ("refund not received", "refund is very slow", "where is my refund"),
    ("app is slow", "something went wrong", "please fix the app"),
)

#: Relative activity at each hour of the day (linear in between): a night trough at about
#: 12 % of the peak, a morning rise, a lunch peak and an evening peak.
# fmt: off
HOURLY = np.array([
    0.32, 0.20, 0.14, 0.12, 0.12, 0.17, 0.32, 0.55, 0.74, 0.85, 0.92, 0.97,
    1.00, 0.94, 0.88, 0.86, 0.87, 0.90, 0.94, 0.98, 1.00, 0.90, 0.70, 0.48,
])
# fmt: on
#: Relative activity per weekday, Monday first: weekends are quieter.
WEEKDAY = (1.0, 1.0, 1.0, 1.0, 1.0, 0.9, 0.82)
#: Food orders gather around meals: a multiplier per hour for the food service.
# fmt: off
FOOD_HOURLY = np.array([
    0.6, 0.5, 0.5, 0.5, 0.5, 0.5, 0.6, 0.8, 0.9, 0.8, 1.1, 1.6,
    1.8, 1.3, 0.8, 0.7, 0.8, 1.2, 1.7, 1.8, 1.3, 0.9, 0.8, 0.7,
])
# fmt: on


def _hourly(table: np.ndarray, t_ms: np.ndarray) -> np.ndarray:
    hours = (t_ms % DAY_MS) / HOUR_MS
    lo = np.floor(hours).astype(np.int64) % 24
    frac = hours - np.floor(hours)
    return table[lo] * (1.0 - frac) + table[(lo + 1) % 24] * frac


def daily_profile(t_ms: np.ndarray) -> np.ndarray:
    """Relative activity (peak 1.0) at event times ``t_ms`` (epoch ms), by time of day only."""
    return _hourly(HOURLY, t_ms)


def food_factor(t_ms: np.ndarray) -> np.ndarray:
    """Extra multiplier of the food service at ``t_ms``: meal-time peaks."""
    return _hourly(FOOD_HOURLY, t_ms)


def weekday_factor(t_ms: int) -> float:
    """Relative activity of the day holding ``t_ms`` (1 on weekdays, lower at weekends)."""
    days = t_ms // DAY_MS  # 1970-01-01 was a Thursday (weekday 3)
    return WEEKDAY[(days + 3) % 7]


def index_of(vocab: tuple[str, ...], name: str) -> int:
    """Position of ``name`` in ``vocab``; ``ValueError`` listing the choices when absent."""
    try:
        return vocab.index(name)
    except ValueError:
        raise ValueError(f"{name!r} is not one of {', '.join(vocab)}") from None


_PLAIN = re.compile(r"^[A-Za-z0-9 ._:+\-]*$")


def check_plain(*vocabularies: tuple[str, ...]) -> None:
    """Raise ``ValueError`` if a word would need JSON escaping (templates do not escape)."""
    for vocab in vocabularies:
        for word in vocab:
            if not _PLAIN.match(word) or json.dumps(word) != f'"{word}"':
                raise ValueError(f"vocabulary word {word!r} needs escaping; keep it plain")


check_plain(
    SERVICES,
    REGIONS,
    BANKS,
    CHANNELS,
    TX_TYPES,
    ERROR_CODES,
    OPERATORS,
    PROVIDERS,
    OTP_PURPOSES,
    APP_VERSIONS,
    LOGIN_CHANNELS,
    LOGIN_REASONS,
    LOGOUT_REASONS,
    SECTION_NAMES,
    tuple(s[4] for s in SECTIONS if s[4] is not None),
    COMPLAINT_CATEGORIES,
    COMPLAINT_CHANNELS,
    *COMPLAINT_TEXTS,
)
