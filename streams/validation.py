"""Raw Kafka value bytes -> a validated record dict, or ``InvalidRecord`` saying exactly why.

The hot path is one ``bytes.decode``, one JSON parse and one call of the compiled validator of
the topic's schema (:func:`streams.schemas.validator`). Everything else happens only for bad
records: the error is translated into a sentence that names the topic kind, the field, the rule,
the offending value (truncated) and what is expected, ready for the dead-letter topic.

>>> decode("feedback", b'{"event_id": "f1", "event_time": 1700000000000, "dedup_key": "k",'
...        b' "verdict": "confirmed"}', max_bytes=1024)["verdict"]
'confirmed'
>>> try:
...     decode("feedback", b'{"event_id": "f1", "event_time": 1700000000000, "dedup_key": "k",'
...            b' "verdict": "ok"}', max_bytes=1024)
... except InvalidRecord as exc:
...     print(exc.kind, "|", exc.reason)  # doctest: +NORMALIZE_WHITESPACE
schema | feedback record: field 'verdict' must be one of
['confirmed', 'false_alarm', 'expected', 'new_normal'], got 'ok'
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any, NoReturn

from fastjsonschema import JsonSchemaValueException

from streams.errors import InvalidRecord
from streams.schemas import load_schema, validator

__all__ = ["ERROR_KINDS", "decode"]

#: Every ``InvalidRecord.kind`` this module raises.
ERROR_KINDS: tuple[str, ...] = (
    "too_large",
    "empty",
    "not_utf8",
    "not_json",
    "not_object",
    "schema",
)

#: How many characters of an offending value a reason quotes.
PREVIEW_CHARS = 80


def _reject_constant(name: str) -> NoReturn:
    # Python's json accepts NaN / Infinity / -Infinity, which are not JSON and would slip through
    # minimum / maximum checks (NaN compares false with everything).
    raise ValueError(f"{name} is not valid JSON (JSON has no NaN or Infinity)")


_JSON = json.JSONDecoder(parse_constant=_reject_constant)

#: kind -> (compiled validator, top-level integer fields). Filled on first use of a kind.
_CHECKS: dict[str, tuple[Callable[[Any], Any], tuple[str, ...]]] = {}


def _check_for(kind: str) -> tuple[Callable[[Any], Any], tuple[str, ...]]:
    found = _CHECKS.get(kind)
    if found is None:
        properties = load_schema(kind).get("properties", {})
        integers = tuple(
            name
            for name, prop in properties.items()
            if isinstance(prop, dict)
            and (prop.get("type") == "integer" or "integer" in (prop.get("type") or ()))
        )
        found = _CHECKS[kind] = (validator(kind), integers)
    return found


def decode(kind: str, raw: bytes | None, *, max_bytes: int) -> dict[str, Any]:
    """Decode and validate one record value of topic kind ``kind`` (e.g. ``"transactions"``).

    Returns the JSON object as a dict, unknown (producer-added) fields included. Top-level
    integer fields written with a zero fraction (``1700000000000.0``, valid JSON Schema integers)
    are returned as ``int``, so ``event_time`` is always an ``int``.

    Raises ``InvalidRecord`` whose ``kind`` is one of :data:`ERROR_KINDS` and whose ``reason``
    starts with ``"<kind> record: "``. An unknown ``kind`` is a programming error
    (``ValueError``), not an invalid record.
    """
    check, integers = _CHECKS.get(kind) or _check_for(kind)
    if not raw:
        what = "null (no value)" if raw is None else "empty (0 bytes)"
        raise InvalidRecord(
            "empty", f"{kind} record: the value is {what}; a JSON object was expected"
        )
    if len(raw) > max_bytes:
        raise InvalidRecord(
            "too_large",
            f"{kind} record: {len(raw)} bytes is larger than the limit of {max_bytes} bytes "
            "(setting RADAR_MAX_RECORD_BYTES)",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        _not_utf8(kind, raw, exc)
    try:
        data = _JSON.decode(text)
    except json.JSONDecodeError as exc:
        if text.startswith("\ufeff"):
            _not_json(
                kind, text, "starts with a byte order mark (BOM); send UTF-8 without one", 0, exc
            )
        _not_json(kind, text, f"{exc.msg} at line {exc.lineno} column {exc.colno}", exc.pos, exc)
    except RecursionError as exc:
        _not_json(kind, text, "nested too deeply", None, exc)
    except ValueError as exc:  # NaN / Infinity, or an integer with too many digits
        _not_json(kind, text, str(exc), None, exc)
    if type(data) is not dict:
        raise InvalidRecord(
            "not_object",
            f"{kind} record: expected a JSON object {{...}}, got {_json_type(data)} "
            f"{_preview(data)}",
        )
    try:
        check(data)
    except JsonSchemaValueException as exc:
        raise InvalidRecord("schema", f"{kind} record: {_explain(exc)}") from exc
    for name in integers:
        value = data.get(name)
        if value.__class__ is float:
            data[name] = int(value)
    return data


def _not_utf8(kind: str, raw: bytes, exc: UnicodeDecodeError) -> NoReturn:
    context = raw[max(0, exc.start - 20) : exc.start + 20]
    raise InvalidRecord(
        "not_utf8",
        f"{kind} record: not valid UTF-8: byte 0x{raw[exc.start]:02x} at offset {exc.start} "
        f"({exc.reason}), near {context!r}",
    ) from exc


def _not_json(kind: str, text: str, message: str, pos: int | None, exc: Exception) -> NoReturn:
    if pos is None:
        near = _cut(text)
    else:
        start = max(0, pos - 30)
        near = (
            ("…" if start else "") + text[start : pos + 30] + ("…" if pos + 30 < len(text) else "")
        )
    raise InvalidRecord(
        "not_json", f"{kind} record: not valid JSON: {message}, near {near!r}"
    ) from exc


_TYPE_WORDS = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "object": "an object",
    "array": "an array",
    "boolean": "a boolean",
    "null": "null",
}


def _explain(exc: JsonSchemaValueException) -> str:
    """Turn a fastjsonschema error into: which field, which rule, the value, what is expected."""
    name = exc.name or "data"
    field = name[4:].lstrip(".") if name.startswith("data") else name
    where = f"field {field!r}" if field else "the record"
    rule = exc.rule or ""
    expected = exc.rule_definition
    value = exc.value
    got = f"got {_preview(value)}"
    if rule == "required" and isinstance(value, dict) and isinstance(expected, list):
        missing = [p for p in expected if p not in value]
        plural = "s" if len(missing) > 1 else ""
        listed = ", ".join(repr(p) for p in missing)
        owner = "" if not field else f" in {where}"
        return f"missing required field{plural} {listed}{owner}"
    if rule == "type":
        types = expected if isinstance(expected, list) else [expected]
        words = " or ".join(_TYPE_WORDS.get(str(t), str(t)) for t in types)
        return f"{where} must be {words}, got {_json_type(value)} {_preview(value)}"
    if rule == "enum":
        return f"{where} must be one of {expected!r}, {got}"
    if rule == "const":
        return f"{where} must be {expected!r}, {got}"
    if rule in ("minLength", "maxLength") and isinstance(value, str):
        bound = "at least" if rule == "minLength" else "at most"
        return (
            f"{where} must be {bound} {expected} characters long, "
            f"got {len(value)} characters: {_preview(value)}"
        )
    if rule in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        op = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}
        return f"{where} must be {op[rule]} {_number(expected)}, {got}"
    if rule == "pattern":
        return f"{where} must match the pattern {expected!r}, {got}"
    if rule == "format":
        return f"{where} must be a valid {expected} string, {got}"
    if rule == "additionalProperties" and isinstance(value, dict):
        known = (exc.definition or {}).get("properties", {})
        extra = sorted(str(k) for k in value if k not in known)
        return f"{where} has unknown field(s) {extra}; allowed fields are {sorted(known)}"
    if rule in ("maxProperties", "minProperties") and isinstance(value, dict):
        bound = "at most" if rule == "maxProperties" else "at least"
        return f"{where} must have {bound} {expected} entries, got {len(value)}: {_preview(value)}"
    if rule == "propertyNames" and isinstance(value, dict) and isinstance(expected, dict):
        low, high = expected.get("minLength", 0), expected.get("maxLength", float("inf"))
        bad = [str(k) for k in value if not low <= len(str(k)) <= high]
        key = _preview(bad[0]) if bad else "a key"
        return f"{where}: key {key} must be {low} to {_number(high)} characters long, {got}"
    message = exc.message.replace(name, where, 1) if exc.message else f"{where} is invalid"
    return f"{message} ({rule}), {got}"


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return str(value)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _cut(text: str) -> str:
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


def _preview(value: Any) -> str:
    """The value as it would read in the record, truncated to about :data:`PREVIEW_CHARS`."""
    if isinstance(value, str):
        if len(value) <= PREVIEW_CHARS:
            return repr(value)
        return repr(value[: PREVIEW_CHARS - 1]) + "…"
    if isinstance(value, list) and len(value) > PREVIEW_CHARS:
        value = value[:PREVIEW_CHARS]  # do not serialise a huge container just to cut it
    elif isinstance(value, dict) and len(value) > PREVIEW_CHARS:
        value = dict(itertools.islice(value.items(), PREVIEW_CHARS))
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=True)
    except (TypeError, ValueError, RecursionError):
        text = f"<{type(value).__name__}>"
    return _cut(text)
