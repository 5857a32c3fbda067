"""The local scheduler gives a worker tasks of one code environment only (runtime_env
working_dir, py_modules, pip), without processes or Redis."""

from __future__ import annotations

from redray.scheduler.local_scheduler import Dispatch, LocalScheduler, QueuedTask, StartWorkers
from redray.task_spec import TaskSpec


def task(number: int, working_dir: str | None = None) -> QueuedTask:
    runtime_env = {"working_dir": working_dir} if working_dir else None
    spec = TaskSpec(
        f"t{number}", "f", "fn", [], {}, [f"t{number}0001"], "owner", {"CPU": 1.0},
        runtime_env=runtime_env,
    )  # fmt: skip
    return QueuedTask(spec, f"{number}-0", b"")


def dispatched(actions: list) -> list[tuple[str, str]]:
    return [(a.worker_id, a.task.spec.task_id) for a in actions if isinstance(a, Dispatch)]


def started(actions: list) -> int:
    return sum(a.count for a in actions if isinstance(a, StartWorkers))


def test_a_worker_keeps_serving_the_code_environment_of_its_first_task():
    scheduler = LocalScheduler({"CPU": 1.0})
    scheduler.worker_ready("w1", new=True)
    assert dispatched(scheduler.add_task(task(1, "redray://pkg_a.zip"))) == [("w1", "t1")]
    scheduler.worker_ready("w1", new=False)
    assert dispatched(scheduler.add_task(task(2, "redray://pkg_a.zip"))) == [("w1", "t2")]


def test_a_task_of_another_code_environment_gets_a_new_worker():
    scheduler = LocalScheduler({"CPU": 1.0})
    scheduler.worker_ready("w1", new=True)
    scheduler.add_task(task(1, "redray://pkg_a.zip"))
    scheduler.worker_ready("w1", new=False)
    actions = scheduler.add_task(task(2, "redray://pkg_b.zip"))
    assert dispatched(actions) == [] and started(actions) == 1
    assert dispatched(scheduler.worker_ready("w2", new=True)) == [("w2", "t2")]


def test_plain_tasks_do_not_use_a_worker_bound_to_shipped_code():
    scheduler = LocalScheduler({"CPU": 2.0})
    scheduler.worker_ready("w1", new=True)
    scheduler.add_task(task(1, "redray://pkg_a.zip"))
    scheduler.worker_ready("w1", new=False)
    actions = scheduler.add_task(task(2))
    assert dispatched(actions) == [] and started(actions) == 1


def test_an_idle_worker_of_the_right_environment_is_preferred_to_a_fresh_one():
    scheduler = LocalScheduler({"CPU": 2.0})
    scheduler.worker_ready("fresh", new=True)
    scheduler.worker_ready("w1", new=True)
    scheduler.add_task(task(1))  # binds "fresh" to no shipped code
    scheduler.add_task(task(2, "redray://pkg_a.zip"))  # binds "w1"
    scheduler.worker_ready("w1", new=False)
    scheduler.worker_ready("fresh", new=False)
    assert dispatched(scheduler.add_task(task(3, "redray://pkg_a.zip"))) == [("w1", "t3")]


def test_tasks_of_another_environment_do_not_block_the_queue():
    scheduler = LocalScheduler({"CPU": 2.0})
    scheduler.worker_ready("w1", new=True)
    scheduler.add_task(task(1))
    scheduler.worker_ready("w1", new=False)
    scheduler.add_task(task(2, "redray://pkg_b.zip"))  # waits for a new worker
    assert dispatched(scheduler.add_task(task(3))) == [("w1", "t3")]
