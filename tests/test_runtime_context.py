"""get_runtime_context(): every accessor with Ray's types and values in the driver, a task
and an actor (compared with Ray 2.60 by running the same snippets).

Runs against redray, or against Ray 2.x with REDRAY_TEST_AGAINST=ray.
"""

from __future__ import annotations

import json

import pytest
from target_ray import ray

pytestmark = pytest.mark.timeout(120)

PlacementGroupSchedulingStrategy = ray.util.scheduling_strategies.PlacementGroupSchedulingStrategy


def context_facts() -> dict:
    context = ray.get_runtime_context()
    return {
        "job_id": context.get_job_id(),
        "task_id": context.get_task_id(),
        "task_name": context.get_task_name(),
        "function_name": context.get_task_function_name(),
        "actor_id": context.get_actor_id(),
        "actor_name": context.get_actor_name(),
        "node_id": context.get_node_id(),
        "worker_id": context.get_worker_id(),
        "accelerators": context.get_accelerator_ids(),
        "pg_id": context.get_placement_group_id(),
        "namespace": context.namespace,
        "capture": context.should_capture_child_tasks_in_placement_group,
        "runtime_env": context.get_runtime_env_string(),
        "get": context.get(),
    }


@ray.remote
def task_facts() -> dict:
    facts = context_facts()
    facts["resources"] = ray.get_runtime_context().get_assigned_resources()
    return facts


@ray.remote
class Probe:
    def facts(self) -> dict:
        facts = context_facts()
        context = ray.get_runtime_context()
        facts["resources"] = context.get_assigned_resources()
        facts["reconstructed"] = context.was_current_actor_reconstructed
        facts["current_actor"] = context.current_actor._actor_id.hex()
        return facts


def _hex(value: object) -> object:
    """get() holds ids as strings in redray, as TaskID/ActorID objects in Ray."""
    return value if isinstance(value, str) else value.hex()


def test_in_the_driver(ray_start) -> None:
    facts = context_facts()
    assert isinstance(facts["job_id"], str) and facts["job_id"]
    assert isinstance(facts["node_id"], str) and facts["node_id"]
    assert isinstance(facts["worker_id"], str) and facts["worker_id"]
    for name in ("task_id", "task_name", "function_name", "actor_id", "actor_name", "pg_id"):
        assert facts[name] is None, name
    assert facts["capture"] is False
    assert json.loads(facts["runtime_env"]) == {}
    assert facts["accelerators"]["GPU"] == []
    assert isinstance(facts["namespace"], str) and facts["namespace"]
    assert {"job_id", "node_id", "namespace"} <= set(facts["get"])
    assert "task_id" not in facts["get"]


def test_in_a_task(ray_start) -> None:
    driver = context_facts()
    facts = ray.get(task_facts.options(name="named-task").remote())
    assert facts["job_id"] == driver["job_id"]
    assert isinstance(facts["task_id"], str) and facts["task_id"]
    assert facts["task_name"] == "named-task"
    assert facts["function_name"].endswith("task_facts")
    assert facts["actor_id"] is None and facts["actor_name"] is None
    assert facts["worker_id"] != driver["worker_id"]
    assert facts["resources"] == {"CPU": 1.0}
    assert facts["pg_id"] is None and facts["capture"] is False
    assert facts["namespace"] == driver["namespace"]
    assert _hex(facts["get"]["task_id"]) == facts["task_id"]
    assert ray.get(task_facts.remote())["task_name"] == "task_facts"


def test_in_an_actor(ray_start) -> None:
    actor = Probe.options(name="probe").remote()
    facts = ray.get(actor.facts.remote())
    assert facts["actor_id"] == actor._actor_id.hex()
    assert facts["actor_name"] == "probe"
    assert facts["task_name"] == "Probe.facts"
    assert facts["function_name"].endswith("Probe.facts")
    assert facts["resources"] == {}  # an actor holds no CPU while it runs, by default
    assert facts["reconstructed"] is False
    assert facts["current_actor"] == facts["actor_id"]
    assert _hex(facts["get"]["actor_id"]) == facts["actor_id"]
    assert ray.get(Probe.remote().facts.remote())["actor_name"] == ""


def test_current_actor_outside_an_actor_is_an_error(ray_start) -> None:
    with pytest.raises(RuntimeError):
        _ = ray.get_runtime_context().current_actor


def test_in_a_placement_group(ray_start) -> None:
    pg = ray.util.placement_group([{"CPU": 1}])
    ray.get(pg.ready(), timeout=60)
    try:
        inside = task_facts.options(
            scheduling_strategy=PlacementGroupSchedulingStrategy(
                pg, placement_group_capture_child_tasks=True
            )
        ).remote()
        facts = ray.get(inside)
        assert facts["pg_id"] == pg.id.hex()
        assert facts["capture"] is True
        actor = Probe.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg)).remote()
        assert ray.get(actor.facts.remote())["pg_id"] == pg.id.hex()
        ray.kill(actor)
    finally:
        ray.util.remove_placement_group(pg)


def test_runtime_env_string(ray_start) -> None:
    env = {"env_vars": {"REDRAY_CONTEXT_TEST": "1"}}
    facts = ray.get(task_facts.options(runtime_env=env).remote())
    assert json.loads(facts["runtime_env"])["env_vars"] == {"REDRAY_CONTEXT_TEST": "1"}
