"""ray.util.ActorPool: ordering, timeouts, idle actors (from Ray's documentation of it).

Runs against redray, or against Ray 2.x with REDRAY_TEST_AGAINST=ray.
"""

from __future__ import annotations

import os

import pytest
from target_ray import ray, wait_for_path

pytestmark = pytest.mark.timeout(120)

ActorPool = ray.util.ActorPool


@ray.remote(num_cpus=0)
class Doubler:
    def double(self, value: int) -> int:
        return 2 * value

    def double_after(self, gate: str, value: int) -> int:
        """Doubles once the test created `gate` (an empty gate name: at once)."""
        if gate and not wait_for_path(gate):
            raise TimeoutError(f"the test never opened the gate {gate}")
        return 2 * value

    def pid(self) -> int:
        return os.getpid()


def _double(actor, value):
    return actor.double.remote(value)


def _gated(actor, item):
    gate, value = item
    return actor.double_after.remote(gate, value)


def test_map_returns_results_in_order(ray_start) -> None:
    pool = ActorPool([Doubler.remote(), Doubler.remote()])
    assert list(pool.map(_double, [1, 2, 3, 4, 5])) == [2, 4, 6, 8, 10]


def test_map_unordered_returns_every_result(ray_start) -> None:
    pool = ActorPool([Doubler.remote(), Doubler.remote()])
    assert sorted(pool.map_unordered(_double, range(10))) == [2 * v for v in range(10)]


def test_map_unordered_returns_a_fast_result_before_a_slow_one(ray_start, workdir) -> None:
    gate = str(workdir / "slow")
    pool = ActorPool([Doubler.remote(), Doubler.remote()])
    results = pool.map_unordered(_gated, [(gate, 1), ("", 2)])
    assert next(results) == 4  # the ungated item, although submitted second
    open(gate, "w").close()
    assert next(results) == 2


def test_get_next_keeps_submission_order_even_when_later_items_finish_first(
    ray_start, workdir
) -> None:
    gate = str(workdir / "first")
    pool = ActorPool([Doubler.remote(), Doubler.remote()])
    pool.submit(_gated, (gate, 1))
    pool.submit(_gated, ("", 2))
    with pytest.raises(TimeoutError):
        pool.get_next(timeout=0.2)  # the first item is not ready: nothing is skipped
    open(gate, "w").close()
    assert [pool.get_next(), pool.get_next()] == [2, 4]
    assert not pool.has_next()


def test_get_next_with_ignore_if_timedout_skips_the_late_item(ray_start, workdir) -> None:
    gate = str(workdir / "never")
    pool = ActorPool([Doubler.remote(), Doubler.remote()])
    pool.submit(_gated, (gate, 1))
    pool.submit(_gated, ("", 2))
    with pytest.raises(TimeoutError, match="ignored"):
        pool.get_next(timeout=0.2, ignore_if_timedout=True)
    assert pool.get_next() == 4
    assert not pool.has_next()
    open(gate, "w").close()  # let the skipped call end


def test_get_next_unordered_times_out_when_nothing_is_ready(ray_start, workdir) -> None:
    gate = str(workdir / "late")
    pool = ActorPool([Doubler.remote()])
    pool.submit(_gated, (gate, 3))
    with pytest.raises(TimeoutError):
        pool.get_next_unordered(timeout=0.2)
    assert pool.has_next()
    open(gate, "w").close()
    assert pool.get_next_unordered() == 6


def test_get_next_after_get_next_unordered_is_refused(ray_start) -> None:
    pool = ActorPool([Doubler.remote()])
    pool.submit(_double, 1)
    pool.submit(_double, 2)
    assert pool.get_next_unordered() == 2  # one actor: the calls run in order
    assert pool.get_next() == 4
    pool.submit(_double, 3)
    assert pool.get_next_unordered() == 6
    with pytest.raises(StopIteration):
        pool.get_next()


def test_submit_beyond_the_pool_waits_for_an_actor(ray_start) -> None:
    pool = ActorPool([Doubler.remote()])
    assert pool.has_free()
    pool.submit(_double, 1)
    pool.submit(_double, 2)  # no idle actor: held by the pool
    assert not pool.has_free()
    assert pool.has_next()
    assert pool.get_next() == 2
    assert pool.get_next() == 4
    assert not pool.has_next()
    assert pool.has_free()


def test_pop_idle_and_push(ray_start) -> None:
    actor = Doubler.remote()
    pool = ActorPool([actor])
    pool.submit(_double, 1)
    assert pool.pop_idle() is None  # the only actor is busy
    assert pool.get_next() == 2
    popped = pool.pop_idle()
    assert popped is not None and not pool.has_free()
    pool.push(popped)
    assert pool.has_free()
    with pytest.raises(ValueError, match="already belongs"):
        pool.push(popped)
    other = Doubler.remote()
    pool.push(other)
    assert sorted(pool.map(lambda a, v: a.pid.remote(), [0, 1])) == sorted(
        ray.get([actor.pid.remote(), other.pid.remote()])
    )


def test_push_gives_a_waiting_item_to_the_new_actor(ray_start, workdir) -> None:
    gate = str(workdir / "busy")
    pool = ActorPool([Doubler.remote()])
    pool.submit(_gated, (gate, 1))
    pool.submit(_double, 5)  # waits: the only actor is busy
    pool.push(Doubler.remote())
    assert pool.get_next_unordered() == 10  # ran on the pushed actor
    open(gate, "w").close()
    assert pool.get_next_unordered() == 2


def test_get_next_on_an_empty_pool_raises_stop_iteration(ray_start) -> None:
    pool = ActorPool([Doubler.remote()])
    with pytest.raises(StopIteration):
        pool.get_next()
    with pytest.raises(StopIteration):
        pool.get_next_unordered()


def test_map_discards_what_earlier_submissions_left(ray_start) -> None:
    pool = ActorPool([Doubler.remote(), Doubler.remote()])
    pool.submit(_double, 100)
    assert list(pool.map(_double, [1, 2])) == [2, 4]
