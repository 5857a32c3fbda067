"""Recycling large object files: a freed file is reused for this process's next large write.

Why: the first write into a fresh tmpfs file pays for allocating and zeroing every page
(about 2 GB/s on our 2-core machine), and a fresh mapping pays one page fault per 4 KiB;
copying into pages that are allocated and already mapped runs at memcpy speed (over
10 GB/s). So when this process frees a large object that nobody has mapped, it keeps the
file, renamed out of the object namespace to `free.<pid>.<n>`, with its mapping, and its
next large write that fits reuses both. A loop that puts and drops large arrays then
copies each at memory speed.

Safety: a file is recycled only under an exclusive flock taken without waiting, so no
reader has it mapped (a reader holds a shared flock for as long as its mapping lives, see
shm_store.map_pinned), and a reader checks after locking that the object's path still
names the file it opened, so it never maps a file that was recycled under it.

A node's transfer server, which frees the copies other nodes' owners release but never
writes objects itself, puts what it frees in a pool shared by the node's processes
(`pool.<pid>.<n>`): a process that has no free file of its own that fits claims one by
renaming it (only one rename of a name succeeds), and maps it afresh, which still skips
the allocation of new pages (a pull into such a file runs at socket speed).

Bounds: at most `_MAX_FREE` free files within a byte budget (the oldest go first), and
the mappings of at most `_MAX_LIVE` objects written into recycled files, dropped as soon
as a check finds the file gone (spilled or freed by another process). Free files count
against the store's cap, the store makes room by deleting them first, and the node daemon
removes those of processes that died (`free.<pid>.*`).
"""

from __future__ import annotations

import collections
import fcntl
import itertools
import mmap
import os
import threading
from dataclasses import dataclass
from pathlib import Path

#: Objects smaller than this are not worth recycling: allocating them is cheap.
RECYCLE_MIN_BYTES = 1 << 20
FREE_PREFIX = "free."
POOL_PREFIX = "pool."
_MAX_FREE = 2
_MAX_LIVE = 4


@dataclass
class Segment:
    """An open object file of this process, with its writable mapping once it has one."""

    fd: int
    path: Path
    mapping: mmap.mmap | None = None

    @property
    def capacity(self) -> int:
        return len(self.mapping) if self.mapping is not None else os.fstat(self.fd).st_size

    def is_gone(self) -> bool:
        return os.fstat(self.fd).st_nlink == 0

    def writable_view(self, size: int) -> memoryview:
        """The first `size` bytes of the file, mapped (pre-faulted on the first use)."""
        if self.mapping is None or len(self.mapping) < size:
            self.close_mapping()
            length = max(size, os.fstat(self.fd).st_size)
            os.ftruncate(self.fd, length)
            self.mapping = mmap.mmap(self.fd, length, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE)
        os.ftruncate(self.fd, size)  # readers and the cap see the object's own size
        return memoryview(self.mapping)[:size]

    def close_mapping(self) -> None:
        if self.mapping is not None:
            try:
                self.mapping.close()
            except BufferError:  # a view is still alive: the mapping goes with it
                pass
            self.mapping = None

    def close(self) -> None:
        self.close_mapping()
        os.close(self.fd)


class SegmentRecycler:
    """This process's free files and the files it wrote, for one node's store."""

    def __init__(self, directory: Path, budget: int, shared: bool = False) -> None:
        """`shared`: freed files go to the node's pool instead of this process's list."""
        self._directory = directory
        self._budget = budget
        self._shared = shared
        self._lock = threading.Lock()
        self._free: list[Segment] = []
        self._live: collections.OrderedDict[str, Segment] = collections.OrderedDict()
        self._names = itertools.count()

    def take(self, size: int, destination: Path) -> Segment | None:
        """A free file of at least `size` bytes (and not twice as large), renamed to
        `destination`; None if there is none."""
        if size < RECYCLE_MIN_BYTES:
            return None
        with self._lock:
            self._drop_gone()
            fitting = [s for s in self._free if size <= s.capacity <= 2 * size]
            segment = min(fitting, key=lambda s: s.capacity) if fitting else None
            if segment is not None:
                self._free.remove(segment)
        if segment is None:
            return self._claim_from_pool(size, destination)
        os.rename(segment.path, destination)
        segment.path = destination
        return segment

    def _claim_from_pool(self, size: int, destination: Path) -> Segment | None:
        for candidate in sorted(_pool_files(self._directory), key=lambda entry: entry[1]):
            path, capacity = candidate
            if not size <= capacity <= 2 * size:
                continue
            try:
                os.rename(path, destination)
            except FileNotFoundError:
                continue  # another process claimed it first
            return Segment(os.open(destination, os.O_RDWR), destination)
        return None

    def written(self, object_id: str, segment: Segment) -> None:
        """Keep the mapping of a recycled file now holding `object_id`, for its next reuse."""
        with self._lock:
            self._live[object_id] = segment
            while len(self._live) > _MAX_LIVE:
                self._live.popitem(last=False)[1].close()

    def recycle(self, object_id: str, path: Path) -> bool:
        """Keep a freed object's file for reuse; False if it cannot be (the caller deletes it)."""
        with self._lock:
            segment = self._live.pop(object_id, None)
        if segment is None:
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                return False
            segment = Segment(fd, path)
        if not self._claim_unmapped(segment, path):
            segment.close()
            return False
        prefix = POOL_PREFIX if self._shared else FREE_PREFIX
        free_path = self._directory / f"{prefix}{os.getpid()}.{next(self._names)}"
        try:
            os.rename(path, free_path)
        finally:
            fcntl.flock(segment.fd, fcntl.LOCK_UN)
        if self._shared:
            segment.close()
            return True
        segment.path = free_path
        with self._lock:
            self._free.append(segment)
        return True

    def _claim_unmapped(self, segment: Segment, path: Path) -> bool:
        """Lock the file if nobody maps it, it is still the object at `path`, and it is
        worth keeping."""
        try:
            fcntl.flock(segment.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        try:
            size = os.fstat(segment.fd)
            worth = RECYCLE_MIN_BYTES <= size.st_size <= self._budget
            if worth and os.stat(path).st_ino == size.st_ino:
                self._make_room(size.st_size)
                return True
        except FileNotFoundError:
            pass
        fcntl.flock(segment.fd, fcntl.LOCK_UN)
        return False

    def _make_room(self, size: int) -> None:
        """Delete the oldest free files until one of `size` bytes fits the bounds: the
        sizes freed last are the likeliest to be written next."""
        if self._shared:
            pool = sorted(_pool_files(self._directory), key=lambda entry: entry[0].stat().st_mtime)
            while pool and (
                len(pool) >= _MAX_FREE or sum(c for _, c in pool) + size > self._budget
            ):
                pool.pop(0)[0].unlink(missing_ok=True)
            return
        with self._lock:
            self._drop_gone()
            while self._free and (
                len(self._free) >= _MAX_FREE
                or sum(s.capacity for s in self._free) + size > self._budget
            ):
                oldest = self._free.pop(0)
                oldest.path.unlink(missing_ok=True)
                oldest.close()

    def _drop_gone(self) -> None:
        """Forget files that were deleted by another process (to make room, or freed)."""
        for segment in [s for s in self._free if s.is_gone()]:
            self._free.remove(segment)
            segment.close()
        for object_id, segment in list(self._live.items()):
            if segment.is_gone():
                del self._live[object_id]
                segment.close()

    def close(self) -> None:
        """Delete the free files and let go of every mapping (at shutdown)."""
        with self._lock:
            for segment in self._free:
                segment.path.unlink(missing_ok=True)
                segment.close()
            for segment in self._live.values():
                segment.close()
            self._free.clear()
            self._live.clear()


def _pool_files(directory: Path) -> list[tuple[Path, int]]:
    """The node's shared free files and their sizes."""
    found = []
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.startswith(POOL_PREFIX):
                try:
                    found.append((Path(entry.path), entry.stat().st_size))
                except FileNotFoundError:
                    pass
    return found
