"""ray.util.multiprocessing.Pool: multiprocessing.Pool's interface on the cluster (from Ray's
documentation of it and Python's multiprocessing.Pool documentation).

Runs against redray, or against Ray 2.x with REDRAY_TEST_AGAINST=ray.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import threading

import pytest
from target_ray import TESTING_RAY, ray, wait_for_path, wait_until

pytestmark = pytest.mark.timeout(120)

Pool = importlib.import_module(f"{ray.__name__}.util.multiprocessing").Pool

_initialized_with: tuple = ()

#: Where Ray 2.60 departs from multiprocessing.Pool, which redray follows.
ray_callback_differs = pytest.mark.skipif(
    TESTING_RAY,
    reason="Ray 2.60 passes its PoolTaskError wrapper to error_callback, and map_async's "
    "callback gets the results in completion order; multiprocessing passes the exception "
    "and the results in order",
)


def square(x: int) -> int:
    return x * x


def add(a: int, b: int) -> int:
    return a + b


def pid_of(_: object) -> int:
    return os.getpid()


def fail_on(x: int) -> int:
    if x == 3:
        raise ValueError(f"no threes ({x})")
    return x


def remember(*args: object) -> None:
    global _initialized_with
    _initialized_with = args


def initialized_with(_: object) -> tuple:
    return _initialized_with


def square_after(item: tuple[str, int]) -> int:
    gate, x = item
    if gate and not wait_for_path(gate):
        raise TimeoutError(f"the test never opened the gate {gate}")
    return x * x


def test_map_starmap_and_apply(ray_start) -> None:
    with Pool(processes=2) as pool:
        assert pool.map(square, range(10)) == [x * x for x in range(10)]
        assert pool.map(square, range(10), chunksize=3) == [x * x for x in range(10)]
        assert pool.starmap(add, [(1, 2), (3, 4)]) == [3, 7]
        assert pool.apply(add, (2, 3)) == 5
        assert pool.apply(add, (2,), {"b": 5}) == 7
        assert pool.map(square, []) == []


def test_async_results_get_wait_ready_successful(ray_start) -> None:
    with Pool(processes=2) as pool:
        result = pool.map_async(square, range(5))
        result.wait(timeout=60)
        assert result.ready() and result.successful()
        assert result.get(timeout=60) == [0, 1, 4, 9, 16]
        assert pool.apply_async(square, (7,)).get(timeout=60) == 49
        assert pool.starmap_async(add, [(1, 1), (2, 2)]).get(timeout=60) == [2, 4]


def test_an_unready_result_times_out_and_is_not_yet_successful(ray_start, workdir) -> None:
    gate = str(workdir / "gate")
    with Pool(processes=1) as pool:
        result = pool.apply_async(square_after, ((gate, 3),))
        with pytest.raises(multiprocessing.TimeoutError):
            result.get(timeout=0.2)
        assert not result.ready()
        with pytest.raises(ValueError):
            result.successful()
        open(gate, "w").close()
        assert result.get(timeout=60) == 9


@ray_callback_differs
def test_errors_reach_get_and_the_error_callback(ray_start) -> None:
    with Pool(processes=2) as pool:
        with pytest.raises(ValueError, match="no threes"):
            pool.map(fail_on, range(6))
        with pytest.raises(ValueError, match="no threes"):
            pool.apply(fail_on, (3,))
        errors: list = []
        result = pool.map_async(fail_on, range(6), error_callback=errors.append)
        result.wait(timeout=60)
        assert not result.successful()
        assert len(errors) == 1 and isinstance(errors[0], ValueError)
        assert pool.map(fail_on, [1, 2]) == [1, 2]  # the processes are still there


@ray_callback_differs
def test_callbacks_run_before_get_returns(ray_start) -> None:
    with Pool(processes=2) as pool:
        seen: list = []
        result = pool.map_async(square, [1, 2, 3], callback=seen.append)
        assert result.get(timeout=60) == [1, 4, 9]
        assert seen == [[1, 4, 9]]
        done = threading.Event()
        pool.apply_async(square, (4,), callback=lambda value: done.set()).get(timeout=60)
        assert done.is_set()


def test_imap_keeps_order_and_imap_unordered_does_not(ray_start, workdir) -> None:
    gate = str(workdir / "slow")
    with Pool(processes=2) as pool:
        assert list(pool.imap(square, range(7))) == [x * x for x in range(7)]
        assert list(pool.imap(square, range(7), chunksize=3)) == [x * x for x in range(7)]
        assert list(pool.imap(square, (x for x in range(4)))) == [0, 1, 4, 9]
        results = pool.imap_unordered(square_after, [(gate, 2), ("", 3)])
        assert next(results) == 9  # the second item, not held up by the first
        open(gate, "w").close()
        assert next(results) == 4
        with pytest.raises(StopIteration):
            next(results)


def test_imap_next_times_out(ray_start, workdir) -> None:
    gate = str(workdir / "imap")
    with Pool(processes=1) as pool:
        results = pool.imap(square_after, [(gate, 5)])
        with pytest.raises(multiprocessing.TimeoutError):
            results.next(timeout=0.2)
        open(gate, "w").close()
        assert results.next(timeout=60) == 25


def test_initializer_runs_in_every_process(ray_start) -> None:
    with Pool(processes=2, initializer=remember, initargs=("ready", 1)) as pool:
        assert set(pool.map(initialized_with, range(8), chunksize=1)) == {("ready", 1)}


def test_processes_sets_the_number_of_pool_processes(ray_start) -> None:
    with Pool(processes=2) as pool:
        pids = set(pool.map(pid_of, range(40), chunksize=1))
        assert len(pids) == 2 and os.getpid() not in pids
    with Pool(processes=1) as pool:
        assert len(set(pool.map(pid_of, range(10), chunksize=1))) == 1


def test_more_processes_than_cpus_is_refused(ray_start) -> None:
    with pytest.raises(ValueError):
        Pool(processes=int(ray.cluster_resources()["CPU"]) + 1)
    with pytest.raises(ValueError):
        Pool(processes=0)


def test_close_then_join_finishes_outstanding_work(ray_start) -> None:
    pool = Pool(processes=2)
    result = pool.map_async(square, range(20))
    pool.close()
    with pytest.raises(ValueError):
        pool.map(square, [1])
    pool.join()
    assert result.get(timeout=60) == [x * x for x in range(20)]


def test_join_before_close_is_refused(ray_start) -> None:
    pool = Pool(processes=1)
    with pytest.raises(ValueError):
        pool.join()
    pool.terminate()
    pool.join()


def test_terminate_stops_the_processes(ray_start) -> None:
    pool = Pool(processes=2)
    pids = set(pool.map(pid_of, range(10), chunksize=1))
    pool.terminate()
    pool.join()
    with pytest.raises(ValueError):
        pool.apply(square, (1,))
    assert wait_until(lambda: not any(_alive(pid) for pid in pids))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie has exited
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[-1][0] != "Z"
    except OSError:
        return False


def test_maxtasksperchild_replaces_a_process_after_its_batches(ray_start) -> None:
    with Pool(processes=1, maxtasksperchild=1) as pool:
        pids = pool.map(pid_of, range(3), chunksize=1)
    assert len(set(pids)) == 3
