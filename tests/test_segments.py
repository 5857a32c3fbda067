"""Reuse of large object files (segments.py) and of large mappings (read_cache.py).

The store-level tests run on a private directory, without Redis; the end-to-end ones check
that reuse never changes what a reader sees and never keeps freed memory mapped.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from target_ray import wait_until

import redray
from redray.api import current_client
from redray.objectstore.serialization import serialize
from redray.objectstore.shm_store import SharedMemoryStore, map_pinned

MB = 2**20


@pytest.fixture
def store(tmp_path: Path) -> SharedMemoryStore:
    made = SharedMemoryStore(tmp_path / "store", recycle=True)
    made.create()
    yield made
    made.close()


def _blob(fill: float, megabytes: int = 4) -> object:
    return serialize(np.full(megabytes * MB // 8, fill))


def _inode(store: SharedMemoryStore, object_id: str) -> int:
    return os.stat(store.path(object_id)).st_ino


def test_a_freed_large_file_holds_the_next_large_object(store: SharedMemoryStore) -> None:
    store.write("a", _blob(1.0))
    freed_inode = _inode(store, "a")
    store.delete("a")
    store.write("b", _blob(2.0))
    assert _inode(store, "b") == freed_inode
    assert np.frombuffer(store.read("b")[-8:], dtype=np.float64)[0] == 2.0
    assert not store.path("a").exists()


def test_a_file_someone_maps_is_not_recycled(store: SharedMemoryStore) -> None:
    store.write("a", _blob(1.0))
    view = map_pinned(store.path("a"))  # another reader's live mapping
    store.delete("a")
    store.write("b", _blob(2.0))
    assert np.frombuffer(view[-8:], dtype=np.float64)[0] == 1.0


def test_a_cached_mapping_does_not_keep_a_freed_file_from_reuse(store: SharedMemoryStore) -> None:
    store.write("a", _blob(1.0))
    view = store.read("a")  # cached by the store, pinned by the view
    assert np.frombuffer(view[-8:], dtype=np.float64)[0] == 1.0
    view.release()
    freed_inode = _inode(store, "a")
    store.delete("a")
    store.write("b", _blob(2.0))
    assert _inode(store, "b") == freed_inode


def test_a_view_of_a_cached_object_keeps_its_memory(store: SharedMemoryStore) -> None:
    store.write("a", _blob(1.0))
    store.read("a").release()
    kept = np.frombuffer(store.read("a"), dtype=np.uint8)  # a cache hit, pinned
    assert not kept.flags.writeable
    store.delete("a")
    store.write("b", _blob(2.0))
    assert kept[-8:].view(np.float64)[0] == 1.0


def test_files_freed_by_the_transfer_server_are_claimed_by_other_processes(
    store: SharedMemoryStore,
) -> None:
    server_side = SharedMemoryStore(store.directory, pool=True)
    store.write("a", _blob(1.0))
    store.close()  # the writer keeps nothing of its own
    freed_inode = _inode(store, "a")
    server_side.delete("a")
    assert [name.split(".")[0] for name in os.listdir(store.directory)] == ["pool"]
    other = SharedMemoryStore(store.directory, recycle=True)
    other.write("b", _blob(2.0))
    assert _inode(other, "b") == freed_inode
    other.close()


def test_small_objects_are_not_recycled(store: SharedMemoryStore) -> None:
    store.write("a", serialize(b"x" * 1000))
    store.delete("a")
    assert os.listdir(store.directory) == []


def test_free_files_are_deleted_to_make_room(store: SharedMemoryStore) -> None:
    store.write("a", _blob(1.0))
    store.delete("a")
    assert store.used_bytes() > 0 and store.objects() == []
    assert store.delete_free_files() >= 4 * MB
    assert store.used_bytes() == 0
    store.write("b", _blob(2.0))  # the recycler notices its file is gone
    assert np.frombuffer(store.read("b")[-8:], dtype=np.float64)[0] == 2.0


def test_close_deletes_the_free_files(store: SharedMemoryStore) -> None:
    store.write("a", _blob(1.0))
    store.delete("a")
    store.close()
    assert os.listdir(store.directory) == []


def test_files_of_dead_processes_are_removed(store: SharedMemoryStore) -> None:
    dead = _a_dead_pid()
    for name in (f"free.{dead}.0", f"abc.{dead}.tmp", f"free.{os.getpid()}.0"):
        (store.directory / name).write_bytes(b"x")
    store.remove_files_of_dead_processes()
    assert os.listdir(store.directory) == [f"free.{os.getpid()}.0"]


def _a_dead_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


# ---- end to end ------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_an_array_from_get_survives_the_reuse_of_its_file(ray_fresh) -> None:
    ray_fresh(num_cpus=1)
    ref = redray.put(np.full(8 * MB // 8, 1.0))
    first = redray.get(ref)
    del ref
    current_client().refs.flush(wait=True)  # freed now; `first` still maps it
    for fill in (2.0, 3.0):
        assert redray.get(redray.put(np.full(8 * MB // 8, fill)))[0] == fill
    assert first.min() == first.max() == 1.0


@redray.remote
def _pid_after_summing(array: np.ndarray) -> tuple[int, float]:
    return os.getpid(), float(array.sum())


@redray.remote
def _pid() -> int:
    return os.getpid()


@pytest.mark.timeout(120)
def test_a_worker_lets_go_of_a_freed_argument_after_its_next_task(ray_fresh) -> None:
    ray_fresh(num_cpus=1)
    ref = redray.put(np.ones(8 * MB // 8))
    object_id = ref.hex()
    results = redray.get([_pid_after_summing.remote(ref) for _ in range(3)])
    assert [total for _, total in results] == [MB] * 3
    worker = results[0][0]
    assert object_id in Path(f"/proc/{worker}/maps").read_text()  # kept between tasks
    store = current_client().local_objects.store
    del ref
    current_client().refs.flush(wait=True)
    # The worker's own borrow of the argument is released by its background thread.
    assert wait_until(lambda: not store.path(object_id).exists())
    assert redray.get(_pid.remote()) == worker
    assert object_id not in Path(f"/proc/{worker}/maps").read_text()
