"""Bytes spilled to disk and restored from it, counted across a node's processes.

Any process of a node may spill or restore (spilling.py). Each event appends one short
record to a file in the store directory with O_APPEND (atomic for writes this small), so
no lock or Redis call is needed; the node daemon sums the records for its metrics.
"""

from __future__ import annotations

import os
from pathlib import Path

SPILLED = ".spilled_bytes"
RESTORED = ".restored_bytes"


def record(directory: Path, which: str, size: int) -> None:
    """Count `size` bytes as spilled or restored (`which` is SPILLED or RESTORED)."""
    try:
        fd = os.open(directory / which, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except OSError:
        return  # the store is being removed: nothing left to count for
    try:
        os.write(fd, b"%d\n" % size)
    finally:
        os.close(fd)


class SpillTotals:
    """The node daemon's running totals, reading only what was appended since last time."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._offsets = {SPILLED: 0, RESTORED: 0}
        self.totals = {SPILLED: 0, RESTORED: 0}

    def refresh(self) -> dict[str, int]:
        for which, offset in self._offsets.items():
            try:
                with open(self._directory / which, "rb") as handle:
                    handle.seek(offset)
                    data = handle.read()
            except FileNotFoundError:
                continue
            complete = data[: data.rfind(b"\n") + 1]  # a record being written waits
            self._offsets[which] = offset + len(complete)
            self.totals[which] += sum(int(line) for line in complete.split())
        return self.totals
