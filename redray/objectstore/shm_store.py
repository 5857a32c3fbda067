"""The per-node shared-memory object store: one sealed file per object under /dev/shm.

A writer reserves `<id>.<pid>.tmp` at its final size (under the node's allocation lock, so
that the memory cap holds across processes), writes the blob, and renames it to `<id>`: the
rename seals it, so a reader never sees a partial object. Readers map the file read-only;
the mapping stays valid after the file is deleted, so freeing never breaks a reader.

A reader also holds a shared `flock` on the file for as long as its mapping lives (mmap
keeps a duplicate of the descriptor, and flock belongs to the open file, not to the fd we
close): that is how the spiller knows an object is in use without any bookkeeping.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import mmap
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

from redray.objectstore.serialization import SerializedObject

SHM_ROOT = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path("/tmp")
_CONFIG = ".config.json"
_ALLOC_LOCK = ".alloc.lock"

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
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        if os.fstat(fd).st_nlink == 0:  # spilled or freed while we waited for the lock
            raise FileNotFoundError(str(path))
        mapping = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    finally:
        os.close(fd)
    return memoryview(mapping)


class Reservation:
    """Room taken in the store for one object: write into `fd`, then seal() or abort()."""

    def __init__(self, final: Path, size: int) -> None:
        self.final = final
        self.temporary = final.with_name(f"{final.name}.{os.getpid()}.tmp")
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

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._config: dict | None = None

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
        reservation = self.reserve(object_id, size, make_room)
        try:
            serialized.write_to_fd(reservation.fd)
        except BaseException:
            reservation.abort()
            raise
        reservation.seal()
        return size

    def read(self, object_id: str) -> memoryview:
        """A read-only, pinned view of the sealed object (FileNotFoundError if absent)."""
        return map_pinned(self.path(object_id))

    def contains(self, object_id: str) -> bool:
        return self.path(object_id).exists()

    def delete(self, object_id: str) -> None:
        """Forget an object: its file, its spilled copy and its lock file."""
        self.path(object_id).unlink(missing_ok=True)
        (self.directory / f"{object_id}.lock").unlink(missing_ok=True)
        try:
            self.spill_path(object_id).unlink(missing_ok=True)
        except NotADirectoryError:
            pass
