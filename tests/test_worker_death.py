"""Worker deaths as the local scheduler sees them (pure state machine, no processes)."""

from __future__ import annotations

from redray.scheduler.local_scheduler import Dispatch, LocalScheduler, QueuedTask, StartWorkers
from redray.task_spec import TaskSpec


def _task(number: int) -> QueuedTask:
    spec = TaskSpec(f"t{number}", "f", "fn", [], {}, [f"t{number}0001"], "owner", {"CPU": 1.0})
    return QueuedTask(spec, f"{number}-0", b"")


def _started(actions: list) -> int:
    return sum(action.count for action in actions if isinstance(action, StartWorkers))


def test_a_worker_that_dies_while_starting_is_replaced() -> None:
    scheduler = LocalScheduler({"CPU": 2.0})
    assert _started(scheduler.expect_workers(2)) == 2
    scheduler.add_task(_task(1))
    scheduler.add_task(_task(2))
    # Both workers are killed before they report ready: two more must be started.
    _, first = scheduler.worker_gone("w1")
    _, second = scheduler.worker_gone("w2")
    assert _started(first) + _started(second) == 2
    actions = scheduler.worker_ready("w3", new=True)
    assert [a.task.spec.task_id for a in actions if isinstance(a, Dispatch)] == ["t1"]


def test_a_running_worker_that_dies_returns_its_task() -> None:
    scheduler = LocalScheduler({"CPU": 1.0})
    scheduler.expect_workers(1)
    scheduler.add_task(_task(1))
    (dispatch,) = scheduler.worker_ready("w1", new=True)
    task, actions = scheduler.worker_gone("w1")
    assert task is dispatch.task and actions == []
    assert scheduler.available["CPU"] == 1.0
