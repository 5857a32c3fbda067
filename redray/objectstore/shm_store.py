"""The per-node shared-memory object store: one sealed file per object under /dev/shm.

A writer reserves `<id>.<pid>.tmp` at its final size (under the node's allocation lock, so
that the memory cap holds across processes), writes the blob, and renames it to `<id>`: the
rename seals it, so a reader never sees a partial object. Readers map the file read-only;
the mapping stays valid after the file is deleted, so freeing never breaks a reader.

A reader also holds a shared `flock` on the file for as long as its mapping lives (mmap
keeps a duplicate of the descriptor, and flock belongs to the open file, not to the fd we
close): that is how the spiller knows an object is in use without any bookkeeping. Large
freed files are recycled by the process that frees them (see segments.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import mmap
import os
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import psutil

from redray.objectstore.read_cache import CACHE_MIN_BYTES, ReadCache
from redray.objectstore.segments import FREE_PREFIX, POOL_PREFIX, SegmentRecycler
from redray.objectstore.serialization import SerializedObject

SHM_ROOT = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path("/tmp")
_CONFIG = ".config.json"
_ALLOC_LOCK = ".alloc.lock"
#: The most bytes of freed files one process keeps for reuse.
_RECYCLE_BUDGET = 1 << 30

#: make_room(bytes_to_free, incoming_size): evicts or spills, or raises ObjectStoreFullError.
MakeRoom = Callable[[int, int], None]


def store_directory(node_id: str) -> Path:
    return SHM_ROOT / f"redray-{node_id}"


def spill_directory(node_id: str) -> Path:
    """Where a node's store spills objects when it is full (a disk directory)."""
    return Path(tempfile.gettempdir()) / f"redray-spill-{node_id}"


class StoredObject(NamedTuple):
    object_id: str
    size: int
    mtime: float


def map_pinned(path: Path) -> memoryview:
    """Map a sealed file read-only, pinned (shared flock) for as long as the mapping lives."""
    fd, _ = _pin(path)
    try:
        mapping = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)  # keeps a duplicate of fd
    finally:
        os.close(fd)
    return memoryview(mapping)


def _pin(path: Path) -> tuple[int, int]:
    """An open descriptor of the sealed file holding a shared flock, and its inode."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        inode = os.fstat(fd).st_ino
        # Spilled, freed or recycled while we waited for the lock?
        if inode != os.stat(path).st_ino:
            raise FileNotFoundError(str(path))
    except BaseException:
        os.close(fd)
        raise
    return fd, inode


def _pinned_view(mapping: mmap.mmap, pin_fd: int) -> memoryview:
    """A read-only view of a cached mapping that holds `pin_fd` (and its shared flock) for
    as long as the view, or anything made from it, lives: the view's exporter is an array
    of its own, whose end closes the descriptor."""
    import numpy as np  # not at `import redray`: a driver may never map a large object

    exporter = np.frombuffer(mapping, dtype=np.uint8)
    exporter.flags.writeable = False
    weakref.finalize(exporter, os.close, pin_fd)
    return memoryview(exporter)


class Reservation:
    """Room taken in the store for one object: write into `fd`, then seal() or abort()."""

    def __init__(self, final: Path, size: int) -> None:
        self.final = final
        self.temporary = _temporary_path(final)
        self.fd = os.open(self.temporary, os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o600)
        os.ftruncate(self.fd, size)  # counts against the cap at once; tmpfs allocates lazily

    def seal(self) -> None:
        os.close(self.fd)
        os.rename(self.temporary, self.final)

    def abort(self) -> None:
        os.close(self.fd)
        self.temporary.unlink(missing_ok=True)


class SharedMemoryStore:
    """The files of one node's store; any process on the node may write and read them."""

    def __init__(self, directory: Path, recycle: bool = False, pool: bool = False) -> None:
        """`recycle`: reuse the large files this process frees, and keep the mappings of
        the last large objects it read (for a driver or worker); `pool`: put the large
        files this process frees in the node's shared pool (for the transfer server)."""
        self.directory = directory
        self._config: dict | None = None
        self._recycler: SegmentRecycler | None = None
        self._reads: ReadCache | None = None
        if recycle or pool:
            budget = min((self.capacity() or _RECYCLE_BUDGET) // 4, _RECYCLE_BUDGET)
            self._recycler = SegmentRecycler(directory, budget, shared=pool)
        if recycle:
            self._reads = ReadCache()

    @property
    def node_id(self) -> str:
        return self.directory.name.removeprefix("redray-")

    # ---- lifecycle (the node daemon) ---------------------------------------------------

    def create(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def configure(self, capacity: int | None) -> None:
        """Record the memory cap for every process of the node (read once by each)."""
        temporary = self.directory / f"{_CONFIG}.tmp"
        temporary.write_text(json.dumps({"capacity": capacity}))
        os.rename(temporary, self.directory / _CONFIG)

    def destroy(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
        shutil.rmtree(self.spill_directory, ignore_errors=True)

    def close(self) -> None:
        """This process is done with the store: delete the files it kept for reuse."""
        if self._recycler is not None:
            self._recycler.close()

    def remove_files_of_dead_processes(self) -> None:
        """Delete the reservations and free files of processes that died (the daemon's job)."""
        with os.scandir(self.directory) as entries:
            for entry in entries:
                pid = _writer_pid(entry.name)
                if pid is not None and not psutil.pid_exists(pid):
                    Path(entry.path).unlink(missing_ok=True)

    def delete_free_files(self) -> int:
        """Delete every process's free files (to make room); returns the bytes released."""
        released = 0
        with os.scandir(self.directory) as entries:
            for entry in entries:
                if entry.name.startswith((FREE_PREFIX, POOL_PREFIX)):
                    with contextlib.suppress(FileNotFoundError):
                        released += entry.stat().st_size
                        os.unlink(entry.path)
        return released

    # ---- layout ------------------------------------------------------------------------

    @property
    def spill_directory(self) -> Path:
        return spill_directory(self.node_id)

    def path(self, object_id: str) -> Path:
        return self.directory / object_id

    def spill_path(self, object_id: str) -> Path:
        return self.spill_directory / object_id

    def capacity(self) -> int | None:
        if self._config is None:
            try:
                self._config = json.loads((self.directory / _CONFIG).read_text())
            except (FileNotFoundError, ValueError):
                return None
        return self._config.get("capacity")

    def used_bytes(self) -> int:
        """Bytes held by sealed objects and reservations (the cap is on this)."""
        total = 0
        with os.scandir(self.directory) as entries:
            for entry in entries:
                if not entry.name.startswith(".") and not entry.name.endswith(".lock"):
                    try:
                        total += entry.stat().st_size
                    except FileNotFoundError:
                        pass
        return total

    def objects(self) -> list[StoredObject]:
        """The sealed objects, oldest first."""
        found = []
        with os.scandir(self.directory) as entries:
            for entry in entries:
                if "." not in entry.name:
                    try:
                        stat = entry.stat()
                    except FileNotFoundError:
                        continue
                    found.append(StoredObject(entry.name, stat.st_size, stat.st_mtime))
        found.sort(key=lambda stored: stored.mtime)
        return found

    # ---- locks -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _flock(self, path: Path, blocking: bool = True) -> Iterator[bool]:
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    def object_lock(
        self, object_id: str, blocking: bool = True
    ) -> contextlib.AbstractContextManager[bool]:
        """One process at a time pulls or restores an object; the others wait for it."""
        return self._flock(self.directory / f"{object_id}.lock", blocking)

    def alloc_lock(self) -> contextlib.AbstractContextManager[bool]:
        """Serializes "is there room? take it" across the node's processes."""
        return self._flock(self.directory / _ALLOC_LOCK)

    # ---- objects -----------------------------------------------------------------------

    def reserve(self, object_id: str, size: int, make_room: MakeRoom | None) -> Reservation:
        """Take `size` bytes under the cap, making room (evict, spill) if needed."""
        capacity = self.capacity()
        if capacity is None or make_room is None:
            return Reservation(self.path(object_id), size)
        with self.alloc_lock():
            used = self.used_bytes()
            if used + size > capacity:
                make_room(used + size - capacity, size)
            return Reservation(self.path(object_id), size)

    def write(
        self, object_id: str, serialized: SerializedObject, make_room: MakeRoom | None = None
    ) -> int:
        """Store and seal an object; returns its size in bytes."""
        size = serialized.total_size
        with self.recycled_file(object_id, size) as view:
            if view is not None:
                serialized.write_to_buffer(view)
                return size
        reservation = self.reserve(object_id, size, make_room)
        try:
            serialized.write_to_fd(reservation.fd)
        except BaseException:
            reservation.abort()
            raise
        reservation.seal()
        return size

    @contextlib.contextmanager
    def recycled_file(self, object_id: str, size: int) -> Iterator[memoryview | None]:
        """A freed file's mapping to write `object_id` into (sealed when the block ends
        without error), or None when no freed file fits (see segments.py)."""
        final = self.path(object_id)
        recycler = self._recycler
        segment = recycler.take(size, _temporary_path(final)) if recycler else None
        if segment is None:
            yield None
            return
        try:
            view = segment.writable_view(size)
            try:
                yield view
            finally:
                view.release()
            os.rename(segment.path, final)
        except BaseException:
            segment.path.unlink(missing_ok=True)
            segment.close()
            raise
        segment.path = final
        assert recycler is not None
        recycler.written(object_id, segment)

    def read(self, object_id: str) -> memoryview:
        """A read-only, pinned view of the sealed object (FileNotFoundError if absent).

        The last large objects read stay mapped (read_cache.py), without a pin of their
        own: each view returned holds its own pin, so freed files can be recycled even
        while this process still has them cached."""
        path = self.path(object_id)
        if self._reads is None:
            return map_pinned(path)
        pin_fd, inode = _pin(path)
        try:
            mapping = self._reads.get(object_id, inode)
            if mapping is None:
                if os.fstat(pin_fd).st_size < CACHE_MIN_BYTES:
                    os.close(pin_fd)
                    return map_pinned(path)
                self._reads.prune()
                with open(path, "rb") as unpinned:  # a description of its own: no flock
                    mapping = mmap.mmap(unpinned.fileno(), 0, access=mmap.ACCESS_COPY)
                self._reads.add(object_id, path, inode, mapping)
            return _pinned_view(mapping, pin_fd)
        except BaseException:
            os.close(pin_fd)
            raise

    def prune_read_cache(self) -> None:
        """Let go of cached mappings of objects that are gone (see read_cache.py)."""
        if self._reads is not None:
            self._reads.prune()

    def contains(self, object_id: str) -> bool:
        return self.path(object_id).exists()

    def delete(self, object_id: str) -> None:
        """Forget an object: its file (kept for reuse if it can be), its spilled copy and its
        lock file."""
        path = self.path(object_id)
        if self._reads is not None:
            self._reads.forget(object_id)
        if self._recycler is None or not self._recycler.recycle(object_id, path):
            path.unlink(missing_ok=True)
        (self.directory / f"{object_id}.lock").unlink(missing_ok=True)
        try:
            self.spill_path(object_id).unlink(missing_ok=True)
        except NotADirectoryError:
            pass


def _temporary_path(final: Path) -> Path:
    """Where this process writes an object before sealing it."""
    return final.with_name(f"{final.name}.{os.getpid()}.tmp")


def _writer_pid(name: str) -> int | None:
    """The pid in a reservation (`<id>.<pid>.tmp`) or free file (`free.<pid>.<n>`,
    `pool.<pid>.<n>`) name."""
    parts = name.split(".")
    if name.startswith((FREE_PREFIX, POOL_PREFIX)) and len(parts) == 3:
        field = parts[1]
    elif name.endswith(".tmp") and len(parts) == 3:
        field = parts[1]
    else:
        return None
    return int(field) if field.isdigit() else None
