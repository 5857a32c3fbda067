"""The node core (redray/scheduler/node_core.py) as a state machine: events in, actions out.
No process, no Redis; one behaviour per test, in the style of dask's worker state machine
tests."""

from __future__ import annotations

from typing import Any

import pytest
from target_ray import redray_only

from redray.scheduler.local_scheduler import Dispatch, QueuedTask, StartWorkers
from redray.scheduler.node_core import (
    Ack,
    ActorExited,
    ActorOfGroupDead,
    FailTask,
    GroupRemoved,
    Kill,
    NodeCore,
    QueuedTaskCancelled,
    RetryTask,
)
from redray.task_spec import TaskSpec

pytestmark = redray_only

_count = 0


def task(
    demand: dict[str, float] | None = None,
    *,
    max_retries: int = 3,
    attempt: int = 0,
    pg: dict[str, Any] | None = None,
    actor: bool = False,
) -> QueuedTask:
    global _count
    _count += 1
    task_id = f"{_count:024x}"
    extra: dict[str, Any] = {}
    if pg is not None:
        extra["pg"] = pg
    if actor:
        extra.update(actor=True, actor_id=f"actor{_count}")
    spec = TaskSpec(
        task_id, f"task{_count}", "fn", [], {}, [task_id + "0001"], "owner",
        {"CPU": 1.0} if demand is None else demand, max_retries=max_retries, attempt=attempt,
        extra=extra,
    )  # fmt: skip
    return QueuedTask(spec, f"{_count}-0", b"payload")


def node(cpus: float = 1, gpus: float = 0, workers: tuple[str, ...] = ("w1",)) -> NodeCore:
    """A node core whose `workers` have started and are idle."""
    resources = {"CPU": float(cpus)}
    if gpus:
        resources["GPU"] = float(gpus)
    core = NodeCore(resources)
    core.scheduler.expect_workers(len(workers))
    for worker_id in workers:
        assert core.worker_ready(worker_id) == []
    return core


def running(core: NodeCore, queued: QueuedTask, worker_id: str = "w1") -> None:
    assert core.task_arrived(queued) == [Dispatch(worker_id, queued, [])]


# ---- dispatch ---------------------------------------------------------------------------


def test_a_task_goes_to_an_idle_worker() -> None:
    core = node()
    queued = task()
    assert core.task_arrived(queued) == [Dispatch("w1", queued, [])]


def test_a_task_with_no_idle_worker_starts_one() -> None:
    core = node(cpus=2)
    running(core, task())
    assert core.task_arrived(task()) == [StartWorkers(1)]


def test_a_task_that_does_not_fit_waits_for_resources() -> None:
    core = node(cpus=1, workers=("w1", "w2"))
    first = task()
    running(core, first)
    second = task()
    assert core.task_arrived(second) == []
    ack, dispatch = core.task_done("w1", retire=False)
    assert ack == Ack(first.entry_id)
    assert isinstance(dispatch, Dispatch) and dispatch.task is second


def test_finishing_a_task_acknowledges_its_entry() -> None:
    core = node()
    queued = task()
    running(core, queued)
    assert core.task_done("w1", retire=False) == [Ack(queued.entry_id)]


def test_a_worker_retiring_after_max_calls_is_replaced_for_queued_work() -> None:
    core = node()
    first, second = task(), task()
    running(core, first)
    assert core.task_arrived(second) == []
    assert core.task_done("w1", retire=True) == [Ack(first.entry_id), StartWorkers(1)]
    assert core.worker_ready("w2") == [Dispatch("w2", second, [])]


# ---- resources --------------------------------------------------------------------------


def test_two_half_gpu_tasks_share_one_gpu() -> None:
    core = node(cpus=2, gpus=1, workers=("w1", "w2"))
    first, second = task({"GPU": 0.5}), task({"GPU": 0.5})
    assert core.task_arrived(first) == [Dispatch("w1", first, [0])]
    assert core.task_arrived(second) == [Dispatch("w2", second, [0])]


def test_whole_gpus_are_not_shared() -> None:
    core = node(cpus=2, gpus=1, workers=("w1", "w2"))
    running_gpu = task({"GPU": 1})
    assert core.task_arrived(running_gpu) == [Dispatch("w1", running_gpu, [0])]
    assert core.task_arrived(task({"GPU": 0.5})) == []


def test_a_blocked_worker_lends_its_cpu_to_a_nested_task() -> None:
    core = node(cpus=1, workers=("w1", "w2"))
    parent, child = task(), task()
    running(core, parent)
    assert core.task_arrived(child) == []
    assert core.worker_blocked("w1") == [Dispatch("w2", child, [])]


def test_an_unblocked_worker_takes_its_cpu_back() -> None:
    core = node(cpus=1, workers=("w1", "w2", "w3"))
    running(core, task())
    core.worker_blocked("w1")
    core.worker_unblocked("w1")
    assert core.task_arrived(task()) == []


# ---- worker death -----------------------------------------------------------------------


def test_a_task_whose_worker_died_is_retried_while_retries_are_left() -> None:
    core = node()
    queued = task(max_retries=1)
    running(core, queued)
    actions = core.worker_died("w1", "killed by SIGKILL")
    assert actions[:2] == [RetryTask(queued, "killed by SIGKILL"), Ack(queued.entry_id)]


def test_a_task_with_no_retries_left_fails_when_its_worker_dies() -> None:
    core = node()
    queued = task(max_retries=1, attempt=1)
    running(core, queued)
    assert core.worker_died("w1", "exited with code 1")[:2] == [
        FailTask(queued, "exited with code 1"), Ack(queued.entry_id),
    ]  # fmt: skip


def test_infinite_retries_always_retry() -> None:
    core = node()
    queued = task(max_retries=-1, attempt=100)
    running(core, queued)
    assert isinstance(core.worker_died("w1", "oom")[0], RetryTask)


def test_an_idle_worker_dying_fails_nothing() -> None:
    core = node()
    assert core.worker_died("w1", "exited") == []


# ---- cancel -----------------------------------------------------------------------------


def test_cancelling_a_queued_task_drops_it() -> None:
    core = node(cpus=1, workers=("w1", "w2"))
    running(core, task())
    queued = task()
    core.task_arrived(queued)
    assert core.cancel(queued.spec.task_id, force=False) == [
        Ack(queued.entry_id), QueuedTaskCancelled(queued),
    ]  # fmt: skip
    assert core.task_done("w1", retire=False)[1:] == []  # nothing left to dispatch


def test_cancelling_a_running_task_interrupts_its_worker() -> None:
    core = node()
    queued = task()
    running(core, queued)
    assert core.cancel(queued.spec.task_id, force=False) == [Kill("w1", force=False)]


def test_force_cancel_kills_the_worker() -> None:
    core = node()
    queued = task()
    running(core, queued)
    assert core.cancel(queued.spec.task_id, force=True) == [Kill("w1", force=True)]


def test_a_cancelled_task_is_not_retried_when_its_worker_dies() -> None:
    core = node()
    queued = task(max_retries=3)
    running(core, queued)
    core.cancel(queued.spec.task_id, force=True)
    assert isinstance(core.worker_died("w1", "killed by SIGKILL")[0], FailTask)


def test_a_task_arriving_after_its_cancel_is_only_acknowledged() -> None:
    core = node()
    queued = task()
    assert core.cancel(queued.spec.task_id, force=False) == []
    assert core.task_arrived(queued) == [Ack(queued.entry_id)]


# ---- actors -----------------------------------------------------------------------------


def test_an_actor_keeps_what_it_holds_and_leaves_the_pool() -> None:
    core = node(cpus=2)
    creation = task(actor=True)
    running(core, creation)
    actions = core.actor_started("w1", "a1", {"CPU": 1.0}, keep_warm=1)
    assert actions == [Ack(creation.entry_id), StartWorkers(1)]
    assert core.actor_of_worker("w1") == "a1"
    assert core.scheduler.available["CPU"] == 1.0


def test_an_actors_worker_dying_is_the_actors_exit() -> None:
    core = node()
    creation = task(actor=True)
    running(core, creation)
    core.actor_started("w1", "a1", {}, keep_warm=0)
    assert core.worker_died("w1", "killed") == [ActorExited("a1", creation, "killed")]
    assert core.actor_of_worker("w1") is None


def test_killing_an_actor_that_has_not_started_waits_for_its_start() -> None:
    core = node()
    creation = task(actor=True)
    running(core, creation)
    assert core.kill_actor("a1") == []
    assert core.actor_started("w1", "a1", {}, keep_warm=0)[-1] == Kill("w1")


def test_killing_a_running_actor_kills_its_worker() -> None:
    core = node()
    running(core, task(actor=True))
    core.actor_started("w1", "a1", {}, keep_warm=0)
    assert core.kill_actor("a1") == [Kill("w1")]


# ---- placement group bundles ------------------------------------------------------------


def _pg(index: int = 0) -> dict[str, Any]:
    return {"id": "g1", "index": index, "capture": False, "bundles": [{"CPU": 1.0}]}


def test_bundles_are_reserved_all_or_none() -> None:
    core = node(cpus=2)
    assert not core.reserve_bundles("g1", [(0, {"CPU": 2.0}), (1, {"CPU": 1.0})])
    assert core.scheduler.available["CPU"] == 2.0
    assert core.reserve_bundles("g1", [(0, {"CPU": 1.0}), (1, {"CPU": 1.0})])
    assert core.scheduler.available["CPU"] == 0.0


def test_a_task_of_a_group_runs_in_its_bundle_not_the_node_pool() -> None:
    core = node(cpus=2, workers=("w1", "w2"))
    core.reserve_bundles("g1", [(0, {"CPU": 1.0})])
    in_group = task(pg=_pg())
    assert core.task_arrived(in_group) == [Dispatch("w1", in_group, [])]
    assert core.task_arrived(task(pg=_pg())) == []  # its bundle is full; the node's is not
    assert core.scheduler.available["CPU"] == 1.0


def test_a_task_of_a_group_not_reserved_here_fails() -> None:
    core = node()
    orphan = task(pg=_pg())
    assert core.task_arrived(orphan) == [Ack(orphan.entry_id), GroupRemoved(orphan)]


def test_releasing_a_group_fails_its_queued_tasks_and_kills_its_running_ones() -> None:
    core = node(cpus=3, workers=("w1", "w2"))
    core.reserve_bundles("g1", [(0, {"CPU": 1.0}), (1, {"CPU": 1.0})])
    actor = task(pg=_pg(0), actor=True)
    running(core, actor, "w1")
    core.actor_started("w1", "a1", {"CPU": 1.0}, keep_warm=0)
    busy, waiting = task(pg=_pg(1)), task(pg=_pg(1))
    running(core, busy, "w2")
    core.task_arrived(waiting)
    actions = core.release_bundles("g1")
    assert Ack(waiting.entry_id) in actions and GroupRemoved(waiting) in actions
    assert GroupRemoved(busy) in actions and Kill("w2") in actions
    assert ActorOfGroupDead("a1") in actions and Kill("w1") in actions
    # The killed task's death is no retry: its results are committed as removed.
    assert isinstance(core.worker_died("w2", "killed")[0], FailTask)


@pytest.mark.parametrize("kept", [3])
def test_a_node_remembers_a_bounded_number_of_cancelled_tasks(
    monkeypatch: pytest.MonkeyPatch, kept: int
) -> None:
    import redray.scheduler.node_core as node_core

    monkeypatch.setattr(node_core, "CANCELLED_KEPT", kept)
    core = node()
    tasks = [task() for _ in range(kept + 1)]
    for queued in tasks:
        core.cancel(queued.spec.task_id, force=False)
    assert core.task_arrived(tasks[-1]) == [Ack(tasks[-1].entry_id)]
    assert core.task_arrived(tasks[0]) == [Dispatch("w1", tasks[0], [])]  # forgotten
