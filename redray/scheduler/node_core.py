"""A node's decisions, as a pure state machine: every node event in, every action out.

`LocalScheduler` decides dispatch and worker starts; `NodeCore` wraps it with the rest of
what a node decides: whether a task whose worker died is retried or failed, what a cancel
or a kill stops, when a queue entry is acknowledged, which actors and tasks die with a
placement group. It holds no process and no Redis connection (in the style of dask's
worker state machine), so each decision is testable on its own
(tests/test_node_core.py); the node daemon (node/daemon.py) is the I/O shell that turns
queue entries and worker messages into events and performs the actions.
"""

from __future__ import annotations

from dataclasses import dataclass

from redray.scheduler.bundles import pg_of
from redray.scheduler.local_scheduler import Action, LocalScheduler, QueuedTask

#: Cancelled task ids remembered, so that a retry queued before the cancel is dropped.
CANCELLED_KEPT = 10_000


@dataclass
class Ack:
    """Acknowledge a queue entry: it needs no more handling."""

    entry_id: str


@dataclass
class QueuedTaskCancelled:
    """A queued task was dropped by cancel() (its canceller committed the error): a task
    event records it."""

    task: QueuedTask


@dataclass
class Kill:
    """Signal a worker: interrupt the task it runs (SIGINT), or kill it (`force`: SIGKILL)."""

    worker_id: str
    force: bool = True


@dataclass
class RetryTask:
    """Queue the next attempt of a task whose worker died (its attempt already counted);
    record the failure of this one."""

    task: QueuedTask
    how: str


@dataclass
class FailTask:
    """A task's worker died and it is not retried: commit WorkerCrashedError as its
    returns and record the failure."""

    task: QueuedTask
    how: str


@dataclass
class ActorExited:
    """An actor's worker ended: restart the actor if it may, else mark it dead."""

    actor_id: str
    task: QueuedTask
    how: str


@dataclass
class GroupRemoved:
    """A task (or actor creation) of a removed placement group: fail it with
    TaskPlacementGroupRemoved (its actor dies)."""

    task: QueuedTask


@dataclass
class ActorOfGroupDead:
    """An actor of a removed placement group dies (its worker is killed too)."""

    actor_id: str


NodeAction = (
    Action
    | Ack
    | QueuedTaskCancelled
    | Kill
    | RetryTask
    | FailTask
    | ActorExited
    | GroupRemoved
    | ActorOfGroupDead
)


class NodeCore:
    """The decisions of one node (see the module doc)."""

    def __init__(self, resources: dict[str, float]) -> None:
        self.scheduler = LocalScheduler(dict(resources))
        self._cancelled: dict[str, None] = {}  # insertion-ordered: the oldest go first
        #: Actor workers: worker id -> (actor id, its creation task); actor id -> worker id.
        self._actor_workers: dict[str, tuple[str, QueuedTask]] = {}
        self._actor_of: dict[str, str] = {}
        #: Kill requests for actors whose worker has not reported "actor_started" yet.
        self._pending_kills: set[str] = set()

    # ---- the queue ---------------------------------------------------------------------

    def task_arrived(self, task: QueuedTask) -> list[NodeAction]:
        """A task message was read from the node's queue."""
        if task.spec.task_id in self._cancelled:
            return [Ack(task.entry_id)]
        pg = pg_of(task.spec)
        if pg is not None and not self.scheduler.has_bundle(pg["id"], pg["index"]):
            # Tasks only arrive once their bundles are reserved: the group was removed.
            return [Ack(task.entry_id), GroupRemoved(task)]
        return list(self.scheduler.add_task(task))

    def cancel(self, task_id: str, force: bool) -> list[NodeAction]:
        """Drop a queued task, or interrupt (force: kill) the worker running it. The
        canceller has already committed TaskCancelledError: this only stops the work."""
        self.mark_cancelled(task_id)
        queued = self.scheduler.remove_queued(task_id)
        if queued is not None:
            return [Ack(queued.entry_id), QueuedTaskCancelled(queued)]
        worker_id = self.scheduler.running_task_worker(task_id)
        return [Kill(worker_id, force)] if worker_id is not None else []

    def kill_actor(self, actor_id: str) -> list[NodeAction]:
        """kill(actor): SIGKILL its worker now, or as soon as it reports the actor started."""
        worker_id = self._actor_of.get(actor_id)
        if worker_id is None:
            self._pending_kills.add(actor_id)
            return []
        return [Kill(worker_id)]

    def mark_cancelled(self, task_id: str) -> None:
        """The task's results are committed as cancelled: its worker's death is no retry."""
        self._cancelled[task_id] = None
        if len(self._cancelled) > CANCELLED_KEPT:
            del self._cancelled[next(iter(self._cancelled))]

    # ---- workers -----------------------------------------------------------------------

    def worker_ready(self, worker_id: str) -> list[NodeAction]:
        """A newly started worker reported ready."""
        return list(self.scheduler.worker_ready(worker_id, new=True))

    def task_done(self, worker_id: str, retire: bool) -> list[NodeAction]:
        """A worker finished its task (its results are committed); `retire`: it exits now
        (max_calls reached)."""
        task = self.scheduler.task_of(worker_id)
        actions: list[NodeAction] = [Ack(task.entry_id)] if task is not None else []
        if retire:
            actions += self.scheduler.worker_gone(worker_id)[1]
        else:
            actions += self.scheduler.worker_ready(worker_id, new=False)
        return actions

    def worker_blocked(self, worker_id: str) -> list[NodeAction]:
        """The worker waits in get(): its CPU is lent to other tasks meanwhile."""
        return list(self.scheduler.worker_blocked(worker_id))

    def worker_unblocked(self, worker_id: str) -> list[NodeAction]:
        return list(self.scheduler.worker_unblocked(worker_id))

    def is_actor_worker(self, worker_id: str) -> bool:
        return worker_id in self._actor_workers

    def actor_of_worker(self, worker_id: str) -> str | None:
        """The actor a worker hosts, if it does."""
        entry = self._actor_workers.get(worker_id)
        return entry[0] if entry else None

    def worker_died(self, worker_id: str, how: str) -> list[NodeAction]:
        """A worker's process ended (`how`: what its exit status says). Its task is retried
        while max_retries allows and it was not cancelled, else failed; an actor's worker
        ending is the actor's exit."""
        if worker_id in self._actor_workers:
            actor_id, task = self._actor_workers.pop(worker_id)
            if self._actor_of.get(actor_id) == worker_id:
                del self._actor_of[actor_id]
            actions: list[NodeAction] = [ActorExited(actor_id, task, how)]
            return actions + self.scheduler.actor_exited(worker_id)
        task, scheduled = self.scheduler.worker_gone(worker_id)
        actions = []
        if task is not None:
            spec = task.spec
            retry = spec.task_id not in self._cancelled and (
                spec.max_retries == -1 or spec.attempt < spec.max_retries
            )
            actions.append(RetryTask(task, how) if retry else FailTask(task, how))
            actions.append(Ack(task.entry_id))
        return actions + scheduled

    def actor_started(
        self, worker_id: str, actor_id: str, held: dict[str, float], keep_warm: int
    ) -> list[NodeAction]:
        """A worker became an actor: it keeps `held` and leaves the task pool for good (the
        node starts workers to keep `keep_warm` ready)."""
        task = self.scheduler.task_of(worker_id)
        if task is None:
            return []
        self._actor_workers[worker_id] = (actor_id, task)
        self._actor_of[actor_id] = worker_id
        actions: list[NodeAction] = [Ack(task.entry_id)]
        actions += self.scheduler.actor_started(worker_id, held)
        actions += self.scheduler.keep_warm(keep_warm)
        if actor_id in self._pending_kills:
            self._pending_kills.discard(actor_id)
            actions.append(Kill(worker_id))
        return actions

    # ---- placement group bundles -------------------------------------------------------

    def reserve_bundles(self, pg_id: str, bundles: list[tuple[int, dict[str, float]]]) -> bool:
        """Reserve a group's bundles here, all or none."""
        return self.scheduler.reserve_bundles(pg_id, bundles)

    def release_bundles(self, pg_id: str) -> list[NodeAction]:
        """A group was removed: its queued tasks fail, its running tasks and actors are
        killed (their results fail with TaskPlacementGroupRemoved, its actors die)."""
        queued, running, actors, scheduled = self.scheduler.release_bundles(pg_id)
        actions: list[NodeAction] = []
        for task in queued:
            actions += [Ack(task.entry_id), GroupRemoved(task)]
        for worker_id in running:
            task = self.scheduler.task_of(worker_id)
            if task is not None:
                if not task.spec.extra.get("actor"):
                    self.mark_cancelled(task.spec.task_id)  # its death is no retry
                actions.append(GroupRemoved(task))
            actions.append(Kill(worker_id))
        for worker_id in actors:
            actor_id = self.actor_of_worker(worker_id)
            if actor_id is not None:
                actions.append(ActorOfGroupDead(actor_id))
            actions.append(Kill(worker_id))
        return actions + scheduled
