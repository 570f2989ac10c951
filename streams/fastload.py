"""The fast path of ``evaluate``: traffic files decoded as typed columns, windows counted with
numpy, the same windows and incidents as the per-record path of :mod:`streams.evaluate`.

:func:`run_fast` takes and returns what :func:`streams.evaluate.run` does. How it stays exact:

* **Decoding**: each line of a windowed family's file is decoded by ``msgspec`` into a struct
  generated from the topic's JSON Schema (:func:`value_struct`): types, ``required``,
  ``enum``, ``minLength``/``maxLength``, ``minimum``/``maximum`` and ``pattern`` become the
  struct's types and constraints, so a line that decodes is valid by the schema. A schema
  using any other keyword is not translated, and its topic stays on the per-record path.
  A line is on the fast path only if it decodes (msgspec rejects text that is not UTF-8) and
  holds no backslash (no escapes); every other line (not JSON, blank, not UTF-8,
  ``key_b64``/``value_b64``, a wrong type, an unknown enum, a float where an integer is
  expected, ...) is read by :func:`streams.traffic.from_line` and validated with the topic's
  compiled validator, one by one, exactly as before: counted, reported and placed in the
  stream as before. ``maintenance`` and ``feedback`` records (a handful) always take the
  per-record path. A file is read a piece (:data:`CHUNK_BYTES`) at a time, and a piece's
  lines and decoded rows are dropped once it is counted: a piece that holds no backslash and
  is all UTF-8 is decoded in one go, any other line by line.
* **Order**: the per-record path merges files with :func:`heapq.merge` by timestamp. For
  any inputs (sorted or not) that order is the stable sort by (running maximum of the
  timestamp within the file, file, line), computed with ``numpy.lexsort``.
* **Windows**: lateness, counts per cell and window, first-touch order of cells, the point
  where each window closes and the balance invariant are computed over whole columns by
  :mod:`detectors.columnar`; the engine and the incident manager then get the very same
  :class:`~detectors.engine.EngineWindow` objects, in the same order, with maintenance
  declarations interleaved where the per-record path would have applied them.
* **Errors**: bad lines and invalid records go to the :class:`~streams.replay.ErrorLog` in the
  order the per-record path reports them (a file's bad lines are read when the merge pulls
  the record after them).
* **Processes** (``jobs``): from :data:`PARALLEL_MIN_BYTES` of input, the files are shared by
  their estimated records (:func:`records_estimate`) between this process and forked ones.
  Each file is decoded and counted with tables of its own (cells, account and code ids), then
  adopted in file order: every code is the one a single table filled file after file gives,
  so nothing downstream can tell. The gain is
  bounded by the largest file and by two decoders sharing the memory bus: measured, the
  reading took 1.2-1.3 s instead of 1.5-1.6 s for the 400k-record bench set (3 runs each),
  12.9-16.4 s instead of 17.6 s for 4.67 million records (2 runs and 1, a noisy VM).

Balances keep per-account state (the last known balance, forgetting the least recent account
beyond a capacity): vectorised while the run has fewer accounts than the capacity (nothing
forgotten), otherwise replayed record by record through the real extractor. OTP codes'
outcomes at their deadline (:class:`~detectors.signals.OtpDeadlines`) are always replayed
through the pipeline's own instance, in merged order (~1.5 µs a record: 1.1-1.2 s for 713k
OTP records); an outcome counts in its code's cell, in the window of the record that decided
it.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
import numpy as np

from detectors import columnar
from detectors.engine import DetectionEngine, EngineWindow
from detectors.incidents import IncidentManager
from detectors.pipeline import OfflinePipeline, end_history
from detectors.signals import (
    _BAL,
    _CMP,
    _LOGIN,
    _OTP,
    _TXN,
    FAMILIES,
    MISSING,
    OTP_STAGES,
    SEP,
    AccountBalances,
    OtpDeadlines,
)
from streams.errors import RadarError
from streams.replay import ErrorLog, file_records, open_binary
from streams.schemas import load_schema, validator
from streams.settings import INPUT_TOPICS
from streams.traffic import InvalidLine, TrafficRecord, from_line, traffic_files

if TYPE_CHECKING:
    from streams.evaluate import History, RunStats
    from streams.progress import Progress
    from streams.report import SeriesRecorder

__all__ = [
    "default_jobs",
    "load_counted",
    "records_estimate",
    "run_fast",
    "share_out",
    "value_struct",
]

#: Families counted into windows (the others, maintenance and feedback, are few).
WINDOWED: tuple[str, ...] = tuple(FAMILIES)

# --------------------------------------------------------------------------- schema -> struct


class Untranslatable(Exception):
    """A schema construct the struct translation does not cover (the topic stays slow)."""


_PROPERTY_KEYS = {"type", "enum", "minLength", "maxLength", "minimum", "maximum", "pattern"}
_IGNORED_KEYS = {"description", "examples", "title", "$comment", "default"}


def _property_type(name: str, prop: Mapping[str, Any]) -> Any:
    unknown = set(prop) - _PROPERTY_KEYS - _IGNORED_KEYS
    if unknown:
        raise Untranslatable(f"property {name!r}: {sorted(unknown)}")
    types = prop.get("type")
    if isinstance(types, str):
        types = [types]
    if not isinstance(types, list) or not types:
        raise Untranslatable(f"property {name!r}: no type")
    out: list[Any] = []
    for kind in types:
        if kind == "null":
            out.append(None)
        elif kind == "string":
            meta: dict[str, Any] = {}
            if "minLength" in prop:
                meta["min_length"] = int(prop["minLength"])
            if "maxLength" in prop:
                meta["max_length"] = int(prop["maxLength"])
            if "pattern" in prop:
                meta["pattern"] = str(prop["pattern"])
            if "enum" in prop:
                values = prop["enum"]
                if not all(isinstance(v, str) for v in values):
                    raise Untranslatable(f"property {name!r}: non-string enum")
                base: Any = Literal[tuple(values)]
            else:
                base = str
            out.append(Annotated[base, msgspec.Meta(**meta)] if meta else base)
        elif kind in ("integer", "number"):
            if "enum" in prop or "pattern" in prop or "minLength" in prop:
                raise Untranslatable(f"property {name!r}: constraint on a number")
            bounds: dict[str, Any] = {}
            if "minimum" in prop:
                bounds["ge"] = prop["minimum"]
            if "maximum" in prop:
                bounds["le"] = prop["maximum"]
            # Integers only as JSON integers (a JSON Schema integer may also be written 1.0:
            # such a record takes the per-record path, where it is valid too).
            num: Any = int if kind == "integer" else float
            out.append(Annotated[num, msgspec.Meta(**bounds)] if bounds else num)
        else:
            raise Untranslatable(f"property {name!r}: type {kind!r}")
    if "enum" in prop and types != ["string"]:
        raise Untranslatable(f"property {name!r}: enum with types {types}")
    union: Any = out[0]
    for t in out[1:]:
        union = union | t
    return union


def value_struct(kind: str) -> type[msgspec.Struct]:
    """A msgspec struct accepting exactly what the schema of ``kind`` accepts (or less: JSON
    integers written with a fraction, strings with escapes are left to the per-record path).

    Raises :class:`Untranslatable` for a schema using a keyword it does not translate.

    >>> Txn = value_struct("transactions")
    >>> v = msgspec.json.decode(b'{"event_id":"e","event_time":1760000000000,"service":"s",'
    ...     b'"type":"payment","status":"failed","region":"r","channel":"app"}', type=Txn)
    >>> v.status, v.partner_bank is msgspec.UNSET
    ('failed', True)
    >>> msgspec.json.decode(b'{"event_id":"e","event_time":1760000000000,"service":"s",'
    ...     b'"type":"payment","status":"lost","region":"r","channel":"app"}', type=Txn)
    Traceback (most recent call last):
    ...
    msgspec.ValidationError: Invalid enum value 'lost' - at `$.status`
    """
    schema = load_schema(kind)
    top = set(schema) - {"type", "required", "properties", "additionalProperties"}
    top -= _IGNORED_KEYS | {"$schema", "$id"}
    if top or schema.get("type") != "object":
        raise Untranslatable(f"{kind}: top-level {sorted(top)}")
    extra = schema.get("additionalProperties", True)
    if extra not in (True, False):
        raise Untranslatable(f"{kind}: additionalProperties {extra!r}")
    required = list(schema.get("required", []))
    properties = schema.get("properties", {})
    if any(name not in properties for name in required):
        raise Untranslatable(f"{kind}: a required field without a property")
    fields: list[Any] = []
    for name in sorted(properties, key=lambda n: n not in required):
        typ = _property_type(name, properties[name])
        if name in required:
            fields.append((name, typ))
        else:
            fields.append((name, typ | msgspec.UnsetType, msgspec.UNSET))
    return msgspec.defstruct(
        f"{kind.title()}Value", fields, forbid_unknown_fields=not extra, gc=False
    )


def _line_struct(kind: str) -> type[msgspec.Struct]:
    """A traffic line of ``kind`` as :func:`streams.traffic.from_line` reads it, narrowed to
    the plain form: ``topic`` is ``kind``, ``key`` a string or null, ``timestamp`` a
    non-negative integer, ``value`` a valid record; nothing else (no ``*_b64``)."""
    return msgspec.defstruct(
        f"{kind.title()}Line",
        [
            ("topic", Literal[kind]),
            ("timestamp", Annotated[int, msgspec.Meta(ge=0)]),
            ("value", value_struct(kind)),
            ("key", str | None, None),
        ],
        forbid_unknown_fields=True,
        gc=False,
    )


_DECODERS: dict[str, Callable[[bytes], Any] | None] = {}


def _decoder(kind: str) -> Callable[[bytes], Any] | None:
    if kind not in _DECODERS:
        try:
            _DECODERS[kind] = msgspec.json.Decoder(_line_struct(kind)).decode
        except Untranslatable:
            _DECODERS[kind] = None
    return _DECODERS[kind]


# ------------------------------------------------------------------------------ file loading


@dataclass
class FileBatch:
    """One traffic file: its good records (what ``file_records`` yields), as fast rows
    (decoded structs) and slow rows (TrafficRecords), and its bad lines.

    ``timestamps`` is per good record in file order; ``fast``/``fast_pos`` the decoded
    structs and their positions; ``slow`` the (position, record) of the others; ``errors``
    (records before it, kind, text) in file order.
    """

    path: Path
    family: str
    timestamps: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    fast: list[Any] = field(default_factory=list)
    fast_pos: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    slow: list[tuple[int, TrafficRecord]] = field(default_factory=list)
    errors: list[tuple[int, str, str]] = field(default_factory=list)
    #: The fast rows as counts (run_fast counts each file as it is read, then drops its rows).
    counted: _Counted | None = None


class _PositionLog(ErrorLog):
    """Records each error with the number of records yielded before it."""

    def __init__(self) -> None:
        super().__init__()
        self.yielded = 0
        self.events: list[tuple[int, str, str]] = []

    def add(self, kind: str, text: str) -> None:
        self.events.append((self.yielded, kind, text))


def _exact_file(path: Path, family: str) -> FileBatch:
    """Every record of the file on the per-record path (``file_records`` itself)."""
    log = _PositionLog()
    slow: list[tuple[int, TrafficRecord]] = []
    for record in file_records(path, log):
        slow.append((log.yielded, record))
        log.yielded += 1
    ts = np.array([r.timestamp for _, r in slow], dtype=np.int64)
    return FileBatch(path, family, ts, slow=slow, errors=log.events)


#: Lines decoded between two progress notes while a file is read.
PROGRESS_LINES = 50_000

#: Bytes (uncompressed) of a file decoded at a time. A piece's lines and decoded rows are
#: dropped once it is counted, so what a file's text and rows take while it is read is bounded
#: by this, not by the file (its columns stay: with the account and code ids, 0.50 GB for a
#: simulated day's 2.6 million records once read, ~190 bytes a record). Measured on a simulated
#: calm week (21.7 million records, 6.4 GB, its largest file 2.3 GB): ``evaluate``'s peak
#: resident memory 8.4 GB, against 10.9 GB when each file was read whole (7.3 GB once the
#: files' counts were no longer kept twice while joined).
CHUNK_BYTES = 64 * 1024 * 1024

#: Told how many bytes (as stored, compressed or not) of the file being read are done.
Note = Callable[[int], None]


def _no_note(done: int) -> None:
    """Progress that nobody follows."""


def _pieces(path: Path, size: int | None = None) -> Iterator[tuple[bytes, int]]:
    """The file's bytes (uncompressed) in pieces of ``size`` (default :data:`CHUNK_BYTES`)
    or a little less (more when a line is longer), each ending at the end of a line (the last
    piece at the end of the file), with the stored bytes read so far (of a
    ``.gz``: compressed, read ahead by a buffer, so approximate). Raises what reading raises
    (``OSError``, ``EOFError``, ``zlib.error``).

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     f = Path(d) / "otp.jsonl"
    ...     _ = f.write_bytes(b"ab\\ncd\\nlong line\\nef")
    ...     list(_pieces(f, size=4))
    [(b'ab\\n', 4), (b'cd\\n', 8), (b'long line\\n', 16), (b'ef', 18)]
    """
    with open_binary(path) as f:
        raw = getattr(f, "fileobj", f)  # a GzipFile's compressed stream
        rest = b""
        while block := f.read(size or CHUNK_BYTES):
            block = rest + block
            cut = block.rfind(b"\n") + 1
            rest = block[cut:]
            if cut:
                yield block[:cut], raw.tell()
        if rest:
            yield rest, raw.tell()


def load_file(path: Path, note: Note = _no_note) -> FileBatch:
    """Decode one traffic file (see the module docstring for what is fast and what is not),
    a piece (:data:`CHUNK_BYTES`) at a time; ``note`` follows its progress, in stored bytes
    every :data:`PROGRESS_LINES` lines decoded."""
    return _load(path, note)


def _load(
    path: Path, note: Note = _no_note, count: Callable[[FileBatch], None] | None = None
) -> FileBatch:
    """:func:`load_file`; ``count``, if given, is called with each piece's batch that has
    fast rows, and may replace them with their counts (``counted``) and drop them."""
    family = path.name.split(".", 1)[0]
    decode = _decoder(family) if family in WINDOWED else None
    if decode is None:
        return _exact_file(path, family)
    parts: list[FileBatch] = []
    lines_before = done = 0
    try:
        for data, stored in _pieces(path):

            def tell(i: int, n: int, start: int = done, end: int = stored) -> None:
                note(start + (end - start) * i // n)

            part, lines = _decode_piece(path, family, data, decode, lines_before, tell)
            if count is not None and part.fast:
                count(part)
            parts.append(part)
            lines_before += lines
            done = stored
            note(done)
    except (OSError, EOFError, zlib.error):
        return _exact_file(path, family)  # unreadable: as before, line by line
    return _joined(path, family, parts)


def _decode_piece(
    path: Path,
    family: str,
    data: bytes,
    decode: Callable[[bytes], Any],
    lines_before: int,
    tell: Callable[[int, int], None],
) -> tuple[FileBatch, int]:
    """One piece of a file (whole lines; ``lines_before`` lines of the file before it): its
    batch, positions counted from the piece's start, and its number of lines. ``tell`` is
    told the lines done of all, every :data:`PROGRESS_LINES`."""
    lines = data.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    n = len(lines)
    if b"\\" not in data and _utf8(data):
        try:
            rows: list[Any] = []
            for start in range(0, n, PROGRESS_LINES):
                rows.extend(map(decode, lines[start : start + PROGRESS_LINES]))
                tell(min(n, start + PROGRESS_LINES), n)
        except (msgspec.DecodeError, msgspec.ValidationError):
            pass
        else:
            ts = np.fromiter(map(attrgetter("timestamp"), rows), dtype=np.int64, count=len(rows))
            return FileBatch(path, family, ts, rows, np.arange(len(rows), dtype=np.int64)), n
    part = _mixed_piece(path, family, data, lines, decode, lambda i: tell(i, n), lines_before)
    return part, n


def _utf8(data: bytes) -> bool:
    """Whether ``data`` is UTF-8 (ASCII is; decoding it all to check costs ~10 %)."""
    if data.isascii():
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _joined(path: Path, family: str, parts: list[FileBatch]) -> FileBatch:
    """The pieces of a file as one batch (positions counted from the file's start)."""
    if len(parts) == 1:
        return parts[0]
    batch = FileBatch(path, family)
    offsets = np.cumsum([0, *(len(p.timestamps) for p in parts)]).tolist()
    if parts:
        batch.timestamps = np.concatenate([p.timestamps for p in parts])
        batch.fast_pos = np.concatenate(
            [p.fast_pos + off for p, off in zip(parts, offsets, strict=False)]
        )
    for part, off in zip(parts, offsets, strict=False):
        batch.fast += part.fast
        batch.slow += [(pos + off, record) for pos, record in part.slow]
        batch.errors += [(before + off, kind, text) for before, kind, text in part.errors]
    counted = [p.counted for p in parts if p.counted is not None]
    batch.counted = _join(counted) if counted else None
    return batch


def _mixed_piece(
    path: Path,
    family: str,
    data: bytes,
    lines: list[bytes],
    decode: Callable[[bytes], Any],
    note: Note = _no_note,
    lines_before: int = 0,
) -> FileBatch:
    """A piece line by line: a line is fast if it decodes and holds no backslash; otherwise it is
    read exactly as ``file_records`` reads it (``lines_before`` lines of the file come before
    ``data``). ``note`` is told the lines done every :data:`PROGRESS_LINES`."""
    batch = FileBatch(path, family)
    fast_pos: list[int] = []
    stamps: list[int] = []
    last = len(lines) - 1
    for number, line in enumerate(lines, 1):
        if number % PROGRESS_LINES == 0:
            note(number)
        number += lines_before
        if b"\\" not in line:
            try:
                row = decode(line)
            except (msgspec.DecodeError, msgspec.ValidationError):
                pass
            else:
                fast_pos.append(len(stamps))
                stamps.append(row.timestamp)
                batch.fast.append(row)
                continue
        final = number - lines_before - 1 == last
        raw = line if (final and not data.endswith(b"\n")) else line + b"\n"
        if not raw.strip():
            continue
        where = f"{path}:{number}"
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            batch.errors.append(
                (len(stamps), "not UTF-8", f"{where}: not UTF-8 text (byte {exc.start} of line)")
            )
            continue
        try:
            record = from_line(text, where)
        except InvalidLine as exc:
            batch.errors.append((len(stamps), "bad line", str(exc)))
            continue
        batch.slow.append((len(stamps), record))
        stamps.append(record.timestamp)
    batch.timestamps = np.array(stamps, dtype=np.int64)
    batch.fast_pos = np.array(fast_pos, dtype=np.int64)
    return batch


# ------------------------------------------------------------------------------- the columns

#: The fields of each family's cell key, after the service (as detectors.signals builds it).
_DIMS: dict[str, tuple[str, ...]] = {name: f.dimensions[1:] for name, f in FAMILIES.items()}
#: The field that picks each family's main counter (requests: none, its amounts are counts).
_STATE: dict[str, str | None] = {
    "transactions": "status",
    "logins": "outcome",
    "otp": "stage",
    "balances": "kind",
    "complaints": "category",
    "requests": None,
}
_UNSET = msgspec.UNSET


def _key(*parts: Any) -> str:
    """:func:`detectors.signals._key`, a missing (UNSET) part read as ``None`` (``-``)."""
    return SEP.join(MISSING if p is None or p is _UNSET or p == "" else str(p) for p in parts)


def _present(v: Any) -> bool:
    return v is not None and v is not _UNSET


class _Codes(dict[Any, int]):
    """Values -> dense codes in order of first appearance: ``map(codes.__getitem__, values)``."""

    def __missing__(self, value: Any) -> int:
        code = self[value] = len(self)
        return code


class _Rows:
    """One family's valid records, decoded lines (fast) then dicts (slow), read as columns."""

    def __init__(self, fast: list[Any], slow: list[Mapping[str, Any]]) -> None:
        self.fast = list(map(attrgetter("value"), fast))  # the decoded values
        self.slow = slow
        self.n = len(fast) + len(slow)

    def column(self, name: str) -> list[Any]:
        out = list(map(attrgetter(name), self.fast))
        out += [r.get(name, _UNSET) for r in self.slow]
        return out

    def tuples(self, names: tuple[str, ...]) -> list[Any]:
        """Per record, the tuple of these fields (at least two)."""
        out = list(map(attrgetter(*names), self.fast))
        out += [tuple(r.get(n, _UNSET) for n in names) for r in self.slow]
        return out

    def at(self, rows: Any, name: str) -> list[Any]:
        """Field ``name`` of some records (by index)."""
        fast, slow, nf = self.fast, self.slow, len(self.fast)
        return [getattr(fast[i], name) if i < nf else slow[i - nf].get(name, _UNSET) for i in rows]


class _Cells:
    """Cell keys of every family -> dense codes."""

    def __init__(self) -> None:
        self.code: dict[tuple[str, str], int] = {}
        self.keys: list[str] = []
        self.services: list[str] = []
        self.family: list[int] = []

    def cell(self, family: str, key: str) -> int:
        code = self.code.get((family, key))
        if code is None:
            code = self.code[(family, key)] = len(self.keys)
            self.keys.append(key)
            self.services.append(key.split(SEP, 1)[0])
            self.family.append(list(FAMILIES).index(family))
        return code


Updates = tuple[np.ndarray, np.ndarray, np.ndarray]  # record, counter, amount


def _cat(parts: list[Updates]) -> Updates:
    if not parts:
        z = np.zeros(0, dtype=np.int64)
        return z, z, z
    return (
        np.concatenate([p[0] for p in parts]).astype(np.int64),
        np.concatenate([p[1] for p in parts]).astype(np.int64),
        np.concatenate([p[2] for p in parts]).astype(np.int64),
    )


def _part(where: Any, counter: Any, amount: Any) -> Updates:
    where = np.asarray(where, dtype=np.int64)
    n = len(where)
    return (
        where,
        np.broadcast_to(np.asarray(counter, dtype=np.int64), (n,)),
        np.broadcast_to(np.asarray(amount, dtype=np.int64), (n,)),
    )


@dataclass
class _Counted:
    """One family's records as numbers: event time, cell, and the updates of its extractor
    (balances: all but the zero-read violations, which need the arrival order)."""

    event_time: np.ndarray
    cell: np.ndarray
    updates: Updates
    #: balances only, per record: account code, whether it is a read or a change, whether it
    #: carries a balance, and the balance (0 without)
    account: np.ndarray | None = None
    is_read: np.ndarray | None = None
    is_change: np.ndarray | None = None
    has_balance: np.ndarray | None = None
    balance: np.ndarray | None = None
    #: otp only, per record: the stage (index in OTP_STAGES) and the code (dense id)
    stage: np.ndarray | None = None
    code: np.ndarray | None = None

    @property
    def n(self) -> int:
        return len(self.event_time)


_BALANCE_ARRAYS = ("account", "is_read", "is_change", "has_balance", "balance")
_OTP_ARRAYS = ("stage", "code")


def _join(parts: list[_Counted]) -> _Counted:
    """Records of several parts, one after the other (one part: itself)."""
    if len(parts) == 1:
        return parts[0]
    offsets = np.cumsum([0, *(p.n for p in parts)])
    updates = _cat(
        [
            (p.updates[0] + off, p.updates[1], p.updates[2])
            for p, off in zip(parts, offsets, strict=False)
        ]
    )
    joined = _Counted(
        np.concatenate([p.event_time for p in parts]),
        np.concatenate([p.cell for p in parts]),
        updates,
    )
    for names in (_BALANCE_ARRAYS, _OTP_ARRAYS):
        if getattr(parts[0], names[0]) is not None:
            for name in names:
                setattr(joined, name, np.concatenate([getattr(p, name) for p in parts]))
    return joined


def _count(family: str, rows: _Rows, cells: _Cells, ids: _Codes) -> _Counted:
    """What the extractor of ``family`` yields for every record, as columns."""
    state_field = _STATE[family]
    names = ("service", *_DIMS[family]) + ((state_field,) if state_field else ())
    codes = _Codes()
    n = rows.n
    combo = np.fromiter(map(codes.__getitem__, rows.tuples(names)), dtype=np.int64, count=n)
    k = len(names) - (1 if state_field else 0)
    combo_cell = np.zeros(len(codes), dtype=np.int64)
    state: list[Any] = [None] * len(codes)
    for values, code in codes.items():
        combo_cell[code] = cells.cell(family, _key(*values[:k]))
        if state_field:
            state[code] = values[k]
    cell = combo_cell[combo]
    event_time = np.fromiter(
        map(attrgetter("event_time"), rows.fast), dtype=np.int64, count=len(rows.fast)
    )
    if rows.slow:
        slow_times = np.array([r["event_time"] for r in rows.slow], dtype=np.int64)
        event_time = np.concatenate([event_time, slow_times])
    rec = np.arange(n, dtype=np.int64)
    parts: list[Updates] = []

    def counter_of(table: Mapping[Any, int], default: int | None = None) -> np.ndarray:
        per_combo = [table[s] if default is None else table.get(s, default) for s in state]
        return np.array(per_combo, dtype=np.int64)[combo]

    if family in ("transactions", "otp"):
        table, slow_state, latency_counter = (
            (_TXN, "completed_late", "late_latency_s")
            if family == "transactions"
            else (_OTP, "delivered", "delivery_latency_s")
        )
        counter = counter_of(table)
        parts.append(_part(rec, counter, 1))
        idx = np.flatnonzero(counter == table[slow_state]).tolist()
        latency = rows.at(idx, "latency_ms")
        with_latency = [(i, v) for i, v in zip(idx, latency, strict=True) if _present(v)]
        if with_latency:
            where, amounts = zip(*with_latency, strict=True)
            parts.append(_part(where, table[latency_counter], [int(v // 1000) for v in amounts]))
    elif family == "logins":
        counter = counter_of(_LOGIN)
        parts.append(_part(rec, counter, 1))
        failed = np.flatnonzero(counter == _LOGIN["failure"]).tolist()
        why = [f"fail_{None if r is _UNSET else r}" for r in rows.at(failed, "reason")]
        other = _LOGIN["fail_other"]
        parts.append(_part(failed, [_LOGIN.get(w, other) for w in why], 1))
    elif family == "complaints":
        parts.append(_part(rec, _CMP["total"], 1))
        parts.append(_part(rec, counter_of(_CMP, _CMP["other"]), 1))
    elif family == "requests":
        req = np.array([int(x) for x in rows.column("requests")], dtype=np.int64)
        err = np.minimum(np.array([int(x) for x in rows.column("errors")], dtype=np.int64), req)
        parts.append(_part(rec, 0, req))
        nz = np.flatnonzero(err)
        parts.append(_part(nz, 1, err[nz]))
        down = rows.column("downstream_errors")
        dz = [i for i, d in enumerate(down) if _present(d) and d]
        parts.append(_part(dz, 2, [int(down[i]) for i in dz]))
    elif family == "balances":
        kind = counter_of({"read": 0, "change": 1}, 2)
        counter = np.where(kind == 0, _BAL["reads"], np.where(kind == 1, _BAL["changes"],
                                                                _BAL["links"]))  # fmt: skip
        parts.append(_part(rec, counter, 1))
        removed = [
            i for i in np.flatnonzero(kind == 2).tolist() if state[combo[i]] == "bank_link_removed"
        ]
        by = rows.at(removed, "initiated_by")
        not_user = [i for i, b in zip(removed, by, strict=True) if b != "user"]
        parts.append(_part(not_user, _BAL["link_removed_not_user"], 1))
    else:  # pragma: no cover - FAMILIES and this function change together
        raise ValueError(f"no columnar extractor for family {family!r}")
    counted = _Counted(event_time, cell, _cat(parts))
    if family == "otp":  # for each code's outcome at its deadline (in merged order)
        stage_of = {name: i for i, name in enumerate(OTP_STAGES)}
        counted.stage = np.array([stage_of[s] for s in state], dtype=np.int64)[combo]
        counted.code = np.fromiter(
            map(ids.__getitem__, rows.column("otp_id")), dtype=np.int64, count=n
        )
    if family == "balances":
        counted.account = np.fromiter(
            map(ids.__getitem__, rows.column("account_id")), dtype=np.int64, count=n
        )
        counted.is_read = np.array([s == "read" for s in state], dtype=np.bool_)[combo]
        counted.is_change = np.array([s == "change" for s in state], dtype=np.bool_)[combo]
        balances = np.array(rows.column("balance"), dtype=object)
        counted.has_balance = (balances != _UNSET) & (balances != None)  # noqa: E711 (elementwise)
        counted.balance = np.where(counted.has_balance, balances, 0.0).astype(np.float64)
    return counted


def _balance_violations(counted: _Counted, order: np.ndarray, capacity: int) -> Updates:
    """Zero-read violations (record, counter, amount) of balance records whose arrival order
    is ``order``: vectorised while no account is forgotten (fewer accounts than
    ``capacity``), otherwise by the real extractor, record by record (accounts by code)."""
    assert counted.account is not None and counted.is_read is not None
    assert counted.is_change is not None and counted.has_balance is not None
    assert counted.balance is not None
    zero = _BAL["zero_unexplained"]
    if len(np.unique(counted.account)) <= capacity:
        hit = columnar.zero_reads(
            counted.account[order],
            counted.is_read[order],
            counted.is_change[order],
            counted.has_balance[order],
            counted.balance[order],
        )
        return _part(order[hit], zero, 1)
    state = AccountBalances(capacity)
    where: list[int] = []
    for i in order.tolist():
        kind = "read" if counted.is_read[i] else "change" if counted.is_change[i] else "link"
        record: dict[str, Any] = {"service": "", "kind": kind, "account_id": counted.account[i]}
        if counted.has_balance[i]:
            record["balance"] = float(counted.balance[i])
        for _service, _cell, counter, _amount in state.observe(record):
            if counter == zero:
                where.append(i)
    return _part(where, zero, 1)


def _otp_outcomes(
    counted: _Counted,
    order: np.ndarray,
    deadlines: OtpDeadlines[str, tuple[str, str]],
    ids: _Codes,
    cells: _Cells,
) -> tuple[Updates, np.ndarray]:
    """Each code's outcome at its deadline, from OTP records whose arrival order is
    ``order``: the pipeline's own :class:`~detectors.signals.OtpDeadlines` (the state a warm
    start left in it included), record by record (the updates, and the cell each counts in)."""
    assert counted.stage is not None and counted.code is not None
    step = deadlines.step
    names = list(ids)  # code -> id (codes are dense, in order of first appearance)
    key_of = list(zip(cells.services, cells.keys, strict=True))  # cell -> (service, key)
    otp = WINDOWED.index("otp")
    code_of = {pair: c for c, pair in enumerate(key_of) if cells.family[c] == otp}
    stages = counted.stage.tolist()
    times, codes, where_cell = (
        a.tolist() for a in (counted.event_time, counted.code, counted.cell)
    )
    where: list[int] = []
    counter: list[int] = []
    into: list[int] = []
    in_time, late = _OTP["in_time"], _OTP["not_in_time"]
    for i in order.tolist():
        decided = step(times[i], OTP_STAGES[stages[i]], names[codes[i]], key_of[where_cell[i]])
        for cell, ok in decided:
            where.append(i)
            counter.append(in_time if ok else late)
            into.append(code_of[cell])
    return _part(where, counter, 1), np.array(into, dtype=np.int64)


# ------------------------------------------------------------------- loading in processes


@dataclass
class _Loaded:
    """One file decoded and counted with tables of its own: its cells ``(family, key)`` and
    ids in the order of their codes (first appearance), to be adopted in file order."""

    batch: FileBatch
    cells: list[tuple[str, str]]
    ids: list[Any]


def _load_counted(path: Path, note: Note = _no_note) -> _Loaded:
    """Decode and count one file (its decoded rows are not kept)."""
    cells, ids = _Cells(), _Codes()

    def count(part: FileBatch) -> None:
        part.counted = _count(part.family, _Rows(part.fast, []), cells, ids)
        part.fast = []

    batch = _load(path, note, count)
    names = list(FAMILIES)
    return _Loaded(batch, [(names[f], k) for f, k in zip(cells.family, cells.keys, strict=True)],
                   list(ids))  # fmt: skip


def _adopt(loaded: _Loaded, cells: _Cells, ids: dict[str, _Codes]) -> FileBatch:
    """The batch with its codes in the run's tables (ids: one table per family). Adopted in
    file order, a file's cells and ids get the codes a single table filled file after file
    would have given them; the first file of a family keeps its own ids' codes."""
    counted = loaded.batch.counted
    if counted is not None:
        cell_map = np.array([cells.cell(f, k) for f, k in loaded.cells], dtype=np.int64)
        counted.cell = cell_map[counted.cell]
        table = ids.setdefault(loaded.batch.family, _Codes())
        if not table:  # codes 0..n-1 in order of first appearance: the same in the run's table
            table.update(zip(loaded.ids, range(len(loaded.ids)), strict=True))
            return loaded.batch
        id_map = np.array([table[v] for v in loaded.ids], dtype=np.int64)
        for name in ("account", "code"):
            local = getattr(counted, name)
            if local is not None:
                setattr(counted, name, id_map[local])
    return loaded.batch


def default_jobs() -> int:
    """Processes to read with by default: the cores, at most 4 (a run has one file per topic,
    and the largest file bounds the time)."""
    return max(1, min(os.cpu_count() or 1, 4))


#: Below this many bytes of input, files are read in this process (a second process costs
#: more than it saves).
PARALLEL_MIN_BYTES = 32 * 1024 * 1024


class _Tally:
    """Bytes read so far by each reading process, one slot each, written by its owner only
    (so without a lock); the calling process (slot 0) sums them for its progress report."""

    def __init__(self, processes: int, report: Callable[[int], None] | None) -> None:
        self.slots: Any = [0] * processes
        if processes > 1:  # shared memory, inherited by the forked readers
            import multiprocessing

            self.slots = multiprocessing.get_context("fork").Array("q", processes, lock=False)
        self.report = report

    def set(self, slot: int, done: int) -> None:
        # Never backwards: a file whose fast read failed part-way is read again line by line.
        self.slots[slot] = max(self.slots[slot], done)
        if slot == 0:
            self.poll()

    def poll(self) -> None:
        if self.report is not None:
            self.report(sum(self.slots))


#: The tally of the files being read (set before the reading processes fork: they inherit it).
_TALLY = _Tally(1, None)


def _load_many(paths: list[Path], slot: int = 0) -> list[_Loaded]:
    """Read and count ``paths`` in turn, telling slot ``slot`` of the tally the bytes done."""
    tally = _TALLY
    out: list[_Loaded] = []
    base = 0
    for path in paths:

        def note(done: int, start: int = base) -> None:
            tally.set(slot, start + done)

        out.append(_load_counted(path, note))
        with contextlib.suppress(OSError):  # reported by the read itself
            base += path.stat().st_size
        tally.set(slot, base)
    return out


#: Bytes read from the start of a file to estimate its records (:func:`records_estimate`).
SAMPLE_BYTES = 64 * 1024


def records_estimate(path: Path) -> float:
    """The records in a traffic file, estimated from the mean length of the lines in its first
    :data:`SAMPLE_BYTES` (of a ``.gz``: uncompressed, and its size from the gzip trailer).

    Reading and counting cost per record more than per byte: measured on the bench set,
    1.7-3.0 µs a record but 6.7-10.8 ns a byte across its files (balance reads are short lines
    with the most work). Shared by this estimate rather than by bytes, the bench set's files
    were read by 2 processes in 0.61-0.63 s instead of 0.73-0.79 s (3 runs each, alternated).
    An unreadable file is estimated by its size; reading it later reports the error.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     f = Path(d) / "otp.jsonl"
    ...     _ = f.write_bytes(b"0123456789\\n" * 1000)
    ...     round(records_estimate(f))
    1000
    """
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path) as packed:
                head = packed.read(SAMPLE_BYTES)
            with path.open("rb") as raw:
                raw.seek(-4, os.SEEK_END)
                total = int.from_bytes(raw.read(4), "little")  # the size modulo 2**32
        else:
            with path.open("rb") as raw:
                head = raw.read(SAMPLE_BYTES)
            total = path.stat().st_size
    except (OSError, EOFError, zlib.error):
        try:
            return float(path.stat().st_size)
        except OSError:
            return 0.0
    lines = head.count(b"\n")
    return total * lines / len(head) if lines else 1.0


#: Peak resident memory of the columnar path per input record, in bytes, rounded up from
#: what was measured (``/usr/bin/time``, 2026-12-04): 7.3 GB for a simulated calm week of
#: 21.7 million records at ``--rate 50`` (336 bytes a record), 1.29 GB for one day of 2.6
#: million (440 bytes a record after the 140 MB of the interpreter and its imports).
COLUMN_BYTES_PER_RECORD = 500
#: Memory the process takes before any record is read (the interpreter and its imports), bytes.
BASE_BYTES = 200 * 1024 * 1024


def columns_bytes(files: list[Path]) -> float:
    """The estimated peak memory, in bytes, of reading ``files`` by columns.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     f = Path(d) / "otp.jsonl"
    ...     _ = f.write_bytes(b"0123456789\\n" * 1000)
    ...     round((columns_bytes([f]) - BASE_BYTES) / COLUMN_BYTES_PER_RECORD)
    1000
    """
    return BASE_BYTES + COLUMN_BYTES_PER_RECORD * sum(records_estimate(p) for p in files)


def available_memory() -> float | None:
    """Bytes this process can still take: the kernel's ``MemAvailable``, lowered to what is
    left of a cgroup v2 limit (a container's) when there is one; None where neither can be
    read (not Linux)."""
    found: list[float] = []
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(float(line.split()[1]) * 1024)
    with contextlib.suppress(OSError, ValueError):
        group = Path("/sys/fs/cgroup")
        limit = (group / "memory.max").read_text().strip()
        if limit != "max":
            found.append(float(limit) - float((group / "memory.current").read_text()))
    return min(found) if found else None


def share_out(work: Mapping[Path, float], jobs: int) -> list[list[Path]]:
    """Files shared between ``jobs`` processes by their work, greedily: the largest first,
    each to the least loaded share (share 0 is the calling process's).

    >>> share_out({Path("t"): 121.0, Path("b"): 159.0, Path("o"): 65.0, Path("l"): 53.0}, 2)
    [[PosixPath('b'), PosixPath('l')], [PosixPath('t'), PosixPath('o')]]
    """
    shares: list[list[Path]] = [[] for _ in range(max(1, min(jobs, len(work))))]
    load = [0.0] * len(shares)
    for path in sorted(work, key=lambda p: -work[p]):
        who = load.index(min(load))
        load[who] += work[path]
        shares[who].append(path)
    return shares


def load_counted(
    files: list[Path], jobs: int = 1, report: Callable[[int], None] | None = None
) -> list[_Loaded]:
    """:func:`_load_counted` of every file, in file order: with ``jobs`` > 1 (and input worth
    it), the files shared by their estimated records (:func:`records_estimate`) between this
    process and ``jobs - 1`` forked ones, each reading its share as one task (a task's result
    crosses a pipe once). ``report`` is told the bytes of all files read so far, now and then
    (in this process), and their total at the end."""
    global _TALLY
    sizes = {p: p.stat().st_size for p in files}
    parallel = jobs > 1 and len(files) > 1 and sum(sizes.values()) >= PARALLEL_MIN_BYTES
    import multiprocessing

    if not parallel or "fork" not in multiprocessing.get_all_start_methods():
        _TALLY = _Tally(1, report)
        try:
            return _load_many(files)
        finally:
            _TALLY = _Tally(1, None)
    from concurrent.futures import ProcessPoolExecutor

    shares = share_out({p: records_estimate(p) for p in files}, jobs)
    out: dict[Path, _Loaded] = {}
    context = multiprocessing.get_context("fork")
    _TALLY = _Tally(len(shares), report)
    try:
        with ProcessPoolExecutor(max_workers=len(shares) - 1, mp_context=context) as pool:
            futures = [
                (share, pool.submit(_load_many, share, slot))
                for slot, share in enumerate(shares[1:], 1)
            ]
            out.update(zip(shares[0], _load_many(shares[0]), strict=True))
            for share, future in futures:
                out.update(zip(share, _result(future, _TALLY, share), strict=True))
    finally:
        _TALLY = _Tally(1, None)
    return [out[p] for p in files]


def _result(future: Any, tally: _Tally, share: list[Path]) -> list[_Loaded]:
    """The result of a reading process, reporting the progress of all of them meanwhile."""
    from concurrent.futures.process import BrokenProcessPool

    while True:
        try:
            loaded: list[_Loaded] = future.result(timeout=0.25)
        except TimeoutError:
            tally.poll()
            continue
        except BrokenProcessPool as exc:
            names = ", ".join(p.name for p in share)
            raise RadarError(
                f"the process reading {names} stopped before it finished ({exc}); out of "
                "memory? Run again with --jobs 1 (one reading process) or --mode records "
                "(record by record, in constant memory)"
            ) from exc
        tally.poll()
        return loaded


# ---------------------------------------------------------------------------------- the run


@dataclass
class _Merged:
    """Every good record of every file in the per-record path's merge order."""

    batches: list[FileBatch]
    offsets: list[int]
    rank: np.ndarray  # (offset of file + position) -> index in the merged stream
    timestamps: np.ndarray  # per merged index


def merge_order(batches: list[FileBatch]) -> _Merged:
    """:func:`heapq.merge` by timestamp (ties: earlier file first; each file in its own
    order, sorted or not) as one stable sort by (running max of the file's timestamps, file,
    position).

    >>> a = FileBatch(Path("a"), "x", np.array([5, 1, 7]))
    >>> b = FileBatch(Path("b"), "x", np.array([3, 6]))
    >>> m = merge_order([a, b])
    >>> m.timestamps.tolist()
    [3, 5, 1, 6, 7]
    """
    offsets: list[int] = []
    total = 0
    for b in batches:
        offsets.append(total)
        total += len(b.timestamps)
    if total == 0:
        z = np.zeros(0, dtype=np.int64)
        return _Merged(batches, offsets, z, z)
    ts = np.concatenate([b.timestamps for b in batches]).astype(np.int64)
    run_max = np.concatenate(
        [np.maximum.accumulate(b.timestamps) for b in batches if len(b.timestamps)]
    ).astype(np.int64)
    file_no = np.concatenate(
        [np.full(len(b.timestamps), i, dtype=np.int64) for i, b in enumerate(batches)]
    )
    order = np.lexsort((np.arange(total), file_no, run_max))
    rank = np.empty(total, dtype=np.int64)
    rank[order] = np.arange(total, dtype=np.int64)
    return _Merged(batches, offsets, rank, ts[order])


def run_fast(
    source: Path,
    window_ms: int,
    lateness_ms: int,
    progress: bool = True,
    *,
    warm_start: Path | None = None,
    recorder: SeriesRecorder | None = None,
    on_history: Callable[[History], None] | None = None,
    jobs: int = 1,
) -> tuple[OfflinePipeline, RunStats, ErrorLog]:
    """:func:`streams.evaluate.run`, fast: the same pipeline state, incidents, stats and
    errors. ``stats.seconds`` covers reading, decoding, counting and detection (not the
    warm start, as in ``run``). The warm start's history is read the same way (:func:`_warm`):
    the same learned state as the per-record replay (tested), with the history's columns in
    memory until it is learned."""
    engine = DetectionEngine(window_ms, observer=recorder)
    pipeline = OfflinePipeline(window_ms, lateness_ms, engine=engine)
    t0 = time.perf_counter()
    data = _read(source, jobs, "evaluate" if progress else None)
    if warm_start is not None:
        t_warm = time.perf_counter()
        history = _warm(warm_start, pipeline, source, data.merged.timestamps, jobs, progress)
        if on_history is not None:
            on_history(history)
        t0 += time.perf_counter() - t_warm
    if recorder is not None:
        recorder.follow(pipeline.updates)
    _detect(data, pipeline, "evaluate" if progress else None)
    if recorder is not None:
        recorder.finish()
    data.stats.seconds = time.perf_counter() - t0
    return pipeline, data.stats, data.errors


def _warm(
    history: Path,
    pipeline: OfflinePipeline,
    source: Path,
    input_times: np.ndarray,
    jobs: int,
    progress: bool,
) -> History:
    """:func:`streams.evaluate.warm_from`, fast: the history must end before the input starts
    (record timestamps), else the same :class:`RadarError` with both ranges."""
    from streams.evaluate import _check_learned, overlap_error

    t0 = time.perf_counter()
    data = _read(history, jobs, "warm start" if progress else None)
    times = data.merged.timestamps
    if len(input_times) and len(times) and int(times.max()) >= int(input_times[0]):
        input_first = int(input_times[0])
        at = int(np.argmax(times >= input_first))  # the first history record too late
        valid_before = np.flatnonzero(data.valid[:at])
        first = int(times[valid_before[0]]) if len(valid_before) else int(times[at])
        raise overlap_error(
            history, first, int(times.max()), source, input_first, int(input_times.max())
        )
    engine, manager = pipeline.engine, pipeline.manager
    learned = _learn(data, history, engine, manager, pipeline.lateness_ms, t0, progress)
    _check_learned(history, learned.learned, learned.stats, "--warm-start", "drop --warm-start")
    return learned


def _learn(
    data: _Read,
    history: Path,
    engine: DetectionEngine,
    manager: IncidentManager | None,
    lateness_ms: int,
    t0: float,
    progress: bool,
) -> History:
    """The warm start on read history: a replay pipeline of its own around ``engine``, the
    engine's observer off meanwhile, then :func:`detectors.pipeline.end_history`."""
    from streams.evaluate import History

    replay = OfflinePipeline(engine.window_ms, lateness_ms, engine=engine)
    observer, engine.observer = engine.observer, None
    before = engine.windows_seen
    try:
        first_ms, last_ms = _detect(data, replay, "warm start" if progress else None)
    finally:
        engine.observer = observer
    learned = end_history(replay, before, first_ms, last_ms, manager)
    data.stats.seconds = time.perf_counter() - t0
    return History(history, data.stats, data.errors, learned)


@dataclass
class _Read:
    """Traffic files read: their batches in the run's tables, the merge order, which
    records are valid, the valid records of the per-record path by family (merged index,
    value), the errors and the stats (all but the time)."""

    batches: list[FileBatch]
    merged: _Merged
    cells: _Cells
    ids: dict[str, _Codes]
    valid: np.ndarray
    slow_valid: dict[str, list[tuple[int, dict[str, Any]]]]
    errors: ErrorLog
    stats: RunStats


def _read(source: Path, jobs: int, label: str | None) -> _Read:
    """Read, decode, count and validate the traffic files of ``source`` (see the module
    docstring), the reading shown on stderr as ``label: ...`` (None: not shown)."""
    from fastjsonschema import JsonSchemaValueException

    from streams.evaluate import RunStats

    errors = ErrorLog()
    stats = RunStats()
    files = [p for p in traffic_files(source) if p.name.split(".", 1)[0] in INPUT_TOPICS]
    if not files:
        raise RadarError(f"{source} holds no traffic file of an input topic ({INPUT_TOPICS})")
    cells = _Cells()
    ids: dict[str, _Codes] = {}  # per family: account ids (balances), code ids (otp) -> codes
    reading = _reading_progress(files, label) if label is not None else None
    loaded = load_counted(files, jobs, reading[1] if reading else None)
    if reading is not None:
        reading[0].finish()
    batches = [_adopt(one, cells, ids) for one in loaded]
    merged = merge_order(batches)
    total = len(merged.timestamps)

    # The per-record checks, in merged order, of the lines not decoded as valid.
    checks = {kind: validator(kind) for kind in INPUT_TOPICS}
    valid = np.ones(total, dtype=np.bool_)
    slow = sorted(
        (int(merged.rank[merged.offsets[i] + pos]), record)
        for i, b in enumerate(batches)
        for pos, record in b.slow
    )
    events: list[tuple[tuple[int, int, int], str, str]] = []
    slow_valid: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for g, record in slow:
        kind = record.topic
        try:
            value = json.loads(record.value)
            checks[kind](value)
        except (ValueError, JsonSchemaValueException) as exc:
            valid[g] = False
            events.append(((g, 0, 0), "invalid", f"{kind} record at {record.timestamp}: {exc}"))
            continue
        slow_valid.setdefault(kind, []).append((g, value))
    for i, b in enumerate(batches):
        for seq, (before, kind, text) in enumerate(b.errors):
            if before == 0:
                key = (-1, i, seq)
            else:
                key = (int(merged.rank[merged.offsets[i] + before - 1]), 1, seq)
            events.append((key, kind, text))
    for _at, kind, text in sorted(events, key=lambda e: e[0]):
        errors.add(kind, text)
    stats.invalid = int(total - valid.sum())
    stats.events = int(valid.sum())
    if stats.events:
        good = merged.timestamps[valid]
        stats.first_ms, stats.last_ms = int(good[0]), int(good[-1])

    return _Read(batches, merged, cells, ids, valid, slow_valid, errors, stats)


def _detect(
    data: _Read, pipeline: OfflinePipeline, label: str | None
) -> tuple[int | None, int | None]:
    """Count the valid records of ``data`` into windows and run ``pipeline``'s engine and
    manager on them, as adding them one by one and finishing would; returns the event time
    of the first valid record (in merged order) and the latest one (None without any). The
    windows judged are shown on stderr as ``label: ...`` (None: not shown). The batches'
    counts are taken from them (``counted`` is None after), so that they are not kept twice."""
    from streams.progress import Progress

    batches, merged, cells, ids = data.batches, data.merged, data.cells, data.ids
    slow_valid, total = data.slow_valid, len(data.merged.timestamps)
    window_ms, lateness_ms = pipeline.window_ms, pipeline.lateness_ms
    # Columns of the windowed families, then one table in merged order.
    g_parts, t_parts, c_parts, upd_parts, ucell_parts = [], [], [], [], []
    count = 0
    for family in WINDOWED:
        parts: list[_Counted] = []
        fast_g: list[np.ndarray] = []
        for i, b in enumerate(batches):
            if b.family == family and b.counted is not None:
                parts.append(b.counted)
                fast_g.append(merged.rank[merged.offsets[i] + b.fast_pos])
                b.counted = None  # joined below: not kept twice
        slow_rows = slow_valid.get(family, [])
        if slow_rows:
            table = ids.setdefault(family, _Codes())
            parts.append(_count(family, _Rows([], [s[1] for s in slow_rows]), cells, table))
        if not parts:
            continue
        gidx = np.concatenate([*fast_g, np.array([s[0] for s in slow_rows], dtype=np.int64)])
        counted = _join(parts)
        rec, counter, amount = counted.updates
        cell_of = counted.cell[rec]
        if family == "balances":
            order = np.argsort(gidx, kind="stable")
            capacity = pipeline.extractor.balances.capacity
            violations = _balance_violations(counted, order, capacity)
            rec, counter, amount = _cat([(rec, counter, amount), violations])
            cell_of = np.concatenate([cell_of, counted.cell[violations[0]]])
        elif family == "otp":
            order = np.argsort(gidx, kind="stable")
            deadlines = pipeline.extractor.otp
            codes = ids.setdefault(family, _Codes())
            outcomes, outcome_cells = _otp_outcomes(counted, order, deadlines, codes, cells)
            rec, counter, amount = _cat([(rec, counter, amount), outcomes])
            cell_of = np.concatenate([cell_of, outcome_cells])
        g_parts.append(gidx)
        t_parts.append(counted.event_time)
        c_parts.append(counted.cell)
        upd_parts.append((rec + count, counter, amount))
        ucell_parts.append(cell_of)
        count += len(gidx)
    maintenance = sorted(slow_valid.get("maintenance", []), key=lambda m: m[0])

    if count:
        g_all = np.concatenate(g_parts)
        perm = np.argsort(g_all, kind="stable")
        where = np.empty(count, dtype=np.int64)
        where[perm] = np.arange(count, dtype=np.int64)
        g_all = g_all[perm]
        t_all = np.concatenate(t_parts)[perm]
        c_all = np.concatenate(c_parts)[perm]
        u_rec, u_counter, u_amount = _cat(upd_parts)
        late = columnar.late_mask(t_all, window_ms, lateness_ms)
        width = max(len(f.counters) for f in FAMILIES.values())
        u_cell = np.concatenate(ucell_parts)
        wc = columnar.window_cells(
            t_all, c_all, ~late, where[u_rec], u_counter, u_amount, window_ms, width, u_cell
        )
        starts, first_row = np.unique(wc.window, return_index=True)
        close_at = columnar.close_points(t_all, starts, window_ms, lateness_ms)
        close_g = [int(g_all[c]) if c < count else total for c in close_at.tolist()]
        bar = Progress(label, unit="windows") if label is not None else None
        _process(pipeline, cells, wc, starts, first_row, close_g, maintenance, bar)
        n_late = int(late.sum())
        pipeline.late = n_late
        pipeline.counted = count - n_late
        top = int(t_all.max())
        pipeline.max_event_ms = top
        pipeline.closed_until_ms = top - top % window_ms + window_ms
        fam_of = np.array(cells.family, dtype=np.int64)[c_all]
        for k, windows in enumerate(pipeline.windows.values()):
            windows.closed_until_ms = pipeline.closed_until_ms
            mine = t_all[(fam_of == k) & ~late]
            windows.max_event_ms = int(mine.max()) if len(mine) else None
    else:
        for _g, value in maintenance:
            pipeline.add("maintenance", value)
    # The event times of the valid records, every family's: (merged index, time) of the first
    # one in merged order, and the latest time.
    stamped = [
        (g, value["event_time"])
        for kind, rows in slow_valid.items()
        if kind not in WINDOWED
        for g, value in rows
        if isinstance(value.get("event_time"), int)
    ]
    latest = [t for _g, t in stamped]
    if count:  # g_all is in merged order
        stamped.append((int(g_all[0]), int(t_all[0])))
        latest.append(int(t_all.max()))
    if not stamped:
        return None, None
    return min(stamped)[1], max(latest)


def _reading_progress(files: list[Path], label: str) -> tuple[Progress, Callable[[int], None]]:
    """A progress report of the files' reading, in MB, and what to tell it the bytes read."""
    from streams.progress import Progress

    total = sum(p.stat().st_size for p in files)
    bar = Progress(label, unit="MB read")

    def report(done: int) -> None:
        bar.update(round(done / 1e6), lambda: f"{100 * done / max(total, 1):.0f} % of "
                                              f"{total / 1e6:,.0f} MB")  # fmt: skip

    return bar, report


def _process(
    pipeline: OfflinePipeline,
    cells: _Cells,
    wc: columnar.WindowCells,
    starts: np.ndarray,
    first_row: np.ndarray,
    close_g: list[int],
    maintenance: list[tuple[int, dict[str, Any]]],
    bar: Any,
) -> None:
    """Feed the engine the windows in order, maintenance declared where it arrived."""
    window_ms = pipeline.window_ms
    names = list(FAMILIES)
    widths = [len(FAMILIES[n].counters) for n in names]
    counts = wc.counts.tolist()
    cell_rows = wc.cell.tolist()
    keys, services, fam_of = cells.keys, cells.services, cells.family
    bounds = [*first_row.tolist(), len(cell_rows)]
    m = 0
    for j, start in enumerate(starts.tolist()):
        while m < len(maintenance) and maintenance[m][0] < close_g[j]:
            pipeline.add("maintenance", maintenance[m][1])
            m += 1
        rows = range(bounds[j], bounds[j + 1])
        present = sorted({fam_of[cell_rows[r]] for r in rows})
        window = EngineWindow(start)
        fams = [window.families.setdefault(names[f], {}) for f in present]
        by_family = dict(zip(present, fams, strict=True))
        for r in rows:
            c = cell_rows[r]
            f = fam_of[c]
            by_service = by_family[f]
            svc = by_service.get(services[c])
            if svc is None:
                svc = by_service[services[c]] = {}
            svc[keys[c]] = counts[r][: widths[f]]
        anomalies = pipeline.engine.process(window)
        pipeline.updates.extend(pipeline.manager.process(start + window_ms, anomalies))
        if bar is not None:
            bar.update(j + 1)
    while m < len(maintenance):
        pipeline.add("maintenance", maintenance[m][1])
        m += 1
    if bar is not None:
        bar.finish()
