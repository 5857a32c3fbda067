"""The per-node shared-memory object store: one sealed file per object under /dev/shm.

A writer creates `<id>.tmp`, writes the whole blob, and renames it to `<id>`: the rename
seals it, so a reader never sees a partial object. Readers map the file read-only; the
mapping stays valid after the file is deleted, so freeing never breaks a reader.
"""

from __future__ import annotations

import mmap
import os
import shutil
from pathlib import Path

from redray.objectstore.serialization import SerializedObject

SHM_ROOT = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path("/tmp")


def store_directory(node_id: str) -> Path:
    return SHM_ROOT / f"redray-{node_id}"


class SharedMemoryStore:
    """The files of one node's store; any process on the node may write and read them."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def create(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def destroy(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    def path(self, object_id: str) -> Path:
        return self.directory / object_id

    def write(self, object_id: str, serialized: SerializedObject) -> int:
        """Store and seal an object; returns its size in bytes."""
        final = self.path(object_id)
        temporary = final.with_suffix(".tmp")
        fd = os.open(temporary, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        try:
            serialized.write_to_fd(fd)
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        os.rename(temporary, final)
        return size

    def write_bytes(self, object_id: str, chunks: list[bytes | memoryview]) -> None:
        """Store a blob that arrives in pieces (a transfer from another node)."""
        final = self.path(object_id)
        temporary = final.with_suffix(f".{os.getpid()}.tmp")
        with open(temporary, "wb") as file:
            for chunk in chunks:
                file.write(chunk)
        os.rename(temporary, final)

    def read(self, object_id: str) -> memoryview:
        """A read-only view of the sealed object (raises FileNotFoundError if absent)."""
        with open(self.path(object_id), "rb") as file:
            mapping = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        return memoryview(mapping)

    def contains(self, object_id: str) -> bool:
        return self.path(object_id).exists()

    def delete(self, object_id: str) -> None:
        self.path(object_id).unlink(missing_ok=True)
