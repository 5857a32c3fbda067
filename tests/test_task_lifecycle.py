"""Retries, cancellation and generators, as Ray 2.x behaves (run against `ray_start`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest


def _count_runs(marker: Path) -> int:
    return len(marker.read_text()) if marker.exists() else 0


def test_task_is_retried_after_its_worker_dies(ray_start: Any, tmp_path: Path) -> None:
    ray = ray_start
    marker = tmp_path / "runs"

    @ray.remote(max_retries=2)
    def dies_first_time(path: str) -> str:
        with open(path, "a") as file:
            file.write("x")
        if len(Path(path).read_text()) == 1:
            os._exit(1)
        return "survived"

    assert ray.get(dies_first_time.remote(str(marker))) == "survived"
    assert _count_runs(marker) == 2


def test_worker_crash_without_retries_raises_worker_crashed_error(ray_start: Any) -> None:
    ray = ray_start

    @ray.remote(max_retries=0)
    def crash() -> None:
        os._exit(1)

    with pytest.raises(ray.exceptions.WorkerCrashedError):
        ray.get(crash.remote())


def test_retry_exceptions_list_retries_only_those_classes(ray_start: Any, tmp_path: Path) -> None:
    ray = ray_start
    marker = tmp_path / "runs"

    @ray.remote(max_retries=3, retry_exceptions=[KeyError])
    def flaky(path: str) -> int:
        with open(path, "a") as file:
            file.write("x")
        if len(Path(path).read_text()) < 3:
            raise KeyError("not yet")
        return 3

    assert ray.get(flaky.remote(str(marker))) == 3
    assert _count_runs(marker) == 3

    other = tmp_path / "other"

    @ray.remote(max_retries=3, retry_exceptions=[KeyError])
    def wrong_kind(path: str) -> None:
        with open(path, "a") as file:
            file.write("x")
        raise ValueError("not retried")

    with pytest.raises(ValueError):
        ray.get(wrong_kind.remote(str(other)))
    assert _count_runs(other) == 1


def test_cancel_running_task_raises_task_cancelled_error(ray_start: Any, tmp_path: Path) -> None:
    ray = ray_start
    started = tmp_path / "started"

    @ray.remote
    def blocking(path: str) -> None:
        Path(path).touch()
        import time

        time.sleep(10e6)

    ref = blocking.remote(str(started))
    ready, _ = ray.wait([ray.put(None)], timeout=0)  # the cluster is up
    assert ready
    while not started.exists():  # the task is running
        ray.wait([ref], timeout=0.05)
    ray.cancel(ref)
    with pytest.raises(ray.exceptions.TaskCancelledError):
        ray.get(ref, timeout=60)


@pytest.mark.parametrize("force", [False, True])
def test_cancel_pending_task_it_never_runs(ray_start: Any, tmp_path: Path, force: bool) -> None:
    ray = ray_start
    ran = tmp_path / "ran"

    @ray.remote(num_cpus=100)  # infeasible: stays pending
    def never(path: str) -> None:
        Path(path).touch()

    with pytest.warns(UserWarning):
        ref = never.remote(str(ran))
    ray.cancel(ref, force=force)
    with pytest.raises(ray.exceptions.TaskCancelledError):
        ray.get(ref, timeout=60)
    assert not ran.exists()


def test_force_cancel_kills_the_worker(ray_start: Any, tmp_path: Path) -> None:
    ray = ray_start
    started = tmp_path / "started"

    @ray.remote
    def stubborn(path: str) -> None:
        Path(path).write_text(str(os.getpid()))
        while True:
            try:
                import time

                time.sleep(1)
            except KeyboardInterrupt:
                pass  # ignores polite cancellation

    ref = stubborn.remote(str(started))
    while not started.exists() or not started.read_text():
        ray.wait([ref], timeout=0.05)
    ray.cancel(ref, force=True)
    with pytest.raises(ray.exceptions.TaskCancelledError):
        ray.get(ref, timeout=60)

    @ray.remote
    def still_works() -> int:
        return 1

    assert ray.get(still_works.remote()) == 1


def test_cancel_finished_task_does_nothing(ray_start: Any) -> None:
    ray = ray_start

    @ray.remote
    def done() -> int:
        return 7

    ref = done.remote()
    assert ray.get(ref) == 7
    ray.cancel(ref)
    assert ray.get(ref) == 7


def test_streaming_generator_yields_refs_in_order(ray_start: Any) -> None:
    ray = ray_start

    @ray.remote
    def numbers(count: int) -> Any:
        for i in range(count):
            yield i * 10

    assert [ray.get(ref) for ref in numbers.remote(5)] == [0, 10, 20, 30, 40]

    @ray.remote(num_returns="streaming")
    def explicit() -> Any:
        yield "a"
        yield "b"

    generator = explicit.remote()
    assert ray.get(next(generator)) == "a"
    assert ray.get(next(generator)) == "b"
    with pytest.raises(StopIteration):
        next(generator)
    with pytest.raises(StopIteration):
        next(generator)


def test_generator_exception_surfaces_at_its_item(ray_start: Any) -> None:
    ray = ray_start

    @ray.remote
    def breaks_after_two() -> Any:
        yield 1
        yield 2
        raise ValueError("third item failed")

    generator = breaks_after_two.remote()
    assert ray.get(next(generator)) == 1
    assert ray.get(next(generator)) == 2
    with pytest.raises(ValueError, match="third item failed"):
        ray.get(next(generator))
    with pytest.raises(StopIteration):
        next(generator)


def test_dynamic_generator_returns_one_ref_to_all_items(ray_start: Any) -> None:
    ray = ray_start

    @ray.remote(num_returns="dynamic")
    def squares(count: int) -> Any:
        for i in range(count):
            yield i * i

    refs = ray.get(squares.remote(4))
    assert [ray.get(ref) for ref in refs] == [0, 1, 4, 9]


def test_async_iteration_of_a_streaming_generator(ray_start: Any) -> None:
    import asyncio

    ray = ray_start

    @ray.remote
    def letters() -> Any:
        yield from "xyz"

    async def collect() -> list[str]:
        return [await ref async for ref in letters.remote()]

    assert asyncio.run(collect()) == ["x", "y", "z"]


def test_cancel_task_waiting_for_its_dependencies(ray_start: Any, tmp_path: Path) -> None:
    ray = ray_start
    gate = tmp_path / "gate"
    ran = tmp_path / "ran"

    @ray.remote
    def upstream(path: str) -> int:
        from target_ray import wait_for_path

        wait_for_path(path)
        return 1

    @ray.remote
    def downstream(value: int, path: str) -> None:
        Path(path).touch()

    first = upstream.remote(str(gate))
    dependent = downstream.remote(first, str(ran))
    ray.cancel(dependent)
    gate.touch()
    assert ray.get(first) == 1
    with pytest.raises(ray.exceptions.TaskCancelledError):
        ray.get(dependent, timeout=60)
    assert not ran.exists()


def test_cancel_is_recursive_by_default(ray_start: Any, tmp_path: Path) -> None:
    ray = ray_start
    started = tmp_path / "child-started"
    interrupted = tmp_path / "child-interrupted"

    @ray.remote
    def child(started_path: str, interrupted_path: str) -> None:
        import time

        Path(started_path).touch()
        try:
            time.sleep(10e6)
        finally:
            Path(interrupted_path).touch()

    @ray.remote
    def parent(started_path: str, interrupted_path: str) -> None:
        ray.get(child.remote(started_path, interrupted_path))

    ref = parent.remote(str(started), str(interrupted))
    from target_ray import wait_for_path

    assert wait_for_path(started)
    ray.cancel(ref)
    with pytest.raises(ray.exceptions.TaskCancelledError):
        ray.get(ref, timeout=60)
    assert wait_for_path(interrupted)


def test_cancel_without_recursive_leaves_the_children_running(
    ray_start: Any, tmp_path: Path
) -> None:
    ray = ray_start
    started, gate, finished = tmp_path / "started", tmp_path / "gate", tmp_path / "finished"

    @ray.remote
    def child(started_path: str, gate_path: str, finished_path: str) -> None:
        from target_ray import wait_for_path

        Path(started_path).touch()
        if wait_for_path(gate_path):
            Path(finished_path).touch()

    @ray.remote
    def parent(started_path: str, gate_path: str, finished_path: str) -> None:
        ray.get(child.remote(started_path, gate_path, finished_path))

    ref = parent.remote(str(started), str(gate), str(finished))
    from target_ray import wait_for_path

    assert wait_for_path(started)
    ray.cancel(ref, recursive=False)
    with pytest.raises(ray.exceptions.TaskCancelledError):
        ray.get(ref, timeout=60)
    gate.touch()
    assert wait_for_path(finished)  # the child ran to its end
