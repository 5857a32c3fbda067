"""Making room in a full store: evict copies, then spill objects to disk; restore on access.

Called with the node's allocation lock held (see SharedMemoryStore.reserve). Objects some
process has mapped are pinned (a shared flock, see shm_store) and are never moved: their
memory could not be given back anyway. Order of sacrifice:

1. the freed files processes keep for reuse (see segments.py);
2. copies of other nodes' objects (pulled here by a transfer): the primary still exists,
   so they are evicted (deleted), and this node leaves the object's location set;
3. objects whose primary copy is here: spilled, oldest first, to the node's spill directory
   on disk, and restored into the store the next time a process reads them.

Objects without a directory entry are left alone: they may be a `put` whose entry is not
written yet.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

import redis

from redray.control import keys
from redray.exceptions import ObjectStoreFullError, OutOfDiskError
from redray.objectstore import spill_stats
from redray.objectstore.shm_store import MakeRoom, SharedMemoryStore, map_pinned


def make_room(
    store: SharedMemoryStore, client: redis.Redis, node_id: str, needed: int, incoming: int
) -> None:
    """Free at least `needed` bytes of `store`, or raise ObjectStoreFullError."""
    capacity = store.capacity() or 0
    if incoming > capacity:
        raise ObjectStoreFullError(
            f"An object of {incoming} bytes is larger than the object store of node {node_id} "
            f"({capacity} bytes, init(object_store_memory=...))."
        )
    freed = store.delete_free_files()
    if freed >= needed:
        return
    stored = store.objects()
    pipe = client.pipeline(transaction=False)
    for item in stored:
        pipe.hget(keys.obj(item.object_id), "n")
    primaries = [None if n is None else n.decode() for n in pipe.execute()]
    for item, primary in zip(stored, primaries):
        if primary is not None and primary != node_id and _evict(store, item.object_id):
            client.srem(keys.obj_locations(item.object_id), node_id)
            freed += item.size
            if freed >= needed:
                return
    for item, primary in zip(stored, primaries):
        if primary == node_id and spill(store, item.object_id):
            freed += item.size
            if freed >= needed:
                return
    raise ObjectStoreFullError(
        f"Cannot store an object of {incoming} bytes on node {node_id}: the object store holds "
        f"{store.used_bytes()} of its {capacity} bytes in objects that are in use (mapped by "
        f"a process) and could not be spilled; {needed - freed} more bytes are needed."
    )


def _evict(store: SharedMemoryStore, object_id: str) -> bool:
    """Delete an unpinned copy; False if a process has it mapped."""
    try:
        fd = os.open(store.path(object_id), os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    try:
        store.path(object_id).unlink(missing_ok=True)
        return True
    finally:
        os.close(fd)


def spill(store: SharedMemoryStore, object_id: str) -> bool:
    """Move one unpinned object to the spill directory; False if pinned or busy."""
    with store.object_lock(object_id, blocking=False) as locked:
        if not locked:
            return False  # being restored or pulled right now
        try:
            fd = os.open(store.path(object_id), os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            if os.fstat(fd).st_nlink == 0:
                return False
            store.spill_directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            _copy(fd, store.spill_path(object_id))
            store.path(object_id).unlink()
            spill_stats.record(store.directory, spill_stats.SPILLED, os.fstat(fd).st_size)
            return True
        finally:
            os.close(fd)


def restore(store: SharedMemoryStore, object_id: str, make_room_for: MakeRoom) -> memoryview | None:
    """Bring a spilled object back into the store and map it; None if it is not spilled.

    When the store is full of pinned objects, the spilled file is mapped where it is.
    """
    spilled = store.spill_path(object_id)
    if not spilled.exists():
        return None
    with store.object_lock(object_id):
        try:
            return store.read(object_id)  # restored by another process meanwhile
        except FileNotFoundError:
            pass
        try:
            source = os.open(spilled, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            size = os.fstat(source).st_size
            try:
                reservation = store.reserve(object_id, size, make_room_for)
            except ObjectStoreFullError:
                return map_pinned(spilled)
            try:
                _send(source, reservation.fd, size)
            except BaseException:
                reservation.abort()
                raise
            reservation.seal()
            spill_stats.record(store.directory, spill_stats.RESTORED, size)
        finally:
            os.close(source)
        spilled.unlink(missing_ok=True)
    try:
        return store.read(object_id)
    except FileNotFoundError:  # spilled again at once by a writer: read it from disk
        return restore(store, object_id, make_room_for)


def _copy(source: int, destination: Path) -> None:
    """Copy an open file to `destination`, sealed by rename (the kernel copies: sendfile)."""
    temporary = destination.with_name(f"{destination.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    try:
        _send(source, fd, os.fstat(source).st_size)
    except OSError as error:
        os.close(fd)
        temporary.unlink(missing_ok=True)
        if error.errno == errno.ENOSPC:
            raise OutOfDiskError(
                f"No disk space left to spill an object to {destination.parent}."
            ) from error
        raise
    os.close(fd)
    os.rename(temporary, destination)


def _send(source: int, destination: int, size: int) -> None:
    offset = 0
    while offset < size:
        sent = os.sendfile(destination, source, offset, min(size - offset, 1 << 30))
        if sent == 0:
            raise OSError(errno.EIO, "short copy")
        offset += sent
