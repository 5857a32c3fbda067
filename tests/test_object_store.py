"""The object store: freeing by reference counting, spilling under a memory cap, transfer
between two node daemons with separate stores, and custom serializers.

Tasks and the driver meet at named FIFOs (os.mkfifo): opening one blocks until the other
side opens it, so "the task is running now" needs no sleeping or polling.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from test_cli import CliCluster, cli  # noqa: F401  (cli is a fixture)

import redray
from redray.api import current_client
from redray.control import keys
from redray.exceptions import ObjectStoreFullError
from redray.objectstore import transfer
from redray.objectstore.serialization import serialize
from redray.objectstore.shm_store import store_directory
from redray.util import deregister_serializer, register_serializer
from redray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

MB = 2**20


def _obj_keys(object_ids: list[str]) -> list[bytes]:
    client = current_client().redis
    return [k for o in object_ids for k in client.keys(keys.obj(o) + "*")]


def _settle() -> None:
    """Send this process's queued reference releases now (they are otherwise sent by a
    background thread a moment later)."""
    current_client().refs.flush(wait=True)


# ---- freeing ---------------------------------------------------------------------------


@pytest.mark.timeout(600)
def test_put_loop_of_large_arrays_stays_bounded(ray_fresh) -> None:
    ray_fresh(num_cpus=1)
    store = current_client().local_objects.store
    array = np.ones(100 * MB // 8)
    seen = []
    for _ in range(200):
        ref = redray.put(array)
        assert redray.get(ref)[-1] == 1.0
        seen.append(ref.hex())
        del ref
        assert store.used_bytes() < 1024 * MB
    _settle()
    assert store.objects() == []
    # What remains is at most the freed files this process keeps for its next puts.
    assert store.used_bytes() <= 2 * array.nbytes + MB
    assert _obj_keys(seen) == []


@redray.remote
def hold_then_sum(array: np.ndarray, started: str, go: str) -> float:
    with open(started, "w") as fifo:  # tell the driver the task is running
        fifo.write("1")
    with open(go) as fifo:  # and wait until it dropped its ref
        fifo.read()
    return float(array.sum())


@redray.remote
def sum_of_boxed(box: list) -> float:
    return float(redray.get(box[0]).sum())


@pytest.mark.timeout(300)
def test_argument_of_a_running_task_is_not_freed(ray_start, workdir: Path) -> None:
    started, go = str(workdir / "started"), str(workdir / "go")
    os.mkfifo(started)
    os.mkfifo(go)
    ref = redray.put(np.ones(2 * MB))
    object_id = ref.hex()
    path = current_client().local_objects.store.path(object_id)
    result = hold_then_sum.remote(ref, started, go)
    del ref
    with open(started) as fifo:
        fifo.read()
    _settle()
    assert path.exists() and _obj_keys([object_id])
    with open(go, "w") as fifo:
        fifo.write("1")
    assert redray.get(result) == 2 * MB
    _settle()
    assert not path.exists() and _obj_keys([object_id]) == []


@pytest.mark.timeout(300)
def test_ref_inside_an_argument_or_object_stays_alive(ray_start) -> None:
    ref = redray.put(np.ones(MB))
    inner = ref.hex()
    result = sum_of_boxed.remote([ref])  # a borrowed ref, not resolved by the submitter
    outer = redray.put([ref])  # an object holding the ref
    del ref
    assert redray.get(result) == MB
    _settle()
    assert _obj_keys([inner])
    assert redray.get(sum_of_boxed.remote(redray.get(outer))) == MB
    outer_id = outer.hex()
    del outer
    _settle()
    assert _obj_keys([inner, outer_id]) == []


# ---- memory cap and spilling ---------------------------------------------------------------


@redray.remote
def first_and_last(array: np.ndarray) -> tuple[float, float]:
    return float(array[0]), float(array[-1])


@pytest.mark.timeout(300)
def test_spilling_and_restoring_under_a_small_cap(ray_fresh) -> None:
    ray_fresh(num_cpus=1, object_store_memory=200 * MB)
    store = current_client().local_objects.store
    refs = [redray.put(np.full(50 * MB // 8, i, dtype=np.int64)) for i in range(8)]
    assert store.used_bytes() <= 200 * MB
    assert len(os.listdir(store.spill_directory)) >= 4
    for index, ref in enumerate(refs):  # restored transparently, in the driver or a task
        value = redray.get(ref)
        assert value[0] == index and value[-1] == index
        del value
        assert redray.get(first_and_last.remote(ref)) == (index, index)
        assert store.used_bytes() <= 200 * MB
    held = [redray.get(ref) for ref in refs]  # all in use at once: the rest read from disk
    assert [int(value[-1]) for value in held] == list(range(8))
    del held
    with pytest.raises(ObjectStoreFullError, match="larger than the object store"):
        redray.put(np.zeros(300 * MB // 8))
    del refs, ref
    _settle()
    assert store.objects() == [] and os.listdir(store.spill_directory) == []


@pytest.mark.timeout(300)
def test_store_full_of_objects_in_use_raises(ray_fresh) -> None:
    ray_fresh(num_cpus=1, object_store_memory=200 * MB)
    refs = [redray.put(np.zeros(45 * MB // 8)) for _ in range(4)]
    in_use = redray.get(refs)  # mapped: pinned, neither evictable nor spillable
    incoming = serialize(np.zeros(45 * MB // 8)).total_size
    with pytest.raises(ObjectStoreFullError, match=f"object of {incoming} bytes.*in use"):
        redray.put(np.zeros(45 * MB // 8))
    del in_use
    assert redray.get(redray.put(np.ones(45 * MB // 8)))[0] == 1.0  # spills the others now


def test_warns_when_dev_shm_is_smaller_than_the_cap(ray_fresh) -> None:
    import shutil

    from redray.objectstore.shm_store import SHM_ROOT

    too_much = shutil.disk_usage(SHM_ROOT).free + 1024 * MB
    with pytest.warns(UserWarning, match="more than the .* free in"):
        ray_fresh(num_cpus=1, object_store_memory=too_much)


# ---- custom serializers ------------------------------------------------------------------


class Opaque:
    def __init__(self, value: int) -> None:
        self.value = value

    def __reduce__(self):
        raise TypeError("Opaque cannot be pickled")


@redray.remote
def value_of(box: Opaque) -> int:
    return box.value


def test_register_serializer(ray_start) -> None:
    with pytest.raises(TypeError):
        redray.put(Opaque(1))
    register_serializer(Opaque, serializer=lambda o: o.value, deserializer=lambda v: Opaque(v))
    try:
        assert redray.get(redray.put(Opaque(7))).value == 7
        assert redray.get(value_of.remote(Opaque(8))) == 8
    finally:
        deregister_serializer(Opaque)
    with pytest.raises(TypeError):
        redray.put(Opaque(1))


# ---- transfer between nodes ----------------------------------------------------------------


@redray.remote
def summarize(array: np.ndarray) -> tuple[str, float, int]:
    return redray.get_runtime_context().get_node_id(), float(array.sum()), array.size


@pytest.fixture
def two_stores(cli: CliCluster) -> Iterator[tuple[str, str]]:  # noqa: F811
    """A head and a second node with 2 CPUs, each with its own store; a driver on the head."""
    redray.shutdown()  # the module's shared cluster, if a test before started it
    head = cli.start_head()["nodes"][0]["node_id"]
    second = cli.add_node("--num-cpus", "2")
    redray.init(address="auto")
    yield head, second  # the cli fixture shuts the driver down and stops both nodes


def _node_record(node_id: str) -> dict:
    import json

    return json.loads(current_client().redis.hget(keys.NODES, node_id))


@pytest.mark.timeout(300)
def test_transfer_of_a_large_array_between_nodes(two_stores: tuple[str, str]) -> None:
    head, second = two_stores
    assert current_client().node_id == head
    array = np.arange(100 * MB // 8, dtype=np.float64)
    ref = redray.put(array)
    object_id = ref.hex()
    on_second = summarize.options(scheduling_strategy=NodeAffinitySchedulingStrategy(second, False))
    # Two tasks on the second node want the object at once: it is pulled once.
    results = redray.get([on_second.remote(ref), on_second.remote(ref)])
    assert results == [(second, float(array.sum()), array.size)] * 2
    assert (store_directory(second) / object_id).exists()
    assert (store_directory(head) / object_id).exists()
    client = current_client().redis
    assert client.hget(keys.obj(object_id), "n").decode() == head
    assert {n.decode() for n in client.smembers(keys.obj_locations(object_id))} == {second}
    assert transfer.objects_sent(_node_record(head)["transfer"]) == 1
    fetched = transfer.fetch(_node_record(second)["transfer"], object_id)  # a storeless reader
    assert fetched is not None
    assert fetched.nbytes == (store_directory(head) / object_id).stat().st_size
    del fetched
    # A result made on the second node comes back to the driver the same way.
    pinned = NodeAffinitySchedulingStrategy(second, False)
    doubled = redray.get(double.options(scheduling_strategy=pinned).remote(ref))
    assert doubled[-1] == 2 * array[-1]
    del doubled
    # Freed everywhere once the refs are gone.
    del ref
    _settle()
    assert not (store_directory(second) / object_id).exists()
    assert not (store_directory(head) / object_id).exists()
    assert _obj_keys([object_id]) == []


@redray.remote
def double(array: np.ndarray) -> np.ndarray:
    return array * 2


def test_transfer_server_is_in_the_node_record(two_stores: tuple[str, str]) -> None:
    for node_id in two_stores:
        record = _node_record(node_id)
        token, _, host_port = record["transfer"].rpartition("@")
        host, _, port = host_port.rpartition(":")
        assert len(token) >= 32 and host and int(port) > 0
        assert record["object_store_memory"] > 0


def test_transfer_server_refuses_requests_without_its_token(
    two_stores: tuple[str, str],
) -> None:
    head, _ = two_stores
    ref = redray.put(np.ones(MB))
    address = _node_record(head)["transfer"]
    host, _, port = address.rpartition("@")[2].rpartition(":")
    for request in (f"GET {ref.hex()}\n", f"GET {ref.hex()} {'0' * 32}\n"):
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(request.encode())
            assert sock.recv(64) == b""  # closed without an answer
    assert transfer.fetch(address, ref.hex()) is not None


@redray.remote
def _large_items(count: int) -> Iterator[np.ndarray]:
    for _ in range(count):
        yield np.ones(2 * MB // 8)


@pytest.mark.timeout(300)
def test_streamed_items_are_freed_when_the_caller_drops_them(ray_fresh) -> None:
    ray_fresh(num_cpus=1)
    store = current_client().local_objects.store
    seen = []
    for ref in _large_items.remote(5):
        assert redray.get(ref)[0] == 1.0
        seen.append(ref.hex())
        del ref
    _settle()
    assert store.objects() == []
    assert _obj_keys(seen) == []
