"""Traffic files: JSON Lines of Kafka records, written by ``simulate`` and ``record``, read by
``replay`` and ``evaluate``.

One record per line::

    {"topic": "transactions", "key": "wallet|ACB|north|app", "timestamp": 1760860800000,
     "value": {...}}

``timestamp`` is the event time in epoch milliseconds. ``value`` is the record's JSON value.
A record whose bytes are not a JSON value (kept so that bad records can be recorded and replayed
too) has ``"value_b64"`` instead; a key that is not UTF-8 has ``"key_b64"`` instead of ``"key"``;
``"key": null`` is a record without key. Files are ``.jsonl`` or ``.jsonl.gz``; gzip output is
written with a zero mtime so the same records give the same bytes.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from streams.errors import RadarError

SUFFIXES = (".jsonl", ".jsonl.gz")


class InvalidLine(RadarError):
    """A traffic line that cannot be read; the message names the file, line and problem."""


@dataclass(frozen=True, slots=True)
class TrafficRecord:
    topic: str
    key: bytes | None
    timestamp: int
    value: bytes


def encode_value(value: Any) -> bytes:
    """Compact JSON bytes of a value, as a producer would send them."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def to_line(record: TrafficRecord) -> str:
    """The JSON line for ``record`` (no newline). Inverse of :func:`from_line`.

    >>> to_line(TrafficRecord("t", b"k", 5, b'{"a":1}'))
    '{"topic":"t","key":"k","timestamp":5,"value":{"a":1}}'
    """
    out: dict[str, Any] = {"topic": record.topic}
    if record.key is None:
        out["key"] = None
    else:
        try:
            out["key"] = record.key.decode()
        except UnicodeDecodeError:
            out["key_b64"] = base64.b64encode(record.key).decode("ascii")
    out["timestamp"] = record.timestamp
    try:
        value = json.loads(record.value)
        if encode_value(value) != record.value:
            raise ValueError("not canonical")  # keep the exact bytes
        out["value"] = value
    except (ValueError, UnicodeDecodeError):
        out["value_b64"] = base64.b64encode(record.value).decode("ascii")
    return json.dumps(out, separators=(",", ":"), ensure_ascii=False)


def line_for(topic: str, key: str | None, timestamp: int, value: Any) -> str:
    """The JSON line for a JSON value (the simulator's fast path)."""
    return json.dumps(
        {"topic": topic, "key": key, "timestamp": timestamp, "value": value},
        separators=(",", ":"),
        ensure_ascii=False,
    )


def from_line(line: str, where: str = "line") -> TrafficRecord:
    """Parse one traffic line; raises :class:`InvalidLine` saying what is wrong and where."""
    try:
        obj = json.loads(line)
    except ValueError as exc:
        raise InvalidLine(f"{where}: not JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise InvalidLine(f"{where}: a traffic line is a JSON object, got {type(obj).__name__}")
    topic = obj.get("topic")
    if not isinstance(topic, str) or not topic:
        raise InvalidLine(f"{where}: 'topic' must be a non-empty string, got {topic!r:.60}")
    ts = obj.get("timestamp")
    if not isinstance(ts, int) or isinstance(ts, bool) or ts < 0:
        raise InvalidLine(
            f"{where}: 'timestamp' must be epoch milliseconds (a non-negative integer), "
            f"got {ts!r:.60}"
        )
    key: bytes | None
    if "key_b64" in obj:
        key = _b64(obj["key_b64"], where, "key_b64")
    else:
        raw_key = obj.get("key")
        if raw_key is not None and not isinstance(raw_key, str):
            raise InvalidLine(f"{where}: 'key' must be a string or null, got {raw_key!r:.60}")
        key = None if raw_key is None else raw_key.encode()
    if "value_b64" in obj:
        value = _b64(obj["value_b64"], where, "value_b64")
    elif "value" in obj:
        value = encode_value(obj["value"])
    else:
        raise InvalidLine(f"{where}: no 'value' (or 'value_b64') in the line")
    return TrafficRecord(topic, key, ts, value)


def _b64(text: Any, where: str, field: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (ValueError, TypeError):
        raise InvalidLine(f"{where}: '{field}' is not base64, got {text!r:.60}") from None


def traffic_files(source: str | Path) -> list[Path]:
    """The traffic files of a file or directory (sorted); an error says what was expected."""
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.name.endswith(SUFFIXES))
        if not files:
            raise RadarError(
                f"{path} holds no traffic files (*.jsonl or *.jsonl.gz); "
                "make some with `python -m streams simulate --out DIR`"
            )
        return files
    if path.is_file():
        if not path.name.endswith(SUFFIXES):
            raise RadarError(f"{path} is not a traffic file: expected *.jsonl or *.jsonl.gz")
        return [path]
    raise RadarError(f"{path} does not exist; give a traffic file or a directory of them")


def open_text(path: Path) -> IO[str]:
    if path.name.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="strict")
    return path.open(encoding="utf-8", errors="strict")


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of a traffic file, blank lines skipped."""
    with open_text(path) as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                yield number, line


class TrafficWriter:
    """Writes one file per topic into a directory, streaming (nothing held in memory).

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     with TrafficWriter(d, compress=False) as w:
    ...         w.write_line("t", line_for("t", "k", 1, {"a": 1}))
    ...     print(sorted(p.name for p in Path(d).iterdir()))
    ['t.jsonl']
    """

    def __init__(self, directory: str | Path, compress: bool = False) -> None:
        self.directory = Path(directory)
        self.compress = compress
        self._files: dict[str, IO[str]] = {}
        self.counts: dict[str, int] = {}

    def path_for(self, topic: str) -> Path:
        return self.directory / (topic + (".jsonl.gz" if self.compress else ".jsonl"))

    def _file(self, topic: str) -> IO[str]:
        f = self._files.get(topic)
        if f is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.path_for(topic)
            if self.compress:
                raw = gzip.GzipFile(
                    filename="", mode="wb", fileobj=path.open("wb"), mtime=0, compresslevel=6
                )
                f = io.TextIOWrapper(raw, encoding="utf-8", newline="\n")
            else:
                f = path.open("w", encoding="utf-8", newline="\n")
            self._files[topic] = f
            self.counts[topic] = 0
        return f

    def write_line(self, topic: str, line: str) -> None:
        self._file(topic).write(line + "\n")
        self.counts[topic] += 1

    def write(self, record: TrafficRecord) -> None:
        self.write_line(record.topic, to_line(record))

    def close(self) -> None:
        for f in self._files.values():
            # GzipFile does not close the file object it was given; take it before closing.
            inner = getattr(getattr(f, "buffer", None), "fileobj", None)
            f.close()
            if inner is not None:
                inner.close()
        self._files.clear()

    def __enter__(self) -> TrafficWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
