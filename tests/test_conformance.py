"""Small behaviours where redray must match Ray 2.x, found by running the same snippets on
both (named actors seen from tasks, read-only arrays, cancel of puts and generators, ...).

Runs against redray, or against Ray 2.x with REDRAY_TEST_AGAINST=ray.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from target_ray import ray

pytestmark = pytest.mark.timeout(120)


@ray.remote
class Named:
    def value(self) -> int:
        return 7


@ray.remote
def value_of_named(name: str) -> tuple[int, str]:
    return ray.get(ray.get_actor(name).value.remote()), ray.get_runtime_context().namespace


def test_a_task_sees_the_named_actors_of_its_job(ray_start) -> None:
    actor = Named.options(name="seen-from-task").remote()
    assert ray.get(actor.value.remote()) == 7
    value, namespace = ray.get(value_of_named.remote("seen-from-task"))
    assert value == 7 and namespace == ray.get_runtime_context().namespace


def test_arrays_from_get_are_read_only_whatever_their_size(ray_start) -> None:
    for size in (3, 1000, 10**6):
        array = ray.get(ray.put(np.arange(size)))
        assert not array.flags.writeable
        with pytest.raises(ValueError):
            array[0] = 5


def test_cancelling_a_put_ref_does_nothing(ray_start) -> None:
    ref = ray.put(5)
    ray.cancel(ref)
    assert ray.get(ref) == 5


@ray.remote(num_returns=3)
def three_from_a_generator():
    yield from [0, 1, 2]


def test_a_generator_function_with_num_returns_fills_its_returns(ray_start) -> None:
    assert ray.get(three_from_a_generator.remote()) == [0, 1, 2]


@ray.remote(num_returns="streaming")
def slow_stream():
    for i in range(1000):
        yield i
        time.sleep(0.05)


def test_a_cancelled_stream_raises_instead_of_ending_quietly(ray_start) -> None:
    stream = slow_stream.remote()
    assert ray.get(next(stream)) == 0
    ray.cancel(stream)
    with pytest.raises(ray.exceptions.TaskCancelledError):
        for ref in stream:
            ray.get(ref)


def test_get_actor_wants_a_str(ray_start) -> None:
    with pytest.raises(TypeError):
        ray.get_actor(123)


@ray.remote
def assigned() -> dict:
    return ray.get_runtime_context().get_assigned_resources()


def test_assigned_resources_are_floats(ray_start) -> None:
    assert ray.get(assigned.remote()) == {"CPU": 1.0}
    assert all(isinstance(v, float) for v in ray.get(assigned.remote()).values())


def test_remote_applied_wrongly_is_an_assertion_error_as_in_ray(ray_start) -> None:
    with pytest.raises(AssertionError):
        ray.remote(1)


@ray.remote
def env_var(name: str) -> str | None:
    import os

    return os.environ.get(name)


def test_runtime_env_vars_reach_the_task_and_its_children(ray_start) -> None:
    with_env = env_var.options(runtime_env={"env_vars": {"CONFORMANCE_FOO": "bar"}})
    assert ray.get(with_env.remote("CONFORMANCE_FOO")) == "bar"
    assert ray.get(env_var.remote("CONFORMANCE_FOO")) is None  # not left behind


def test_runtime_env_vars_must_be_strings(ray_start) -> None:
    with pytest.raises(TypeError):
        env_var.options(runtime_env={"env_vars": {"X": 1}})


def test_wait_on_no_refs(ray_start) -> None:
    assert ray.wait([]) == ([], [])


def test_list_named_actors(ray_start) -> None:
    actor = Named.options(name="listed").remote()
    ray.get(actor.value.remote())
    assert "listed" in ray.util.list_named_actors()
    everywhere = ray.util.list_named_actors(all_namespaces=True)
    assert {"name": "listed", "namespace": ray.get_runtime_context().namespace} in everywhere


def test_available_resources_show_a_ready_placement_group(ray_start) -> None:
    before = ray.available_resources().get("CPU", 0.0)
    group = ray.util.placement_group([{"CPU": 1}])
    assert group.wait(60)
    try:
        assert ray.available_resources().get("CPU", 0.0) == before - 1
    finally:
        ray.util.remove_placement_group(group)
