"""The windows topic's records: stage 1's messages to stage 2, bundled per windows partition.

Stage 1 sends, for each batch of windows an input partition closes, a partial count per
(window, service) and a ``closed`` marker for every windows partition. One Kafka record per
message made the windows topic as busy as the inputs at low event rates (a replay at
``--rate 20``: 47,592 partials for 904 markers), and the worker pays Faust's per-record cost
on both sides. So the partials for one windows partition leave as one ``bundle`` record, in
order: a service's partials still all reach the partition its key hashes to. The markers
follow, one record per partition, once every partition's partials are out (a marker is read
as "these windows were sent everywhere": see :func:`streams.agents.ingest.emit_closed`).

Stage 2 and the start-up restore read a record through :func:`unbundle`, so a windows topic
written before bundles existed (one message per record) reads the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from aiokafka.partitioner import murmur2

#: At most this many segments' counts in one bundle (a few hundred KB of JSON), so that a
#: bundle stays far below the broker's 1 MB default record limit. A partial larger than this
#: goes alone, as it did before bundles.
MAX_SEGMENTS = 2_000


def windows_partition(service: str, partitions: int) -> int:
    """The windows partition a service's messages go to: the partition Kafka's default
    partitioner (murmur2, as the Java client and aiokafka) gives the key ``service``.

    >>> [windows_partition(s, 4) for s in ("wallet", "checkout", "")]
    [1, 2, 1]
    """
    return (murmur2(service.encode()) & 0x7FFFFFFF) % partitions


def bundles(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The ``bundle`` records carrying ``items`` (messages for one windows partition) in
    order: as few as keep each under :data:`MAX_SEGMENTS` segments.

    >>> partial = {"kind": "partial", "segments": {"a": [1], "b": [2]}}
    >>> [len(b["items"]) for b in bundles([partial] * 2500)]
    [1000, 1000, 500]
    >>> list(bundles([]))
    []
    """
    chunk: list[dict[str, Any]] = []
    size = 0
    for item in items:
        n = len(item.get("segments", ()))
        if chunk and size + n > MAX_SEGMENTS:
            yield {"kind": "bundle", "items": chunk}
            chunk, size = [], 0
        chunk.append(item)
        size += n
    if chunk:
        yield {"kind": "bundle", "items": chunk}


def unbundle(value: Any) -> list[Any]:
    """The messages a windows-topic record carries, in order: a bundle's items, or the
    record itself (a message written before bundles, or any other value).

    >>> unbundle({"kind": "bundle", "items": [{"kind": "partial", "group": "a"},
    ...                                      {"kind": "partial", "group": "b"}]})
    [{'kind': 'partial', 'group': 'a'}, {'kind': 'partial', 'group': 'b'}]
    >>> unbundle({"kind": "maintenance", "record": {}})
    [{'kind': 'maintenance', 'record': {}}]
    """
    if isinstance(value, dict) and value.get("kind") == "bundle":
        return list(value.get("items") or [])
    return [value]
