"""ray.util.queue.Queue: an actor-backed FIFO queue shared by the driver, tasks and actors
(from Ray's documentation of it).

Runs against redray, or against Ray 2.x with REDRAY_TEST_AGAINST=ray.
"""

from __future__ import annotations

import asyncio
import importlib

import pytest
from target_ray import ray

pytestmark = pytest.mark.timeout(120)

util_queue = importlib.import_module(f"{ray.__name__}.util.queue")
Queue, Empty, Full = util_queue.Queue, util_queue.Empty, util_queue.Full


@ray.remote
def produce(q, items: list) -> None:
    for item in items:
        q.put(item)


@ray.remote
def consume(q, count: int) -> list:
    return [q.get(timeout=60) for _ in range(count)]


@ray.remote
class Consumer:
    def __init__(self, q) -> None:
        self.q = q

    def take(self, count: int) -> list:
        return [self.q.get(timeout=60) for _ in range(count)]


def test_put_then_get_is_first_in_first_out(ray_start) -> None:
    q = Queue()
    for item in range(10):
        q.put(item)
    assert [q.get() for _ in range(10)] == list(range(10))


def test_size_empty_full_and_maxsize(ray_start) -> None:
    q = Queue(maxsize=2)
    assert q.maxsize == 2
    assert q.empty() and not q.full() and q.size() == 0 and len(q) == 0
    q.put("a")
    q.put("b")
    assert q.full() and not q.empty() and q.qsize() == 2 and len(q) == 2


def test_get_on_an_empty_queue_raises_empty(ray_start) -> None:
    q = Queue()
    with pytest.raises(Empty):
        q.get(block=False)
    with pytest.raises(Empty):
        q.get_nowait()
    with pytest.raises(Empty):
        q.get(timeout=0.2)


def test_put_on_a_full_queue_raises_full(ray_start) -> None:
    q = Queue(maxsize=1)
    q.put_nowait(1)
    with pytest.raises(Full):
        q.put(2, block=False)
    with pytest.raises(Full):
        q.put_nowait(2)
    with pytest.raises(Full):
        q.put(2, timeout=0.2)
    assert q.get() == 1


def test_negative_timeouts_are_refused(ray_start) -> None:
    q = Queue()
    with pytest.raises(ValueError):
        q.put(1, timeout=-1)
    with pytest.raises(ValueError):
        q.get(timeout=-1)


def test_a_blocked_get_is_woken_by_a_put_from_a_task(ray_start) -> None:
    q = Queue()
    produce.remote(q, ["late"])
    assert q.get(timeout=60) == "late"


def test_tasks_and_actors_share_the_queue_through_its_handle(ray_start) -> None:
    q = Queue()
    taken_by_task = consume.remote(q, 3)
    taken_by_actor = Consumer.remote(q).take.remote(3)
    ray.get(produce.remote(q, list(range(6))))
    taken = ray.get(taken_by_task) + ray.get(taken_by_actor)
    assert sorted(taken) == list(range(6))
    assert q.empty()


def test_batches_are_all_or_nothing(ray_start) -> None:
    q = Queue(maxsize=3)
    q.put_nowait_batch([1, 2])
    with pytest.raises(Full):
        q.put_nowait_batch([3, 4])  # only one would fit: none is added
    assert q.qsize() == 2
    with pytest.raises(Empty):
        q.get_nowait_batch(3)
    assert q.get_nowait_batch(2) == [1, 2]
    with pytest.raises(TypeError):
        q.put_nowait_batch(5)
    with pytest.raises(TypeError):
        q.get_nowait_batch("2")
    with pytest.raises(ValueError):
        q.get_nowait_batch(-1)


def test_async_put_and_get(ray_start) -> None:
    q = Queue(maxsize=1)

    async def main() -> list:
        await q.put_async("x")
        with pytest.raises(Full):
            await q.put_async("y", block=False)
        with pytest.raises(Full):
            await q.put_async("y", timeout=0.2)
        first = await q.get_async()
        with pytest.raises(Empty):
            await q.get_async(block=False)
        with pytest.raises(Empty):
            await q.get_async(timeout=0.2)
        waiting = asyncio.ensure_future(q.get_async(timeout=60))
        await q.put_async("z")
        return [first, await waiting]

    assert asyncio.run(main()) == ["x", "z"]


def test_shutdown_ends_the_queue_actor(ray_start) -> None:
    q = Queue()
    actor = q.actor
    q.put(1)
    q.shutdown()
    assert q.actor is None
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(actor.qsize.remote(), timeout=60)
    forced = Queue()
    forced.shutdown(force=True)
    assert forced.actor is None


def test_actor_options_reach_the_queue_actor(ray_start) -> None:
    q = Queue(actor_options={"name": "named-queue"})
    q.put(5)
    assert ray.get(ray.get_actor("named-queue").qsize.remote()) == 1
    q.shutdown()
