"""The wire contracts: JSON Schema files under ``schemas/``, loaded and compiled once.

The files are the source of truth (language-neutral, for consumers in any language); this module
finds them, loads them and compiles a fast validator per schema with ``fastjsonschema``.

>>> load_schema("transactions")["$id"]
'urn:outage-radar:schema:transactions:v1'
>>> check = validator("feedback")
>>> check({"event_id": "f-1", "event_time": 1700000000000, "dedup_key": "k", "verdict": "expected"})
{'event_id': 'f-1', 'event_time': 1700000000000, 'dedup_key': 'k', 'verdict': 'expected'}
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastjsonschema

from streams.errors import ConfigError
from streams.settings import INPUT_TOPICS

__all__ = [
    "INPUT_SCHEMAS",
    "OUTPUT_SCHEMAS",
    "SCHEMA_NAMES",
    "SCHEMA_VERSION",
    "load_schema",
    "schema_dir",
    "schema_path",
    "validator",
]

#: Version suffix of the schema files this code speaks (``<name>.v1.json``).
SCHEMA_VERSION = "v1"
#: Schemas of the input topics, in the order of ``DESIGN.md`` (one per input topic).
INPUT_SCHEMAS: tuple[str, ...] = INPUT_TOPICS
#: Schemas of what the worker writes.
OUTPUT_SCHEMAS: tuple[str, ...] = ("incident", "deadletter")
SCHEMA_NAMES: tuple[str, ...] = INPUT_SCHEMAS + OUTPUT_SCHEMAS

#: ``schemas/`` next to the ``streams`` package: a source checkout or an editable install.
_REPO_DIR = Path(__file__).resolve().parents[1] / "schemas"
#: A file every schema directory holds; a directory without it is not ours.
_MARKER = f"transactions.{SCHEMA_VERSION}.json"


def _installed_dir() -> Path:
    """Where a regular (wheel) install puts the schema files (``data-files``)."""
    return Path(sys.prefix) / "share" / "outage-radar" / "schemas"


def schema_dir(override: str | Path | None = None) -> Path:
    """The directory holding the ``*.v1.json`` schema files.

    ``override`` (e.g. from a setting or a command option) wins and must exist. Otherwise the
    first of these that holds the schemas: ``schemas/`` of the source checkout, then
    ``<sys.prefix>/share/outage-radar/schemas`` of an installed package.

    Raises ``ConfigError`` naming the paths tried and the fix when there is none.
    """
    if override is not None:
        path = Path(override).expanduser()
        if not path.is_dir():
            raise ConfigError(
                f"schema directory {str(path)!r} does not exist or is not a directory; "
                f"give the directory that holds {_MARKER} and the other schema files"
            )
        return path
    tried = [_REPO_DIR, _installed_dir()]
    for path in tried:
        if (path / _MARKER).is_file():
            return path
    raise ConfigError(
        "cannot find the JSON schema files: tried "
        + ", ".join(repr(str(p)) for p in tried)
        + f" (none holds {_MARKER}); run from a source checkout, or install the package "
        "(pip install .) so its schemas land in <prefix>/share/outage-radar/schemas, "
        "or pass the schema directory explicitly"
    )


def schema_path(name: str, directory: str | Path | None = None) -> Path:
    """Path of the schema file of ``name`` (e.g. ``"transactions"`` -> ``transactions.v1.json``)."""
    if name not in SCHEMA_NAMES:
        raise ValueError(f"unknown schema {name!r}; known schemas are: {', '.join(SCHEMA_NAMES)}")
    return schema_dir(directory) / f"{name}.{SCHEMA_VERSION}.json"


@functools.cache
def load_schema(name: str, directory: str | Path | None = None) -> dict[str, Any]:
    """The parsed schema ``name`` (``"transactions"``, ..., ``"incident"``, ``"deadletter"``).

    Cached: every call returns the same dict, so treat it as read-only. Raises ``ValueError``
    for an unknown name and ``ConfigError`` when the file is missing or is not valid JSON.
    """
    path = schema_path(name, directory)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read schema file {str(path)!r}: {exc.strerror or exc}; "
            "the schema directory is incomplete, reinstall the package or restore the file"
        ) from exc
    try:
        schema = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"schema file {str(path)!r} is not valid JSON: {exc}") from exc
    if not isinstance(schema, dict):
        raise ConfigError(f"schema file {str(path)!r} does not hold a JSON object")
    return schema


@functools.cache
def validator(name: str, directory: str | Path | None = None) -> Callable[[Any], Any]:
    """The compiled validator of schema ``name``; cached, so compiling happens once.

    Calling it returns the data unchanged when valid and raises
    ``fastjsonschema.JsonSchemaValueException`` (with ``name``, ``rule``, ``value``) when not.
    Formats (``date-time``, ``uri-reference``) are enforced.
    """
    schema = load_schema(name, directory)
    try:
        compiled: Callable[[Any], Any] = fastjsonschema.compile(schema, use_default=False)
    except fastjsonschema.JsonSchemaDefinitionException as exc:
        raise ConfigError(
            f"schema file {str(schema_path(name, directory))!r} is not a usable schema: {exc}"
        ) from exc
    return compiled
