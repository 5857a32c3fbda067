"""This process's mappings of the last few large objects it read, for reading them again.

Why: a fresh mapping pays one page fault per 4 KiB page the reader touches, which makes
summing a 100 MB array three times slower than in private memory. A worker that runs
several tasks on the same large argument (one `put`, many tasks) keeps its mapping and
touches pages that are already mapped after the first task.

A cached mapping does not pin its object (each view made from it does, see
SharedMemoryStore.read), so a freed object's file can be recycled and a referenced one
spilled while it is cached; `prune()` (after each task, and before mapping another
object) lets go of mappings whose file is gone, so that spilled memory goes back to the
system. At most `_ENTRIES` large objects are cached.
"""

from __future__ import annotations

import collections
import mmap
import os
import threading
from pathlib import Path

#: Objects smaller than this are mapped afresh each time: their page faults are cheap.
CACHE_MIN_BYTES = 1 << 20
_ENTRIES = 2


class ReadCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: object id -> (its path, the inode mapped, the mapping)
        self._entries: collections.OrderedDict[str, tuple[Path, int, mmap.mmap]] = (
            collections.OrderedDict()
        )

    def get(self, object_id: str, inode: int) -> mmap.mmap | None:
        """The cached mapping of the object, if it maps the file `inode` names now."""
        with self._lock:
            entry = self._entries.get(object_id)
            if entry is None or entry[1] != inode:
                return None
            self._entries.move_to_end(object_id)
            return entry[2]

    def add(self, object_id: str, path: Path, inode: int, mapping: mmap.mmap) -> None:
        if len(mapping) < CACHE_MIN_BYTES:
            return
        with self._lock:
            self._entries[object_id] = (path, inode, mapping)
            while len(self._entries) > _ENTRIES:
                self._entries.popitem(last=False)

    def forget(self, object_id: str) -> None:
        with self._lock:
            self._entries.pop(object_id, None)

    def prune(self) -> None:
        """Drop the mappings of objects whose file is gone (freed, spilled or recycled)."""
        with self._lock:
            for object_id, (path, inode, _) in list(self._entries.items()):
                try:
                    alive = os.stat(path).st_ino == inode
                except FileNotFoundError:
                    alive = False
                if not alive:
                    del self._entries[object_id]
