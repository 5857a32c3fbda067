"""`redray.util.state` (Ray's `ray.util.state`): list/get/summarize with Ray's record
shapes, filters applied before `limit`, clear errors for bad filters, None for unknown ids,
and listing 100k recorded tasks with a filter in well under a second.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from target_ray import TESTING_RAY, gated, ray, redray_only, wait_until

if TESTING_RAY:
    from ray.util import state
else:
    from redray.util import state


@ray.remote
def state_quick(x: int) -> int:
    return x


@ray.remote
class StateActor:
    def ping(self) -> str:
        return "pong"


def test_list_nodes_has_the_head_node(ray_start_with_dashboard: Any) -> None:
    nodes = state.list_nodes()
    assert len(nodes) == 1
    node = nodes[0]
    assert node.state == "ALIVE" and node.is_head_node is True
    assert node["node_id"] == node.node_id  # dict-style access, as Ray's records allow
    assert node.resources_total["CPU"] == 2
    assert state.get_node(node.node_id).node_id == node.node_id


def test_list_jobs_shows_this_driver_running(ray_start_with_dashboard: Any) -> None:
    job_id = ray.get_runtime_context().get_job_id()
    jobs = state.list_jobs(filters=[("job_id", "=", job_id)])
    assert [job.status for job in jobs] == ["RUNNING"]
    assert jobs[0].type == "DRIVER"


def test_list_and_get_actor(ray_start_with_dashboard: Any) -> None:
    actor = StateActor.remote()
    assert ray.get(actor.ping.remote()) == "pong"
    actors = state.list_actors(filters=[("class_name", "=", "StateActor")])
    assert len(actors) == 1 and actors[0].state == "ALIVE" and actors[0].pid
    assert state.get_actor(actors[0].actor_id).class_name == "StateActor"
    summary = state.summarize_actors()["cluster"]
    assert summary["summary"]["StateActor"]["state_counts"]["ALIVE"] == 1


def test_unknown_ids_are_not_found(ray_start_with_dashboard: Any) -> None:
    assert state.get_actor("ff" * 16) is None
    assert state.get_task("ff" * 24) is None
    assert state.get_node("ff" * 28) is None


def test_list_objects_includes_a_put_object(ray_start_with_dashboard: Any) -> None:
    ref = ray.put(b"x" * 200_000)
    objects = state.list_objects(filters=[("object_id", "=", ref.hex())])
    assert len(objects) == 1
    assert objects[0].object_size >= 200_000
    assert objects[0].type == "DRIVER" and objects[0].reference_type == "LOCAL_REFERENCE"
    assert state.summarize_objects()["cluster"]["total_objects"] >= 1


def test_list_workers_includes_the_driver(ray_start_with_dashboard: Any) -> None:
    drivers = state.list_workers(filters=[("worker_type", "=", "DRIVER")])
    assert drivers and all(worker.is_alive for worker in drivers)


def test_list_placement_groups(ray_start_with_dashboard: Any) -> None:
    group = ray.util.placement_group([{"CPU": 0.5}], name="state_pg")
    ray.get(group.ready())
    groups = state.list_placement_groups(filters=[("name", "=", "state_pg")], detail=True)
    assert len(groups) == 1 and groups[0].state == "CREATED"
    assert groups[0].bundles[0]["unit_resources"] == {"CPU": 0.5}
    ray.util.remove_placement_group(group)


def test_filters_apply_before_the_limit(ray_start_with_dashboard: Any, tmp_path: Path) -> None:
    gate = str(tmp_path / "gate")
    running = gated.remote(gate)
    ray.get([state_quick.remote(i) for i in range(30)])

    def running_listed() -> list[Any]:
        return state.list_tasks(
            filters=[("name", "=", "gated"), ("state", "=", "RUNNING")], limit=1
        )

    found = wait_until(running_listed)
    assert len(found) == 1
    finished = wait_until(
        lambda: len(state.list_tasks(filters=[("name", "=", "state_quick")], limit=1000)) >= 30
    )
    assert finished
    assert len(state.list_tasks(filters=[("name", "=", "state_quick")], limit=5)) == 5
    others = state.list_tasks(filters=[("name", "!=", "state_quick")], limit=1000)
    assert all(task.name != "state_quick" for task in others)
    Path(gate).touch()
    ray.get(running)


def test_summarize_tasks_counts_by_function_and_state(ray_start_with_dashboard: Any) -> None:
    ray.get([state_quick.remote(i) for i in range(3)])

    def counted() -> int:
        summary = state.summarize_tasks()["cluster"]["summary"]
        return summary.get("state_quick", {}).get("state_counts", {}).get("FINISHED", 0)

    assert wait_until(lambda: counted() >= 3)
    summary = state.summarize_tasks()["cluster"]
    assert summary["summary"]["state_quick"]["type"] == "NORMAL_TASK"
    assert summary["summary_by"] == "func_name"


def test_detail_fills_the_detail_columns(ray_start_with_dashboard: Any) -> None:
    ref = state_quick.remote(7)
    ray.get(ref)
    task_id = ref.task_id() if isinstance(ref.task_id(), str) else ref.task_id().hex()

    def finished(detail: bool) -> list[Any]:
        tasks = state.list_tasks(filters=[("task_id", "=", task_id)], detail=detail)
        # Complete once the submitter's events are in too (they come in batches).
        return [t for t in tasks if t.state == "FINISHED" and (t.required_resources or not detail)]

    (full,) = wait_until(lambda: finished(True))
    assert full.events and full.start_time_ms and full.required_resources == {"CPU": 1}
    (plain,) = finished(False)
    assert plain.events is None and plain.name == "state_quick"


@redray_only
def test_bad_filters_raise_value_error_naming_the_valid_ones(ray_start_with_dashboard: Any) -> None:
    with pytest.raises(ValueError, match="Supported filter columns: .*'state'"):
        state.list_tasks(filters=[("colour", "=", "red")])
    with pytest.raises(ValueError, match="Available predicates: =, !="):
        state.list_tasks(filters=[("state", ">", "RUNNING")])


@redray_only
@pytest.mark.timeout(300)
def test_listing_100k_tasks_with_a_filter_takes_well_under_a_second(
    ray_start_with_dashboard: Any,
) -> None:
    from redray.client.task_events import FINISHED, TaskEventBuffer, static_fields
    from redray.control import keys
    from redray.task_spec import TaskSpec

    client = ray.api.current_client()
    job = "bench100k"
    buffer = TaskEventBuffer(client.commands.raw)
    pipe = client.redis.pipeline(transaction=False)
    for i in range(100_000):
        name = "needle" if i % 10_000 == 0 else "hay"
        spec = TaskSpec(f"{i:024x}", name, "", [], {}, [], "", {"CPU": 1}, job_id=job)
        buffer.record(spec, FINISHED, worker_pid=1000 + i % 7, **static_fields(spec))
        if i % 1000 == 999:
            pipe.execute_command(*buffer.drain())
            pipe.execute()
    try:
        assert client.redis.hlen(keys.task_events(job)) == 100_000
        start = time.perf_counter()
        found = state.list_tasks(filters=[("job_id", "=", job), ("name", "=", "needle")])
        elapsed = time.perf_counter() - start
        assert len(found) == 10
        assert elapsed < 1.0, f"listing took {elapsed:.2f} s"
        memory = client.redis.memory_usage(keys.task_events(job))
        print(f"\n100k task records: listed 10 in {elapsed * 1000:.0f} ms; "
              f"Redis memory {memory / 2**20:.1f} MiB")  # fmt: skip
    finally:
        client.redis.delete(keys.task_events(job))
