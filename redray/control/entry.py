"""An object directory entry (`obj:<id>` fields k, s, n, d): how and where a committed
object lives. Written by results.py, read by every client."""

from __future__ import annotations

from typing import NamedTuple


class Entry(NamedTuple):
    """An object directory entry: how and where a committed object lives."""

    kind: str  # "v" inline value, "s" shared memory, "e" error, "x" owner died
    size: int
    node: str
    data: bytes

    @classmethod
    def from_fields(cls, kind: bytes, size: bytes, node: bytes, data: bytes) -> Entry:
        return cls(kind.decode(), int(size), node.decode(), data)
