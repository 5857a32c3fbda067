"""Actors: creation, calls in order, handles, errors, names, kill, restarts, concurrency."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import cloudpickle
import psutil
import pytest

import redray as ray
from redray.exceptions import ActorDiedError, RayActorError

# Workers cannot import this test module: ship its classes and functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(120)


@ray.remote
class Counter:
    def __init__(self, start: int = 0) -> None:
        self.value = start

    def increment(self, by: int = 1) -> int:
        self.value += by
        return self.value

    def get(self) -> int:
        return self.value

    def pid(self) -> int:
        return os.getpid()

    def fail(self) -> None:
        raise ValueError("method failed on purpose")

    def actor_id(self) -> str | None:
        return ray.get_runtime_context().get_actor_id()

    @ray.method(num_returns=2)
    def pair(self) -> tuple[int, int]:
        return self.value, -self.value


@ray.remote
class Caller:
    def call(self, counter: object, times: int) -> int:
        return ray.get([counter.increment.remote() for _ in range(times)])[-1]


@ray.remote
def use_counter(counter: object, times: int) -> int:
    return ray.get([counter.increment.remote() for _ in range(times)])[-1]


@ray.remote(max_concurrency=2)
class Rendezvous:
    def __init__(self) -> None:
        self.barrier = threading.Barrier(2, timeout=60)

    def meet(self) -> int:
        return self.barrier.wait()


@ray.remote
class AsyncActor:
    def __init__(self) -> None:
        self.event = asyncio.Event()

    async def wait(self) -> str:
        await asyncio.wait_for(self.event.wait(), timeout=60)
        return "released"

    async def release(self) -> str:
        self.event.set()
        return "set"


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, namespace="actor-tests")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def _wait_until(condition, timeout: float = 60.0, what: str = "condition") -> None:
    """Poll a condition that only changes in another process (bounded)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _process_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_counter(cluster):
    counter = Counter.remote(10)
    assert ray.get(counter.increment.remote()) == 11
    assert ray.get(counter.increment.remote(by=5)) == 16
    assert ray.get(counter.pair.remote()) == [16, -16]
    assert ray.get(counter.actor_id.remote()) == counter._actor_id.hex()


def test_calls_run_in_submission_order(cluster):
    counter = Counter.remote()
    refs = [counter.increment.remote() for _ in range(1000)]
    assert ray.get(refs) == list(range(1, 1001))


def test_handle_passed_to_a_task(cluster):
    counter = Counter.remote()
    assert ray.get(use_counter.remote(counter, 5)) == 5
    assert ray.get(counter.get.remote()) == 5


def test_handle_passed_to_another_actor(cluster):
    counter = Counter.remote()
    caller = Caller.remote()
    assert ray.get(caller.call.remote(counter, 3)) == 3
    assert ray.get(counter.increment.remote()) == 4


def test_exception_in_method_keeps_actor_alive(cluster):
    counter = Counter.remote()
    with pytest.raises(ValueError, match="on purpose") as info:
        ray.get(counter.fail.remote())
    assert isinstance(info.value, ray.exceptions.RayTaskError)
    assert ray.get(counter.increment.remote()) == 1


def test_type_errors(cluster):
    with pytest.raises(TypeError, match=r"\.remote\(\)"):
        Counter()
    counter = Counter.remote()
    with pytest.raises(TypeError, match=r"increment\.remote\(\)"):
        counter.increment()
    with pytest.raises(TypeError):
        Counter.remote(1, 2, 3)
    with pytest.raises(TypeError):
        counter.increment.remote(1, 2, 3)
    with pytest.raises(AttributeError):
        counter.no_such_method  # noqa: B018
    assert ray.get(counter.increment.remote()) == 1


def test_named_actors(cluster):
    named = Counter.options(name="shared-counter").remote()
    assert ray.get(named.increment.remote()) == 1
    found = ray.get_actor("shared-counter")
    assert ray.get(found.increment.remote()) == 2
    same = Counter.options(name="shared-counter", get_if_exists=True).remote()
    assert ray.get(same.increment.remote()) == 3
    with pytest.raises(ValueError, match="already taken"):
        Counter.options(name="shared-counter").remote()
    with pytest.raises(ValueError):
        ray.get_actor("no-such-actor")
    ray.kill(named)
    with pytest.raises(ValueError):
        ray.get_actor("shared-counter")


def test_detached_actor_from_second_driver(cluster):
    actor = Counter.options(name="detached-counter", lifetime="detached").remote(100)
    assert ray.get(actor.increment.remote()) == 101
    script = textwrap.dedent(
        f"""
        import redray as ray
        ray.init(address={cluster!r}, namespace="actor-tests")
        counter = ray.get_actor("detached-counter")
        print("VALUE", ray.get(counter.increment.remote(), timeout=60))
        ray.shutdown()
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=90
    )
    assert "VALUE 102" in result.stdout, result.stderr
    assert ray.get(actor.increment.remote()) == 103
    ray.kill(actor)


def test_kill(cluster):
    counter = Counter.remote()
    assert ray.get(counter.increment.remote()) == 1
    ray.kill(counter)
    with pytest.raises(RayActorError, match=counter._actor_id.hex()):
        ray.get(counter.increment.remote(), timeout=60)
    with pytest.raises(ActorDiedError):
        ray.get(counter.get.remote(), timeout=60)


def test_restart_after_sigkill(cluster):
    counter = Counter.options(max_restarts=1).remote()
    assert ray.get(counter.increment.remote()) == 1
    pid = ray.get(counter.pid.remote())
    os.kill(pid, signal.SIGKILL)
    assert ray.get(counter.increment.remote(), timeout=60) == 1  # a new instance
    new_pid = ray.get(counter.pid.remote())
    assert new_pid != pid
    os.kill(new_pid, signal.SIGKILL)  # no restarts left
    with pytest.raises(RayActorError, match="SIGKILL"):
        ray.get(counter.increment.remote(), timeout=60)


def test_no_restart_after_sigkill(cluster):
    counter = Counter.options(max_restarts=0).remote()
    pid = ray.get(counter.pid.remote())
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(RayActorError, match="SIGKILL"):
        ray.get(counter.increment.remote(), timeout=60)
    with pytest.raises(RayActorError):
        ray.get(counter.get.remote(), timeout=60)


def test_max_concurrency_runs_calls_at_once(cluster):
    actor = Rendezvous.remote()
    assert sorted(ray.get([actor.meet.remote(), actor.meet.remote()], timeout=90)) == [0, 1]


def test_async_methods_run_concurrently(cluster):
    actor = AsyncActor.remote()
    waiting = actor.wait.remote()
    assert ray.get(actor.release.remote(), timeout=60) == "set"
    assert ray.get(waiting, timeout=60) == "released"


def test_actor_holds_explicit_cpu(cluster):
    total = ray.cluster_resources()["CPU"]
    actor = Counter.options(num_cpus=1).remote()
    assert ray.get(actor.increment.remote()) == 1
    _wait_until(
        lambda: ray.available_resources().get("CPU", 0) == total - 1, what="CPU held by actor"
    )
    ray.kill(actor)
    _wait_until(lambda: ray.available_resources().get("CPU", 0) == total, what="CPU released")


def test_actor_ends_when_last_handle_is_dropped(cluster):
    counter = Counter.remote()
    pid = ray.get(counter.pid.remote())
    assert ray.get(use_counter.remote(counter, 2)) == 2  # a borrowed copy, gone after the task
    assert not _process_gone(pid)
    del counter
    gc.collect()
    _wait_until(lambda: _process_gone(pid), what="the actor process to exit")


@ray.remote
class CrashOnce:
    def crash_once(self, marker: str) -> str:
        if not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        return "survived"


@ray.remote
class FailingInit:
    def __init__(self) -> None:
        raise RuntimeError("init failed on purpose")

    def ping(self) -> str:
        return "pong"


def test_in_flight_call_retried_after_restart(cluster, tmp_path):
    actor = CrashOnce.options(max_restarts=1, max_task_retries=1).remote()
    assert ray.get(actor.crash_once.remote(str(tmp_path / "m")), timeout=60) == "survived"


def test_in_flight_call_fails_without_task_retries(cluster, tmp_path):
    actor = CrashOnce.options(max_restarts=1).remote()
    with pytest.raises(RayActorError, match="SIGKILL"):
        ray.get(actor.crash_once.remote(str(tmp_path / "m")), timeout=60)
    assert ray.get(actor.crash_once.remote(str(tmp_path / "m")), timeout=60) == "survived"


def test_init_failure(cluster):
    actor = FailingInit.remote()
    with pytest.raises(ActorDiedError, match="init failed on purpose") as info:
        ray.get(actor.ping.remote(), timeout=60)
    assert info.value.actor_init_failed


def test_non_detached_actor_ends_with_its_driver(cluster):
    script = textwrap.dedent(
        f"""
        import redray as ray
        ray.init(address={cluster!r}, namespace="actor-tests")

        @ray.remote
        class Pid:
            def pid(self):
                import os
                return os.getpid()

        actor = Pid.options(name="ends-with-driver").remote()
        print("PID", ray.get(actor.pid.remote(), timeout=60), flush=True)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=90
    )
    assert "PID" in result.stdout, result.stderr
    pid = int(result.stdout.split("PID")[1].split()[0])
    with pytest.raises(ValueError):
        ray.get_actor("ends-with-driver")
    _wait_until(lambda: _process_gone(pid), what="the actor process to exit")


def test_named_actor_ends_when_last_handle_is_dropped(cluster):
    named = Counter.options(name="dropped-counter").remote()
    pid = ray.get(named.pid.remote())
    del named
    gc.collect()
    _wait_until(lambda: _process_gone(pid), what="the actor process to exit")
    with pytest.raises(ValueError):
        ray.get_actor("dropped-counter")


@pytest.mark.timeout(120)
def test_generator_method_streams_items(cluster):
    @ray.remote
    class Source:
        def count_to(self, n: int) -> Any:
            yield from range(1, n + 1)

        @ray.method(num_returns="dynamic")
        def negatives(self, n: int) -> Any:
            for i in range(n):
                yield -i

    source = Source.remote()
    assert [ray.get(ref) for ref in source.count_to.remote(4)] == [1, 2, 3, 4]
    assert [ray.get(ref) for ref in ray.get(source.negatives.remote(3))] == [0, -1, -2]
