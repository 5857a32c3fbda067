"""ObjectRefs as asyncio awaitables and concurrent futures, at scale (Ray's "AsyncIO /
concurrency" documentation): `await ref`, `asyncio.gather`, `asyncio.wait_for`,
`ref.future()` with concurrent.futures, and `async for` over streaming generators.

Runs against redray, or against Ray 2.x with REDRAY_TEST_AGAINST=ray.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

import numpy as np
import pytest
from target_ray import ray, wait_for_path

pytestmark = pytest.mark.timeout(180)


@ray.remote
def identity(value):
    return value


@ray.remote
def fail(message: str) -> None:
    raise ValueError(message)


@ray.remote
def after_gate(gate: str, value: int) -> int:
    if not wait_for_path(gate):
        raise TimeoutError(f"the test never opened the gate {gate}")
    return value


@ray.remote
def count_to(n: int):
    for i in range(n):  # noqa: UP028 (Ray calls .send() on the generator of a task)
        yield i


@ray.remote
def count_then_fail(n: int):
    for i in range(n):  # noqa: UP028 (Ray calls .send() on the generator of a task)
        yield i
    raise ValueError("stream broke")


@ray.remote
class AsyncSummer:
    async def sum_of(self, boxed_refs: list) -> int:
        """Awaits refs it borrowed (passed inside a list, so not resolved by the caller)."""
        values = await asyncio.gather(*boxed_refs)
        return sum(values)


def test_await_ref_returns_the_value(ray_start) -> None:
    async def main() -> int:
        return await identity.remote(41)

    assert asyncio.run(main()) == 41


def test_await_ref_of_a_failed_task_raises_its_error(ray_start) -> None:
    async def main() -> None:
        await fail.remote("boom")

    with pytest.raises(ValueError, match="boom"):
        asyncio.run(main())


def test_gather_over_10000_refs_uses_a_bounded_number_of_threads(ray_start) -> None:
    ray.get(identity.remote(0))  # the cluster and this process's threads are up
    before = threading.active_count()
    peak = before

    async def main() -> list[int]:
        nonlocal peak
        refs = [identity.remote(i) for i in range(10_000)]
        gathering = asyncio.ensure_future(asyncio.gather(*refs))
        while not gathering.done():
            peak = max(peak, threading.active_count())
            await asyncio.sleep(0.005)
        return gathering.result()

    assert asyncio.run(main()) == list(range(10_000))
    assert peak <= before + 2, f"{peak} threads during the gather, {before} before"


def test_wait_for_times_out_on_a_pending_ref_and_the_ref_stays_usable(ray_start, workdir) -> None:
    gate = str(workdir / "gate")
    ref = after_gate.remote(gate, 7)

    async def main() -> int:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(ref, 0.2)
        open(gate, "w").close()
        return await asyncio.wait_for(ref, 60)

    assert asyncio.run(main()) == 7


def test_future_works_with_concurrent_futures_wait_and_as_completed(ray_start) -> None:
    futures = [identity.remote(i).future() for i in range(200)]
    assert all(isinstance(f, concurrent.futures.Future) for f in futures)
    done, not_done = concurrent.futures.wait(futures, timeout=60)
    assert len(done) == 200 and not not_done
    again = [identity.remote(i).future() for i in range(200)]
    results = [f.result() for f in concurrent.futures.as_completed(again, timeout=60)]
    assert sorted(results) == list(range(200))


def test_future_of_a_failed_task_carries_its_error(ray_start) -> None:
    future = fail.remote("future-boom").future()
    with pytest.raises(ValueError, match="future-boom"):
        future.result(timeout=60)


def test_future_of_a_large_object(ray_start) -> None:
    array = np.arange(2_000_000)
    result = ray.put(array).future().result(timeout=60)
    assert np.array_equal(result, array)


def test_futures_of_10000_refs_use_a_bounded_number_of_threads(ray_start) -> None:
    ray.get(identity.remote(0))
    before = threading.active_count()
    futures = [identity.remote(i).future() for i in range(10_000)]
    during = threading.active_count()
    assert [f.result(timeout=120) for f in futures] == list(range(10_000))
    assert during <= before + 2


def test_an_async_actor_awaits_refs_it_borrowed(ray_start) -> None:
    refs = [identity.remote(i) for i in range(50)]
    assert ray.get(AsyncSummer.remote().sum_of.remote(refs)) == sum(range(50))


def test_async_for_over_a_streaming_generator(ray_start) -> None:
    async def main() -> list[int]:
        return [await ref async for ref in count_to.remote(20)]

    assert asyncio.run(main()) == list(range(20))


def test_async_for_over_a_stream_that_fails_ends_with_its_error(ray_start) -> None:
    async def main() -> list:
        values: list = []
        async for ref in count_then_fail.remote(3):
            try:
                values.append(await ref)
            except ValueError as error:
                values.append(str(error))
        return values

    values = asyncio.run(main())
    assert values[:3] == [0, 1, 2] and "stream broke" in values[3] and len(values) == 4


def test_gather_mixes_ready_and_pending_refs(ray_start, workdir) -> None:
    gate = str(workdir / "mixed")
    ready = ray.put("here")
    ray.get(ready)

    async def main() -> list:
        pending = after_gate.remote(gate, 3)
        gathering = asyncio.gather(ready, pending)
        await asyncio.sleep(0)
        open(gate, "w").close()
        return await gathering

    assert asyncio.run(main()) == ["here", 3]
