"""The schema files themselves, and finding / loading / compiling them."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastjsonschema
import jsonschema
import pytest

from streams import schemas
from streams.errors import ConfigError
from streams.schemas import (
    INPUT_SCHEMAS,
    OUTPUT_SCHEMAS,
    SCHEMA_NAMES,
    load_schema,
    schema_dir,
    validator,
)

REPO_SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
DRAFT = "https://json-schema.org/draft/2020-12/schema"
#: Keywords the schemas may use: those that mean the same in draft 2020-12 (jsonschema, other
#: languages) and in fastjsonschema (which implements up to 2019-09), so both enforce the same.
ALLOWED_KEYWORDS = {
    "$schema",
    "$id",
    "title",
    "description",
    "type",
    "required",
    "properties",
    "additionalProperties",
    "enum",
    "const",
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "minimum",
    "maximum",
    "maxProperties",
    "propertyNames",
}


def nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every sub-schema with its path (properties, additionalProperties, propertyNames)."""
    yield path or "<root>", node
    for name, sub in node.get("properties", {}).items():
        yield from nodes(sub, f"{path}.{name}" if path else name)
    for key in ("additionalProperties", "propertyNames"):
        if isinstance(node.get(key), dict):
            yield from nodes(node[key], f"{path}<{key}>")


def types_of(node: dict[str, Any]) -> set[str]:
    t = node.get("type", [])
    return {t} if isinstance(t, str) else set(t)


def test_the_schema_directory_holds_exactly_the_known_schemas() -> None:
    assert schema_dir() == REPO_SCHEMAS
    files = {p.name for p in REPO_SCHEMAS.glob("*.json")}
    assert files == {f"{name}.v1.json" for name in SCHEMA_NAMES}
    assert set(INPUT_SCHEMAS) | set(OUTPUT_SCHEMAS) == set(SCHEMA_NAMES)


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_schema_is_valid_draft_2020_12(name: str) -> None:
    schema = json.loads((REPO_SCHEMAS / f"{name}.v1.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == DRAFT
    assert schema["$id"] == f"urn:outage-radar:schema:{name}:v1"
    assert schema["title"].strip()
    assert schema["description"].strip()
    assert schema["type"] == "object"
    assert set(schema["required"]) <= set(schema["properties"])


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_schema_uses_only_keywords_both_validators_enforce(name: str) -> None:
    for path, node in nodes(load_schema(name)):
        unknown = set(node) - ALLOWED_KEYWORDS
        assert not unknown, f"{name}: {path} uses {unknown}"


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_every_property_is_described_and_bounded(name: str) -> None:
    for path, node in nodes(load_schema(name)):
        if path != "<root>" and "<" not in path:
            assert node.get("description", "").strip(), f"{name}: {path} has no description"
        kinds = types_of(node)
        if "string" in kinds and "enum" not in node:
            assert "maxLength" in node, f"{name}: {path} is an unbounded string"
        if kinds & {"number", "integer"}:
            assert "minimum" in node and "maximum" in node, f"{name}: {path} is unbounded"
        if "object" in kinds and path != "<root>" and node.get("additionalProperties") is not True:
            # closed objects, or open maps whose values are bounded
            assert "properties" in node or "maxProperties" in node, f"{name}: {path}"


@pytest.mark.parametrize("name", INPUT_SCHEMAS)
def test_input_schemas_share_the_common_fields(name: str) -> None:
    schema = load_schema(name)
    assert schema["additionalProperties"] is True
    required = {"event_id", "event_time"} | ({"service"} if name != "feedback" else set())
    assert required <= set(schema["required"])
    assert "service" in schema["properties"]
    assert schema["properties"]["event_id"]["maxLength"] == 128
    event_time = schema["properties"]["event_time"]
    assert event_time["type"] == "integer"
    assert (event_time["minimum"], event_time["maximum"]) == (946684800000, 4102444800000)


def test_feedback_does_not_require_service() -> None:
    assert "service" not in load_schema("feedback")["required"]


@pytest.mark.parametrize("name", OUTPUT_SCHEMAS)
def test_output_schemas_are_closed(name: str) -> None:
    assert load_schema(name)["additionalProperties"] is False


def test_incident_body_is_closed_but_custom_details_is_open() -> None:
    data = load_schema("incident")["properties"]["data"]
    payload = data["properties"]["payload"]
    assert data["additionalProperties"] is False
    assert payload["additionalProperties"] is False
    details = payload["properties"]["custom_details"]
    assert details["additionalProperties"] is True
    for key in ("signal", "segment", "observed", "expected", "lower_bound", "upper_bound"):
        assert key in details["description"]
        assert key in details["properties"]


def test_readme_lists_every_schema_file() -> None:
    readme = (REPO_SCHEMAS / "README.md").read_text(encoding="utf-8")
    for name in SCHEMA_NAMES:
        assert f"`{name}.v1.json`" in readme


# --- finding the directory -------------------------------------------------------------------


def test_override_wins(tmp_path: Path) -> None:
    assert schema_dir(tmp_path) == tmp_path
    assert schema_dir(str(tmp_path)) == tmp_path


def test_missing_override_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError, match="nope"):
        schema_dir(missing)


def test_falls_back_to_the_installed_location(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed = tmp_path / "prefix" / "share" / "outage-radar" / "schemas"
    installed.mkdir(parents=True)
    (installed / "transactions.v1.json").write_text("{}", encoding="utf-8")
    # a directory called "schemas" without our files is not taken for ours
    (tmp_path / "schemas").mkdir()
    monkeypatch.setattr(schemas, "_REPO_DIR", tmp_path / "schemas")
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "prefix"))
    assert schema_dir() == installed


def test_no_schema_directory_names_the_paths_tried_and_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(schemas, "_REPO_DIR", tmp_path / "repo" / "schemas")
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "prefix"))
    with pytest.raises(ConfigError) as info:
        schema_dir()
    message = str(info.value)
    assert str(tmp_path / "repo" / "schemas") in message
    assert str(tmp_path / "prefix" / "share" / "outage-radar" / "schemas") in message
    assert "install" in message


# --- loading and compiling -------------------------------------------------------------------


def test_load_schema_is_cached_and_rejects_unknown_names() -> None:
    assert load_schema("transactions") is load_schema("transactions")
    with pytest.raises(ValueError, match="known schemas are"):
        load_schema("../etc/passwd")


def test_broken_schema_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "otp.v1.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"otp\.v1\.json.*not valid JSON"):
        load_schema("otp", tmp_path)
    with pytest.raises(ConfigError, match=r"logins\.v1\.json"):
        load_schema("logins", tmp_path)


def test_validator_is_compiled_once_and_enforces_formats() -> None:
    check = validator("deadletter")
    assert validator("deadletter") is check
    record = {
        "reason": "r",
        "error_kind": "not_json",
        "source_topic": "transactions",
        "partition": 0,
        "offset": 7,
        "timestamp_ms": None,
        "key_b64": None,
        "value_b64": "eyJh",
        "detected_at": "2024-05-01T12:00:00Z",
        "worker": "host:1",
    }
    assert check(dict(record)) == record
    with pytest.raises(fastjsonschema.JsonSchemaValueException) as info:
        check({**record, "detected_at": "2024-05-01 noon"})
    assert info.value.rule == "format"
    with pytest.raises(fastjsonschema.JsonSchemaValueException):
        check({**record, "value_b64": "not base64!"})
