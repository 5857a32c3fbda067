"""The local scheduler of one node, as a pure state machine.

Events come in (a task arrived, a worker is ready, finished, blocked, died), actions come
out (dispatch this task to that worker, start workers). It holds no processes and no Redis
connection, so every decision is testable on its own; the node daemon carries the actions
out.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from redray.scheduler.resources import add, fits, shape_key, subtract
from redray.task_spec import TaskSpec


@dataclass
class QueuedTask:
    spec: TaskSpec
    entry_id: str  # the stream entry to acknowledge once the task's result is committed
    payload: bytes  # the spec as it arrived, forwarded to the worker unchanged


@dataclass
class Dispatch:
    worker_id: str
    task: QueuedTask
    gpu_ids: list[int]


@dataclass
class StartWorkers:
    count: int


Action = Dispatch | StartWorkers


@dataclass
class _Running:
    task: QueuedTask
    held: dict[str, float]
    gpu_ids: list[int]
    blocked: bool = False


class GpuAllocator:
    """Which GPU ids a task gets: whole GPUs, or a share of one for fractional demands."""

    def __init__(self, count: int) -> None:
        self.free = [1.0] * count

    def can_allocate(self, amount: float) -> bool:
        return self._pick(amount) is not None

    def allocate(self, amount: float) -> list[int]:
        picked = self._pick(amount)
        assert picked is not None, "allocate() after can_allocate() returned False"
        share = min(amount, 1.0)
        for gpu in picked:
            self.free[gpu] -= share
        return picked

    def release(self, gpu_ids: list[int], amount: float) -> None:
        share = min(amount, 1.0)
        for gpu in gpu_ids:
            self.free[gpu] += share

    def _pick(self, amount: float) -> list[int] | None:
        if amount <= 0:
            return []
        if amount < 1:
            for gpu, free in enumerate(self.free):
                if free + 1e-9 >= amount:
                    return [gpu]
            return None
        whole = [gpu for gpu, free in enumerate(self.free) if free >= 1 - 1e-9]
        needed = int(amount)
        return whole[:needed] if len(whole) >= needed else None


@dataclass
class LocalScheduler:
    total: dict[str, float]
    available: dict[str, float] = field(init=False)
    gpus: GpuAllocator = field(init=False)

    def __post_init__(self) -> None:
        self.available = dict(self.total)
        self.gpus = GpuAllocator(int(self.total.get("GPU", 0)))
        self._queues: dict[tuple, deque[QueuedTask]] = {}
        self._idle: deque[str] = deque()
        self._running: dict[str, _Running] = {}
        self._starting = 0
        #: Workers dedicated to actors, with what each actor holds while it lives.
        self._actors: dict[str, _Running] = {}

    # ---- events ----------------------------------------------------------------------

    def add_task(self, task: QueuedTask) -> list[Action]:
        self._queues.setdefault(shape_key(task.spec.demand), deque()).append(task)
        return self._schedule()

    def worker_ready(self, worker_id: str, *, new: bool) -> list[Action]:
        """A worker is idle: newly started (`new`), or done with its task."""
        if new:
            self._starting = max(0, self._starting - 1)
        self._release(worker_id)
        self._idle.append(worker_id)
        return self._schedule()

    def worker_gone(self, worker_id: str) -> tuple[QueuedTask | None, list[Action]]:
        """A worker exited (retired or died); returns the task it was running, if any."""
        if worker_id in self._idle:
            self._idle.remove(worker_id)
        running = self._running.get(worker_id)
        self._release(worker_id)
        return (running.task if running else None), self._schedule()

    def expect_workers(self, count: int) -> list[Action]:
        """Prestart a pool of workers (at node start)."""
        self._starting += count
        return [StartWorkers(count)] if count else []

    def take_surplus_idle(self, keep: int) -> list[str]:
        """Idle workers beyond `keep` (the oldest idle first), taken out of the pool."""
        surplus = []
        while len(self._idle) > keep:
            surplus.append(self._idle.popleft())
        return surplus

    def task_of(self, worker_id: str) -> QueuedTask | None:
        running = self._running.get(worker_id)
        return running.task if running else None

    def worker_failed_to_start(self) -> list[Action]:
        self._starting = max(0, self._starting - 1)
        return []

    def worker_blocked(self, worker_id: str) -> list[Action]:
        """The worker waits in get(): lend its CPU to other tasks meanwhile."""
        running = self._running.get(worker_id)
        if running is None or running.blocked:
            return []
        running.blocked = True
        add(self.available, {"CPU": running.held.get("CPU", 0.0)})
        return self._schedule()

    def worker_unblocked(self, worker_id: str) -> list[Action]:
        running = self._running.get(worker_id)
        if running is not None and running.blocked:
            running.blocked = False
            subtract(self.available, {"CPU": running.held.get("CPU", 0.0)})
        return []

    def remove_queued(self, task_id: str) -> QueuedTask | None:
        for shape, queue in self._queues.items():
            for task in queue:
                if task.spec.task_id == task_id:
                    queue.remove(task)
                    if not queue:
                        del self._queues[shape]
                    return task
        return None

    def running_task_worker(self, task_id: str) -> str | None:
        for worker_id, running in self._running.items():
            if running.task.spec.task_id == task_id:
                return worker_id
        return None

    def actor_started(self, worker_id: str, held: dict[str, float]) -> list[Action]:
        """The worker running an actor creation task now is that actor's for good: release
        the placement demand, hold `held` until `actor_exited`; it never takes a task again."""
        running = self._running.pop(worker_id, None)
        if running is None:
            return []
        released = dict(running.held)
        if running.blocked:
            released.pop("CPU", None)
        add(self.available, released)
        subtract(self.available, held)
        gpu_ids = running.gpu_ids
        if not held.get("GPU"):
            self.gpus.release(running.gpu_ids, running.held.get("GPU", 0.0))
            gpu_ids = []
        self._actors[worker_id] = _Running(running.task, dict(held), gpu_ids)
        return self._schedule()

    def actor_exited(self, worker_id: str) -> list[Action]:
        """An actor's worker ended: what the actor held is free again."""
        running = self._actors.pop(worker_id, None)
        if running is not None:
            add(self.available, running.held)
            self.gpus.release(running.gpu_ids, running.held.get("GPU", 0.0))
        return self._schedule()

    @property
    def queued_count(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    # ---- decisions -------------------------------------------------------------------

    def _release(self, worker_id: str) -> None:
        running = self._running.pop(worker_id, None)
        if running is None:
            return
        held = dict(running.held)
        if running.blocked:
            held.pop("CPU", None)
        add(self.available, held)
        self.gpus.release(running.gpu_ids, running.held.get("GPU", 0.0))

    def _runnable_shape(self, available: dict[str, float]) -> tuple | None:
        for shape, queue in self._queues.items():
            demand = queue[0].spec.demand
            if fits(demand, available) and self.gpus.can_allocate(demand.get("GPU", 0.0)):
                return shape
        return None

    def _schedule(self) -> list[Action]:
        actions: list[Action] = []
        while self._idle:
            shape = self._runnable_shape(self.available)
            if shape is None:
                return actions
            queue = self._queues[shape]
            task = queue.popleft()
            if not queue:
                del self._queues[shape]
            worker_id = self._idle.popleft()
            demand = task.spec.demand
            subtract(self.available, demand)
            gpu_ids = self.gpus.allocate(demand.get("GPU", 0.0))
            self._running[worker_id] = _Running(task, dict(demand), gpu_ids)
            actions.append(Dispatch(worker_id, task, gpu_ids))
        wanted = self._count_runnable() - self._starting
        if wanted > 0:
            self._starting += wanted
            actions.append(StartWorkers(wanted))
        return actions

    def _count_runnable(self, limit: int = 64) -> int:
        """How many queued tasks could start now if there were workers for them."""
        available = dict(self.available)
        count = 0
        for queue in self._queues.values():
            for task in queue:
                if count >= limit or not fits(task.spec.demand, available):
                    break
                subtract(available, task.spec.demand)
                count += 1
        return count
