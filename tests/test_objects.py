"""Objects end to end: put/get, get timeouts, wait, large numpy arrays, ObjectRef identity.

Runs against redray, or against Ray 2.x with REDRAY_TEST_AGAINST=ray.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from fractions import Fraction

import numpy as np
import pytest
from target_ray import CONDITION_TIMEOUT, gated, ray


@dataclasses.dataclass
class Point:
    x: int
    y: int


@ray.remote
def identity(value):
    return value


VALUES = {
    "int": 7,
    "negative-big-int": -(2**100),
    "float": 1.5,
    "complex": 2 + 3j,
    "str": "héllo",
    "empty-str": "",
    "bytes": b"\x00\x01bytes",
    "none": None,
    "bool": True,
    "list": [1, "two", 3.0],
    "tuple": (1, (2, 3)),
    "dict": {"a": [1, 2], 3: {"nested": None}},
    "set": {1, 2, 3},
    "frozenset": frozenset({"a"}),
    "ordered-dict": collections.OrderedDict([("b", 1), ("a", 2)]),
    "fraction": Fraction(1, 3),
    "dataclass": Point(1, 2),
    "small-array": np.arange(12, dtype=np.int32).reshape(3, 4),
    "array-in-dict": {"w": np.ones(5), "b": [np.zeros(2)]},
    "large-bytes": b"x" * (2 * 1024 * 1024),  # past any inline-size threshold
    "large-str": "y" * (1024 * 1024),
    "large-list": list(range(200_000)),
}


def _equal(a, b):
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, dict):
        return type(a) is type(b) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_equal, a, b))
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("value", list(VALUES.values()), ids=list(VALUES))
def test_put_get_round_trip(ray_start, value):
    ref = ray.put(value)
    assert isinstance(ref, ray.ObjectRef)
    assert _equal(value, ray.get(ref))
    # The same value through a task: as an argument and as a return value.
    assert _equal(value, ray.get(identity.remote(value)))
    assert _equal(value, ray.get(identity.remote(ref)))


def test_get_of_a_list(ray_start):
    refs = [ray.put(i) for i in range(5)] + [identity.remote(i) for i in range(5, 10)]
    assert ray.get(refs) == list(range(10))
    assert ray.get(list(reversed(refs))) == list(reversed(range(10)))
    assert ray.get([]) == []
    same = ray.put("same")
    assert ray.get([same, same]) == ["same", "same"]


def test_get_rejects_what_is_not_a_ref(ray_start):
    with pytest.raises(ValueError):
        ray.get("not a ref")
    with pytest.raises(ValueError):
        ray.get(123)


def test_get_timeout_raises_get_timeout_error(ray_start, workdir):
    gate = workdir / "gate"
    ref = gated.remote(str(gate), "done")
    try:
        with pytest.raises(ray.exceptions.GetTimeoutError) as info:
            ray.get(ref, timeout=0.5)
        assert isinstance(info.value, TimeoutError)
        with pytest.raises(TimeoutError):
            ray.get([ray.put(1), ref], timeout=0)
    finally:
        gate.touch()
    assert ray.get(ref, timeout=CONDITION_TIMEOUT) == "done"
    # A ready object never times out, even with timeout=0.
    assert ray.get(ray.put(3), timeout=0) == 3


def test_wait_returns_ready_and_remaining_in_input_order(ray_start, workdir):
    gate = workdir / "gate"
    pending = [gated.remote(str(gate), i) for i in range(2)]
    done = [ray.put(i) for i in range(3)]
    refs = [done[0], pending[0], done[1], pending[1], done[2]]
    try:
        ready, remaining = ray.wait(refs, num_returns=3)
        assert ready == done
        assert remaining == pending
        # More are ready than asked for: any 2 of them, still listed in input order.
        ready, remaining = ray.wait(refs, num_returns=2)
        assert len(ready) == 2 and set(ready) <= set(done)
        assert ready == [ref for ref in refs if ref in ready]
        assert remaining == [ref for ref in refs if ref not in ready]
        # Timeout (seconds): fewer than num_returns are ready when it expires.
        ready, remaining = ray.wait(refs, num_returns=5, timeout=0.5)
        assert ready == done
        assert remaining == pending
        ready, remaining = ray.wait(pending, timeout=0)
        assert ready == [] and remaining == pending
    finally:
        gate.touch()
    ready, remaining = ray.wait(refs, num_returns=5, timeout=CONDITION_TIMEOUT)
    assert ready == refs and remaining == []


def test_wait_default_returns_one(ray_start):
    refs = [ray.put(i) for i in range(4)]
    ready, remaining = ray.wait(refs)
    assert len(ready) == 1 and len(remaining) == 3
    assert set(ready) | set(remaining) == set(refs)
    assert remaining == [ref for ref in refs if ref not in ready]


def test_wait_timeout_is_in_seconds(ray_start, workdir):
    # The gate opens a little after wait() starts: a 30 s timeout must be long enough for
    # the task to finish (it would not be if 30 were read as milliseconds).
    gate = workdir / "gate"
    ref = gated.remote(str(gate), 1)
    opener = threading.Timer(0.5, gate.touch)
    opener.start()
    try:
        ready, remaining = ray.wait([ref], timeout=30)
    finally:
        opener.join()
        gate.touch()
    assert ready == [ref] and remaining == []


def test_wait_processes_results_in_completion_order(ray_start, workdir):
    # The guide's "process results in completion order" loop, with tasks finishing in the
    # reverse of their submission order (each gate opened only after the previous result).
    gates = [workdir / f"gate{i}" for i in range(3)]
    # Half a CPU each, so that all three can run at once on 2 CPUs.
    refs = [gated.options(num_cpus=0.5).remote(str(gate), i) for i, gate in enumerate(gates)]
    unfinished, order = refs, []
    try:
        for gate in reversed(gates):
            gate.touch()
            finished, unfinished = ray.wait(unfinished, num_returns=1)
            order.append(ray.get(finished[0]))
    finally:
        for gate in gates:
            gate.touch()
    assert order == [2, 1, 0]
    assert unfinished == []


def test_wait_rejects_bad_input(ray_start):
    a, b = ray.put(1), ray.put(2)
    with pytest.raises(ValueError):
        ray.wait([a, a])  # duplicates
    with pytest.raises(ValueError):
        ray.wait([a, b], num_returns=3)  # more than given
    with pytest.raises(ValueError):
        ray.wait([a, b], num_returns=0)
    with pytest.raises(TypeError):
        ray.wait(a)  # a ref, not a list of refs
    with pytest.raises(TypeError):
        ray.wait([a, "not a ref"])


@pytest.mark.timeout(180)
def test_large_numpy_array_round_trips_read_only(ray_start):
    array = np.random.default_rng(0).random(50 * 1024 * 1024 // 8)  # 50 MB of float64
    ref = ray.put(array)
    back = ray.get(ref)
    assert back.dtype == array.dtype and back.shape == array.shape
    assert np.array_equal(back, array)
    assert not back.flags.writeable  # zero-copy from the immutable object store
    with pytest.raises(ValueError):
        back[0] = 1.0
    copy = back.copy()  # the documented way to mutate it
    copy[0] = -1.0
    assert copy[0] == -1.0 and back[0] == array[0]

    @ray.remote
    def checksum(values):
        return float(values.sum()), values.flags.writeable

    @ray.remote
    def make(n):
        return np.arange(n, dtype=np.float64)

    total, writeable = ray.get(checksum.remote(ref))
    assert total == pytest.approx(float(array.sum())) and writeable is False
    made = ray.get(make.remote(array.size))
    assert not made.flags.writeable
    assert np.array_equal(made, np.arange(array.size, dtype=np.float64))


def test_put_of_an_object_ref_raises(ray_start):
    ref = ray.put(1)
    with pytest.raises(TypeError):
        ray.put(ref)
    # Wrapped in a list, as the error message suggests, it is allowed.
    [inner] = ray.get(ray.put([ref]))
    assert ray.get(inner) == 1


def test_object_ref_equality_hash_and_hex(ray_start):
    ref, other = ray.put("a"), ray.put("a")
    [same] = ray.get(identity.remote([ref]))  # the same ref, back from another process
    assert same is not ref
    assert same == ref and hash(same) == hash(ref)
    assert same.hex() == ref.hex()
    assert ref != other and ref.hex() != other.hex()
    assert isinstance(ref.hex(), str)
    int(ref.hex(), 16)
    assert len({ref, same, other}) == 2
    assert {ref: 1}[same] == 1
    assert ray.get(same) == "a"
    assert ref.hex() in repr(ref)


def test_object_stays_available_while_referenced(ray_start):
    ref = ray.put(np.arange(1_000_000))
    refs_in_list = ray.put([ref])
    del ref
    [inner] = ray.get(refs_in_list)
    assert int(ray.get(inner)[-1]) == 999_999


def test_get_from_many_threads(ray_start):
    refs = [identity.remote(i) for i in range(20)]
    results = {}

    def fetch(index):
        results[index] = ray.get(refs[index], timeout=CONDITION_TIMEOUT)

    threads = [threading.Thread(target=fetch, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {i: i for i in range(20)}
