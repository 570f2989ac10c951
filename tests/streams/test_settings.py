"""Tests for streams.settings.Settings.from_env."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from streams.errors import ConfigError
from streams.settings import INPUT_TOPICS, PREFIX, Settings, Topics

FIELDS = [f for f in dataclasses.fields(Settings) if f.name != "topics"]
TOPIC_FIELDS = [f.name for f in dataclasses.fields(Topics)]
HERE = Path(__file__).resolve().parent  # an existing directory, for RADAR_WARM_START

#: A valid, non-default raw value and its parsed value, per setting.
OVERRIDES: dict[str, tuple[str, object]] = {
    "broker": ("kafka://k1:9092;k2:9093", "kafka://k1:9092;k2:9093"),
    "broker_flavour": ("tansu", "tansu"),
    "app_id": ("radar-test", "radar-test"),
    "partitions": ("12", 12),
    "replication": ("3", 3),
    "create_topics": ("false", False),
    "window_seconds": ("30.5", 30.5),
    "lateness_seconds": ("0", 0.0),
    "idle_seconds": ("2.25", 2.25),
    "state_history_seconds": ("0", 0.0),
    "account_state": ("false", False),
    "stale_seconds": ("42.5", 42.5),
    "max_lag": ("1234", 1234),
    "max_record_bytes": ("2048", 2048),
    "warm_start": (str(HERE), str(HERE)),
    "web_enabled": ("yes", True),
    "web_port": ("7070", 7070),
    "data_dir": ("/var/lib/radar", "/var/lib/radar"),
    "source": ("/radar/eu-1", "/radar/eu-1"),
    "webhook_url": ("https://hooks.example.com/radar", "https://hooks.example.com/radar"),
    "webhook_secret": ("s3cret-s3cret-s3cret", "s3cret-s3cret-s3cret"),
    "webhook_routing_key": ("R0UTINGKEY0123456789", "R0UTINGKEY0123456789"),
    "webhook_timeout_seconds": ("2.5", 2.5),
    "webhook_backoff_seconds": ("0.25", 0.25),
    "webhook_max_backoff_seconds": ("30", 30.0),
}
#: Settings that describe() masks, so they cannot round-trip through it.
MASKED = {"webhook_secret", "webhook_routing_key"}


def env_name(field: str) -> str:
    return PREFIX + field.upper()


def test_overrides_cover_every_setting() -> None:
    assert set(OVERRIDES) == {f.name for f in FIELDS}


def test_defaults() -> None:
    s = Settings.from_env({})
    assert s == Settings()
    assert s.broker == "kafka://127.0.0.1:9092"
    assert s.broker_flavour == "auto"
    assert s.app_id == "outage-radar"
    assert (s.partitions, s.replication) == (4, 1)
    assert s.create_topics is True and s.web_enabled is False
    assert (s.window_seconds, s.lateness_seconds, s.idle_seconds) == (10.0, 5.0, 5.0)
    assert (s.window_ms, s.lateness_ms) == (10_000, 5_000)
    assert (s.state_history_seconds, s.state_history_ms) == (900.0, 900_000)
    assert s.max_record_bytes == 1_048_576
    assert s.source == "/outage-radar"
    assert s.bootstrap_servers == ["127.0.0.1:9092"]
    assert s.topics.all() == {
        **{kind: kind for kind in INPUT_TOPICS},
        "incidents": "incidents",
        "deadletter": "deadletter",
        "windows": "radar-windows",
        "account_state": "radar-account-state",
    }
    assert s.account_state is True
    assert list(s.topics.inputs()) == list(INPUT_TOPICS)


def test_from_env_reads_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RADAR_APP_ID", "from-process-env")
    monkeypatch.setenv("RADAR_TOPIC_INCIDENTS", "pages")
    s = Settings.from_env()
    assert s.app_id == "from-process-env"
    assert s.topics.incidents == "pages"


def test_non_radar_variables_are_ignored() -> None:
    s = Settings.from_env({"PATH": "/bin", "KAFKA_BROKER": "x", "radar_app_id": "lower"})
    assert s == Settings()


@pytest.mark.parametrize("field", [f.name for f in FIELDS])
def test_every_setting_is_overridable(field: str) -> None:
    raw, parsed = OVERRIDES[field]
    s = Settings.from_env({env_name(field): raw})
    value = getattr(s, field)
    assert value == parsed and type(value) is type(parsed)
    assert value != getattr(Settings(), field)
    # and nothing else changed
    for other in FIELDS:
        if other.name != field:
            assert getattr(s, other.name) == getattr(Settings(), other.name)


def test_all_settings_at_once_and_describe_round_trips() -> None:
    env = {env_name(name): raw for name, (raw, _) in OVERRIDES.items()}
    env |= {f"{PREFIX}TOPIC_{t.upper()}": f"x.{t}" for t in TOPIC_FIELDS}
    s = Settings.from_env(env)
    assert {name: getattr(s, name) for name in OVERRIDES} == {
        name: parsed for name, (_, parsed) in OVERRIDES.items()
    }
    listed = dict(line.split("=", 1) for line in s.describe().splitlines())
    again = Settings.from_env({k: v for k, v in listed.items() if k not in map(env_name, MASKED)})
    assert again == dataclasses.replace(s, **dict.fromkeys(MASKED, ""))


@pytest.mark.parametrize("topic", TOPIC_FIELDS)
def test_topic_rename(topic: str) -> None:
    s = Settings.from_env({f"{PREFIX}TOPIC_{topic.upper()}": f"prod.{topic}-v2"})
    assert getattr(s.topics, topic) == f"prod.{topic}-v2"
    for other in TOPIC_FIELDS:
        if other != topic:
            assert getattr(s.topics, other) == getattr(Topics(), other)


@pytest.mark.parametrize("bad", ["", "has space", "a/b", "x" * 250, "tópico"])
def test_bad_topic_name(bad: str) -> None:
    with pytest.raises(ConfigError, match="RADAR_TOPIC_LOGINS"):
        Settings.from_env({"RADAR_TOPIC_LOGINS": bad})


@pytest.mark.parametrize(
    "name", ["RADAR_WINDOW_SECOND", "RADAR_TOPIC_TRANSACTION", "RADAR_", "RADAR_topics"]
)
def test_unknown_radar_variable_is_named(name: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({name: "1", "RADAR_APP_ID": "ok"})
    unknown_part, _, known_part = str(info.value).partition("; known settings are: ")
    # several names are prefixes of known ones: look only at the part naming the unknown
    assert unknown_part == f"unknown setting(s) {name}"
    assert "RADAR_APP_ID" in known_part.split(", ")  # the known settings are listed as a hint


def test_several_unknown_variables_are_all_named() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"RADAR_FOO": "1", "RADAR_BAR": "2", "RADAR_PARTITIONS": "2"})
    unknown_part = str(info.value).partition(";")[0]
    assert "RADAR_FOO" in unknown_part and "RADAR_BAR" in unknown_part
    assert "RADAR_PARTITIONS" not in unknown_part


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("RADAR_PARTITIONS", "four"),
        ("RADAR_PARTITIONS", "4.5"),
        ("RADAR_WEB_PORT", "80a"),
        ("RADAR_MAX_RECORD_BYTES", ""),
        ("RADAR_WINDOW_SECONDS", "10s"),
        ("RADAR_LATENESS_SECONDS", "five"),
        ("RADAR_IDLE_SECONDS", "1,5"),
        ("RADAR_CREATE_TOPICS", "maybe"),
        ("RADAR_WEB_ENABLED", "2"),
        ("RADAR_WEB_ENABLED", ""),
    ],
)
def test_bad_typed_value_names_variable_and_value(name: str, bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({name: bad})
    message = str(info.value)
    assert name in message
    assert repr(bad) in message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        *[("1", True), ("TRUE", True), (" on ", True), ("Yes", True)],
        *[("0", False), ("false", False), ("OFF", False), ("no", False)],
    ],
)
def test_bool_spellings(raw: str, expected: bool) -> None:
    assert Settings.from_env({"RADAR_WEB_ENABLED": raw}).web_enabled is expected


def test_numbers_are_stripped() -> None:
    s = Settings.from_env({"RADAR_PARTITIONS": " 8 ", "RADAR_WINDOW_SECONDS": " 0.5\n"})
    assert s.partitions == 8
    assert s.window_seconds == 0.5 and s.window_ms == 500


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RADAR_PARTITIONS", "0"),
        ("RADAR_REPLICATION", "-1"),
        ("RADAR_WINDOW_SECONDS", "0"),
        ("RADAR_IDLE_SECONDS", "0"),
        ("RADAR_LATENESS_SECONDS", "-0.5"),
        ("RADAR_STATE_HISTORY_SECONDS", "-1"),
        ("RADAR_MAX_RECORD_BYTES", "0"),
    ],
)
def test_too_small_values(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


@pytest.mark.parametrize("value", ["nan", "inf", "-nan", "Infinity"])
def test_non_finite_window_is_a_config_error(value: str) -> None:
    with pytest.raises(ConfigError, match="RADAR_WINDOW_SECONDS"):
        Settings.from_env({"RADAR_WINDOW_SECONDS": value})


def test_finite_window_gives_integer_ms() -> None:
    s = Settings.from_env({"RADAR_WINDOW_SECONDS": "0.0015", "RADAR_LATENESS_SECONDS": "1e-3"})
    assert (s.window_ms, s.lateness_ms) == (2, 1)
    assert math.isfinite(s.window_seconds)


@pytest.mark.parametrize(
    "broker", ["127.0.0.1:9092", "http://k:9092", "kafka:/k:9092", "KAFKA://k:9092"]
)
def test_bad_broker_url(broker: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"RADAR_BROKER": broker})
    assert "RADAR_BROKER" in str(info.value) and broker in str(info.value)


def test_empty_string_setting_is_rejected() -> None:
    with pytest.raises(ConfigError, match="RADAR_APP_ID"):
        Settings.from_env({"RADAR_APP_ID": "  "})


def test_bad_broker_flavour() -> None:
    with pytest.raises(ConfigError, match="RADAR_BROKER_FLAVOUR"):
        Settings.from_env({"RADAR_BROKER_FLAVOUR": "redpanda"})


@pytest.mark.parametrize(
    ("broker", "servers"),
    [
        ("kafka://a:1;b:2", ["a:1", "b:2"]),
        ("kafka://a:1", ["a:1"]),
        ("aiokafka://a:1,b:2", ["a:1", "b:2"]),
        ("kafka://a:1; b:2 ;", ["a:1", "b:2"]),
    ],
)
def test_bootstrap_servers(broker: str, servers: list[str]) -> None:
    assert Settings.from_env({"RADAR_BROKER": broker}).bootstrap_servers == servers


def test_settings_are_frozen() -> None:
    s = Settings.from_env({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.app_id = "x"  # type: ignore[misc]


# --------------------------------------------------------------------------- webhook settings


def test_webhook_is_off_by_default() -> None:
    s = Settings.from_env({})
    assert (s.webhook_url, s.webhook_secret, s.webhook_routing_key) == ("", "", "")
    assert (s.webhook_timeout_seconds, s.webhook_backoff_seconds) == (10.0, 0.5)
    assert s.webhook_max_backoff_seconds == 60.0


@pytest.mark.parametrize(
    "url", ["hooks.example.com/radar", "ftp://hooks.example.com/x", "https://", "http://h:port/x"]
)
def test_bad_webhook_url_names_variable_value_and_fix(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"RADAR_WEBHOOK_URL": url})
    message = str(info.value)
    assert "RADAR_WEBHOOK_URL" in message and repr(url) in message
    assert "https://events.pagerduty.com/v2/enqueue" in message  # the fix, by example


def test_bad_webhook_url_error_masks_its_credentials() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"RADAR_WEBHOOK_URL": "ftp://bot:hunter2@h/x?token=abc"})
    assert "hunter2" not in str(info.value) and "abc" not in str(info.value)
    assert "ftp://bot:***@h/x?***" in str(info.value)


def test_short_webhook_secret_is_rejected_without_showing_it() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"RADAR_WEBHOOK_SECRET": "tooshort"})
    message = str(info.value)
    assert "RADAR_WEBHOOK_SECRET" in message and "8 characters" in message
    assert "tooshort" not in message
    assert "secrets.token_hex" in message  # how to make a good one


def test_secrets_are_never_printed() -> None:
    secret, key = "s3cret-s3cret-s3cret", "R0UTINGKEY0123456789"
    s = Settings.from_env(
        {
            "RADAR_WEBHOOK_URL": "https://u:pw-in-url@hooks.example.com/r?sig=qs-secret",
            "RADAR_WEBHOOK_SECRET": secret,
            "RADAR_WEBHOOK_ROUTING_KEY": key,
        }
    )
    assert s.webhook_secret == secret and s.webhook_routing_key == key
    shown = s.describe() + repr(s) + str(s)
    for hidden in (secret, key, "pw-in-url", "qs-secret"):
        assert hidden not in shown
    assert "RADAR_WEBHOOK_SECRET=***" in s.describe()
    assert "RADAR_WEBHOOK_URL=https://u:***@hooks.example.com/r?***" in s.describe()
    # unset secrets are listed empty, not as a mask (which would suggest one is set)
    assert "RADAR_WEBHOOK_SECRET=\n" in Settings().describe() + "\n"


@pytest.mark.parametrize(
    "name",
    [
        "RADAR_WEBHOOK_TIMEOUT_SECONDS",
        "RADAR_WEBHOOK_BACKOFF_SECONDS",
        "RADAR_WEBHOOK_MAX_BACKOFF_SECONDS",
    ],
)
@pytest.mark.parametrize("value", ["0", "-1", "nan"])
def test_webhook_durations_must_be_positive(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_webhook_backoff_cap_below_first_delay_names_both() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(
            {"RADAR_WEBHOOK_BACKOFF_SECONDS": "5", "RADAR_WEBHOOK_MAX_BACKOFF_SECONDS": "2"}
        )
    message = str(info.value)
    assert "RADAR_WEBHOOK_MAX_BACKOFF_SECONDS=2.0" in message
    assert "RADAR_WEBHOOK_BACKOFF_SECONDS=5.0" in message


def test_warm_start_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "history"
    with pytest.raises(ConfigError) as err:
        Settings.from_env({"RADAR_WARM_START": str(missing)})
    assert f"RADAR_WARM_START={str(missing)!r} does not exist" in str(err.value)
    assert "unset it to start cold" in str(err.value)
