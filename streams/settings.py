"""Settings: one typed, frozen object read from ``RADAR_*`` environment variables.

Nothing else in the project reads ``os.environ`` for configuration. Every setting has a
sensible default so ``python -m streams worker`` runs against a local broker with no
configuration at all; production sets ``RADAR_BROKER`` and little else.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from streams.errors import ConfigError

PREFIX = "RADAR_"
#: Settings whose values are never printed (:meth:`Settings.describe` shows :data:`MASK`).
SECRET_SETTINGS = frozenset({"webhook_secret", "webhook_routing_key"})
MASK = "***"
#: Shortest ``RADAR_WEBHOOK_SECRET`` accepted.
MIN_SECRET_CHARS = 16

#: Input topics in the order of ``DESIGN.md``; the value is the default topic name.
INPUT_TOPICS: tuple[str, ...] = (
    "transactions",
    "logins",
    "otp",
    "balances",
    "complaints",
    "requests",
    "maintenance",
    "feedback",
)


@dataclass(frozen=True)
class Topics:
    """Topic names. Each can be renamed with ``RADAR_TOPIC_<NAME>``."""

    transactions: str = "transactions"
    logins: str = "logins"
    otp: str = "otp"
    balances: str = "balances"
    complaints: str = "complaints"
    requests: str = "requests"
    maintenance: str = "maintenance"
    feedback: str = "feedback"
    incidents: str = "incidents"
    deadletter: str = "deadletter"
    #: Internal: per-window partial aggregates, partitioned by service (stage 1 -> stage 2).
    windows: str = "radar-windows"
    #: Internal, compacted: each account's balance when the worker first learned it or its
    #: funded status flipped, on the partition of its balances record (stage 1's own log).
    account_state: str = "radar-account-state"

    def inputs(self) -> dict[str, str]:
        """Input kind -> topic name."""
        return {kind: getattr(self, kind) for kind in INPUT_TOPICS}

    def all(self) -> dict[str, str]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def configs(self) -> dict[str, dict[str, str]]:
        """Topic name -> the configs it is created with, for those that need any.

        >>> Topics().configs()
        {'radar-account-state': {'cleanup.policy': 'compact'}}
        """
        return {self.account_state: {"cleanup.policy": "compact"}}


@dataclass(frozen=True)
class Settings:
    """Everything a worker needs to know, with the environment variable that sets it.

    >>> s = Settings.from_env({"RADAR_BROKER": "kafka://k1:9092", "RADAR_WINDOW_SECONDS": "30"})
    >>> s.broker, s.window_seconds, s.topics.transactions
    ('kafka://k1:9092', 30.0, 'transactions')
    """

    #: ``RADAR_BROKER``: Faust URL form, ``kafka://host:port`` (several joined by ``;``).
    broker: str = "kafka://127.0.0.1:9092"
    #: ``RADAR_BROKER_FLAVOUR``: ``kafka`` (Apache Kafka), ``tansu`` (embedded broker quirks on),
    #: or ``auto``: asks the broker at start-up (:func:`streams.broker.detect_flavour`).
    broker_flavour: str = "auto"
    #: ``RADAR_APP_ID``: Faust application id = consumer group and internal topic prefix.
    app_id: str = "outage-radar"
    #: ``RADAR_PARTITIONS``: partitions for topics the worker creates.
    partitions: int = 4
    #: ``RADAR_REPLICATION``: replication factor for topics the worker creates.
    replication: int = 1
    #: ``RADAR_CREATE_TOPICS``: create missing topics at start-up.
    create_topics: bool = True
    #: ``RADAR_WINDOW_SECONDS``: tumbling event-time window size.
    window_seconds: float = 10.0
    #: ``RADAR_LATENESS_SECONDS``: how far behind a partition's newest event time a record may
    #: arrive and still be counted; later records go to the dead-letter topic as ``late``.
    lateness_seconds: float = 5.0
    #: ``RADAR_IDLE_SECONDS``: wall-clock seconds without records after which a partition stops
    #: holding back window completion (so one quiet partition cannot stall detection).
    idle_seconds: float = 5.0
    #: ``RADAR_STATE_HISTORY_SECONDS``: seconds of a balances or OTP partition's history (by
    #: record timestamp) a worker replays into its per-account balances and per-code OTP
    #: deadlines when it takes the partition (at start-up or in a rebalance); 0: none.
    state_history_seconds: float = 900.0
    #: ``RADAR_ACCOUNT_STATE``: keep every account's funded status on the account state topic
    #: (a message when an account is first seen or flips between funded and not), and read a
    #: balances partition's back when taking it over, before its history: so an account last
    #: seen before that history is still known. false: the history alone.
    account_state: bool = True
    #: ``RADAR_STALE_SECONDS``: wall-clock seconds without records after which an input topic
    #: that delivered records before raises a "detector blind" incident.
    stale_seconds: float = 300.0
    #: ``RADAR_MAX_LAG``: records the worker may be behind on an input topic before it raises a
    #: "detector blind" incident (resolved below half of it).
    max_lag: int = 500_000
    #: ``RADAR_MAX_RECORD_BYTES``: larger records are dead-lettered as ``too_large``.
    max_record_bytes: int = 1_048_576
    #: ``RADAR_WEB_ENABLED`` / ``RADAR_WEB_PORT``: Faust's web server (health, metrics).
    web_enabled: bool = False
    web_port: int = 6066
    #: ``RADAR_DATA_DIR``: Faust's local state directory.
    data_dir: str = ".radar"
    #: ``RADAR_SOURCE``: CloudEvents ``source`` of the incidents this worker emits.
    source: str = "/outage-radar"
    #: ``RADAR_WEBHOOK_URL``: where ``python -m streams webhook`` POSTs the PagerDuty Events v2
    #: body of every incident event (empty: no webhook). Out of ``repr`` (a URL may hold a token).
    webhook_url: str = field(default="", repr=False)
    #: ``RADAR_WEBHOOK_SECRET``: HMAC-SHA256 key that signs every webhook request (empty:
    #: unsigned). Never printed: masked in :meth:`describe`, left out of ``repr``.
    webhook_secret: str = field(default="", repr=False)
    #: ``RADAR_WEBHOOK_ROUTING_KEY``: PagerDuty integration key, added to the body as
    #: ``routing_key`` (needed to POST to PagerDuty itself; masked like the secret).
    webhook_routing_key: str = field(default="", repr=False)
    #: ``RADAR_WEBHOOK_TIMEOUT_SECONDS``: time limit of one webhook request.
    webhook_timeout_seconds: float = 10.0
    #: ``RADAR_WEBHOOK_BACKOFF_SECONDS`` / ``RADAR_WEBHOOK_MAX_BACKOFF_SECONDS``: the first retry
    #: delay (doubled per attempt, with jitter) and the cap of any delay.
    webhook_backoff_seconds: float = 0.5
    webhook_max_backoff_seconds: float = 60.0
    #: ``RADAR_WARM_START``: traffic files (a directory or one file, as ``evaluate --warm-start``
    #: takes) the worker's detectors learn from at start-up, before the first live window: e.g.
    #: ``python -m streams record`` output of the last days. Empty: start cold.
    warm_start: str = ""
    topics: Topics = field(default_factory=Topics)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read settings from ``environ`` (default: the process environment).

        Unknown ``RADAR_*`` variables are an error, so a typo never silently falls back to a
        default.
        """
        env = dict(os.environ if environ is None else environ)
        values: dict[str, Any] = {}
        known: set[str] = set()
        for f in dataclasses.fields(cls):
            if f.name == "topics":
                continue
            name = PREFIX + f.name.upper()
            known.add(name)
            if name in env:
                values[f.name] = _convert(name, env[name], f.type)
        topic_values: dict[str, str] = {}
        for f in dataclasses.fields(Topics):
            name = f"{PREFIX}TOPIC_{f.name.upper()}"
            known.add(name)
            if name in env:
                topic_values[f.name] = _require_topic_name(name, env[name])
        unknown = sorted(k for k in env if k.startswith(PREFIX) and k not in known)
        if unknown:
            raise ConfigError(
                f"unknown setting(s) {', '.join(unknown)}; "
                f"known settings are: {', '.join(sorted(known))}"
            )
        settings = cls(**values, topics=Topics(**topic_values))
        settings.validate()
        return settings

    def validate(self) -> None:
        if not self.broker.startswith(("kafka://", "aiokafka://")):
            raise ConfigError(
                f"RADAR_BROKER={self.broker!r} is not a Faust broker URL; "
                "write it as kafka://host:port (e.g. kafka://127.0.0.1:9092)"
            )
        if self.broker_flavour not in ("auto", "kafka", "tansu"):
            raise ConfigError(
                f"RADAR_BROKER_FLAVOUR={self.broker_flavour!r} is not known; use 'auto' (the "
                "default: ask the broker), 'kafka' or 'tansu'"
            )
        for name, value, low in (
            ("RADAR_WINDOW_SECONDS", self.window_seconds, 0.001),
            ("RADAR_IDLE_SECONDS", self.idle_seconds, 0.001),
            ("RADAR_STALE_SECONDS", self.stale_seconds, 0.001),
            ("RADAR_MAX_LAG", self.max_lag, 1),
            ("RADAR_LATENESS_SECONDS", self.lateness_seconds, 0.0),
            ("RADAR_STATE_HISTORY_SECONDS", self.state_history_seconds, 0.0),
            ("RADAR_PARTITIONS", self.partitions, 1),
            ("RADAR_REPLICATION", self.replication, 1),
            ("RADAR_MAX_RECORD_BYTES", self.max_record_bytes, 1),
            ("RADAR_WEBHOOK_TIMEOUT_SECONDS", self.webhook_timeout_seconds, 0.001),
            ("RADAR_WEBHOOK_BACKOFF_SECONDS", self.webhook_backoff_seconds, 0.001),
            ("RADAR_WEBHOOK_MAX_BACKOFF_SECONDS", self.webhook_max_backoff_seconds, 0.001),
        ):
            if not math.isfinite(value):
                raise ConfigError(f"{name}={value!r} is not a finite number; give e.g. {name}=10")
            if value < low:
                raise ConfigError(f"{name}={value!r} is too small; it must be at least {low}")
        self._validate_webhook()
        if self.warm_start and not Path(self.warm_start).exists():
            raise ConfigError(
                f"RADAR_WARM_START={self.warm_start!r} does not exist; give a directory of traffic "
                "files (python -m streams record or simulate writes them) or one such file, or "
                "unset it to start cold"
            )

    def _validate_webhook(self) -> None:
        if self.webhook_url:
            try:
                parts = urlsplit(self.webhook_url)
                valid = parts.scheme in ("http", "https") and bool(parts.hostname)
                parts.port  # noqa: B018  (raises ValueError for a port that is not a number)
            except ValueError:
                valid = False
            if not valid:
                raise ConfigError(
                    f"RADAR_WEBHOOK_URL={redacted_url(self.webhook_url)!r} is not an http(s) URL; "
                    "give the receiver's full URL, e.g. https://events.pagerduty.com/v2/enqueue "
                    "(or unset it: no webhook)"
                )
        if self.webhook_secret and len(self.webhook_secret) < MIN_SECRET_CHARS:
            raise ConfigError(
                f"RADAR_WEBHOOK_SECRET is {len(self.webhook_secret)} characters long (value not "
                f"shown); use at least {MIN_SECRET_CHARS} random characters, e.g. the output of "
                "python -c 'import secrets; print(secrets.token_hex(32))'"
            )
        if self.webhook_max_backoff_seconds < self.webhook_backoff_seconds:
            raise ConfigError(
                f"RADAR_WEBHOOK_MAX_BACKOFF_SECONDS={self.webhook_max_backoff_seconds!r} is below "
                f"RADAR_WEBHOOK_BACKOFF_SECONDS={self.webhook_backoff_seconds!r}; the cap must be "
                "at least the first delay (raise the cap or lower the first delay)"
            )

    @property
    def bootstrap_servers(self) -> list[str]:
        """``host:port`` list for kafka-python / aiokafka clients."""
        hosts = self.broker.split("://", 1)[1]
        return [h.strip() for h in hosts.replace(",", ";").split(";") if h.strip()]

    @property
    def window_ms(self) -> int:
        return round(self.window_seconds * 1000)

    @property
    def lateness_ms(self) -> int:
        return round(self.lateness_seconds * 1000)

    @property
    def state_history_ms(self) -> int:
        return round(self.state_history_seconds * 1000)

    def describe(self) -> str:
        """Human-readable listing (secrets, when there are any, are masked here)."""
        lines = []
        for f in dataclasses.fields(self):
            if f.name == "topics":
                continue
            value = getattr(self, f.name)
            if f.name in SECRET_SETTINGS and value:
                value = MASK
            elif f.name == "webhook_url":
                value = redacted_url(value)
            lines.append(f"{PREFIX}{f.name.upper()}={value}")
        for k, v in self.topics.all().items():
            lines.append(f"{PREFIX}TOPIC_{k.upper()}={v}")
        return "\n".join(lines)


def redacted_url(url: str) -> str:
    """``url`` with a password and a query string masked (they often carry tokens).

    >>> redacted_url("https://bot:hunter2@hooks.example.com/radar?token=abc")
    'https://bot:***@hooks.example.com/radar?***'
    >>> redacted_url("https://events.pagerduty.com/v2/enqueue")
    'https://events.pagerduty.com/v2/enqueue'
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return url.split("?", 1)[0].rsplit("@", 1)[-1]  # unparseable: drop what may be secret
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        netloc = (user.split(":", 1)[0] + ":" + MASK if ":" in user else user) + "@" + host
    query = MASK if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _convert(name: str, raw: str, type_: Any) -> Any:
    text = raw.strip()
    kind = type_ if isinstance(type_, str) else getattr(type_, "__name__", str(type_))
    try:
        if kind == "bool":
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
    except ValueError:
        raise ConfigError(
            f"{name}={raw!r} is not a valid {kind}; "
            + ("use true/false" if kind == "bool" else f"give a number, e.g. {name}=10")
        ) from None
    if not text:
        raise ConfigError(f"{name} is set but empty; unset it to use the default or give a value")
    return text


def _require_topic_name(name: str, raw: str) -> str:
    text = raw.strip()
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    if not text or len(text) > 249 or not set(text) <= allowed:
        raise ConfigError(
            f"{name}={raw!r} is not a valid Kafka topic name; use 1-249 characters "
            "from letters, digits, '.', '_' and '-'"
        )
    return text
