"""The local scheduler of one node, as a pure state machine.

Events come in (a task arrived, a worker is ready, finished, blocked, died), actions come
out (dispatch this task to that worker, start workers). It holds no processes and no Redis
connection, so every decision is testable on its own; the node daemon carries the actions
out.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from redray.runtime_env.spec import code_key
from redray.scheduler.bundles import pg_of
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
    #: The placement group bundle whose reservation it holds (None: the node's pool).
    bundle: tuple[str, int] | None = None


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
        #: The code environment (runtime_env code_key) each worker serves, once it has
        #: taken a task: a worker runs tasks of one code environment only.
        self._code_of: dict[str, str] = {}
        self._running: dict[str, _Running] = {}
        self._starting = 0
        #: Workers that reported ready: one that dies before that was still "starting".
        self._started: set[str] = set()
        #: Workers dedicated to actors, with what each actor holds while it lives.
        self._actors: dict[str, _Running] = {}
        #: Placement group bundles reserved here: (group id, index) -> what is free in it.
        self._bundles: dict[tuple[str, int], dict[str, float]] = {}

    # ---- events ----------------------------------------------------------------------

    def add_task(self, task: QueuedTask) -> list[Action]:
        self._queues.setdefault(self._queue_key(task.spec), deque()).append(task)
        return self._schedule()

    def worker_ready(self, worker_id: str, *, new: bool) -> list[Action]:
        """A worker is idle: newly started (`new`), or done with its task."""
        if new:
            self._starting = max(0, self._starting - 1)
            self._started.add(worker_id)
        self._release(worker_id)
        self._idle.append(worker_id)
        return self._schedule()

    def worker_gone(self, worker_id: str) -> tuple[QueuedTask | None, list[Action]]:
        """A worker exited (retired or died); returns the task it was running, if any."""
        if worker_id in self._started:
            self._started.discard(worker_id)
        else:  # died while starting: without this, no worker would replace it
            self._starting = max(0, self._starting - 1)
        if worker_id in self._idle:
            self._idle.remove(worker_id)
        self._code_of.pop(worker_id, None)
        running = self._running.get(worker_id)
        self._release(worker_id)
        return (running.task if running else None), self._schedule()

    def expect_workers(self, count: int) -> list[Action]:
        """Prestart a pool of workers (at node start)."""
        self._starting += count
        return [StartWorkers(count)] if count else []

    def keep_warm(self, count: int) -> list[Action]:
        """Start workers until `count` are idle or starting (after an actor took one, so
        that the next task or actor does not wait for a fork)."""
        missing = count - len(self._idle) - self._starting
        if missing <= 0:
            return []
        self._starting += missing
        return [StartWorkers(missing)]

    def take_surplus_idle(self, keep: int) -> list[str]:
        """Idle workers beyond `keep` (the oldest idle first), taken out of the pool."""
        surplus = []
        while len(self._idle) > keep:
            surplus.append(self._idle.popleft())
            self._code_of.pop(surplus[-1], None)
        return surplus

    def task_of(self, worker_id: str) -> QueuedTask | None:
        running = self._running.get(worker_id)
        return running.task if running else None

    def worker_blocked(self, worker_id: str) -> list[Action]:
        """The worker waits in get(): lend its CPU to other tasks meanwhile."""
        running = self._running.get(worker_id)
        if running is None or running.blocked:
            return []
        running.blocked = True
        add(self._pool(running.bundle), {"CPU": running.held.get("CPU", 0.0)})
        return self._schedule()

    def worker_unblocked(self, worker_id: str) -> list[Action]:
        running = self._running.get(worker_id)
        if running is not None and running.blocked:
            running.blocked = False
            subtract(self._pool(running.bundle), {"CPU": running.held.get("CPU", 0.0)})
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
        pool = self._pool(running.bundle)
        add(pool, released)
        subtract(pool, held)
        gpu_ids = running.gpu_ids
        if not held.get("GPU"):
            self.gpus.release(running.gpu_ids, running.held.get("GPU", 0.0))
            gpu_ids = []
        self._actors[worker_id] = _Running(running.task, dict(held), gpu_ids, bundle=running.bundle)
        return self._schedule()

    def actor_exited(self, worker_id: str) -> list[Action]:
        """An actor's worker ended: what the actor held is free again."""
        running = self._actors.pop(worker_id, None)
        self._started.discard(worker_id)
        if running is not None:
            add(self._pool(running.bundle), running.held)
            self.gpus.release(running.gpu_ids, running.held.get("GPU", 0.0))
        return self._schedule()

    @property
    def queued_count(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    @property
    def running_count(self) -> int:
        """Tasks running on workers now (actors not counted)."""
        return len(self._running)

    @property
    def actor_count(self) -> int:
        return len(self._actors)

    # ---- decisions -------------------------------------------------------------------

    def _release(self, worker_id: str) -> None:
        running = self._running.pop(worker_id, None)
        if running is None:
            return
        held = dict(running.held)
        if running.blocked:
            held.pop("CPU", None)
        add(self._pool(running.bundle), held)
        self.gpus.release(running.gpu_ids, running.held.get("GPU", 0.0))

    def _runnable(self, available: dict[str, float]) -> tuple[tuple, str] | None:
        """A queue whose first task fits now, and an idle worker for its code environment."""
        for shape, queue in self._queues.items():
            demand = queue[0].spec.demand
            pool = available
            if pg_of(queue[0].spec) is not None:
                bundle = self._bundle_for(queue[0].spec)
                if bundle is None:
                    continue
                pool = self._bundles[bundle]
            if not fits(demand, pool) or not self.gpus.can_allocate(demand.get("GPU", 0.0)):
                continue
            worker_id = self._idle_worker_for(code_key(queue[0].spec.runtime_env))
            if worker_id is not None:
                return shape, worker_id
        return None

    def _idle_worker_for(self, code: str) -> str | None:
        """An idle worker already serving this code environment, else one serving none."""
        fresh = None
        for worker_id in self._idle:
            served = self._code_of.get(worker_id)
            if served == code:
                return worker_id
            if served is None and fresh is None:
                fresh = worker_id
        return fresh

    def _schedule(self) -> list[Action]:
        actions: list[Action] = []
        while self._idle:
            runnable = self._runnable(self.available)
            if runnable is None:
                break
            shape, worker_id = runnable
            queue = self._queues[shape]
            task = queue.popleft()
            if not queue:
                del self._queues[shape]
            self._idle.remove(worker_id)
            self._code_of[worker_id] = code_key(task.spec.runtime_env)
            demand = task.spec.demand
            bundle = self._bundle_for(task.spec) if pg_of(task.spec) is not None else None
            subtract(self._pool(bundle), demand)
            gpu_ids = self.gpus.allocate(demand.get("GPU", 0.0))
            self._running[worker_id] = _Running(task, dict(demand), gpu_ids, bundle=bundle)
            actions.append(Dispatch(worker_id, task, gpu_ids))
        wanted = self._count_runnable() - self._starting
        if wanted > 0:
            self._starting += wanted
            actions.append(StartWorkers(wanted))
        return actions

    def _count_runnable(self, limit: int = 64) -> int:
        """How many queued tasks could start now if there were workers for them."""
        pools: dict[tuple[str, int] | None, dict[str, float]] = {None: dict(self.available)}
        count = 0
        for queue in self._queues.values():
            bundle = self._bundle_for(queue[0].spec) if pg_of(queue[0].spec) else None
            if bundle is None and pg_of(queue[0].spec) is not None:
                continue
            available = pools.setdefault(bundle, dict(self._pool(bundle)))
            for task in queue:
                if count >= limit or not fits(task.spec.demand, available):
                    break
                subtract(available, task.spec.demand)
                count += 1
        return count

    # ---- placement group bundles (redray/scheduler/bundles.py) ------------------------

    def reserve_bundles(self, pg_id: str, bundles: list[tuple[int, dict[str, float]]]) -> bool:
        """Take the bundles' resources out of the node's pool, all or none."""
        if all((pg_id, index) in self._bundles for index, _ in bundles):
            return True  # a repeated request
        whole: dict[str, float] = {}
        for _, resources in bundles:
            add(whole, resources)
        if not fits(whole, self.available):
            return False
        for index, resources in bundles:
            subtract(self.available, resources)
            self._bundles[(pg_id, index)] = dict(resources)
        return True

    def release_bundles(
        self, pg_id: str
    ) -> tuple[list[QueuedTask], list[str], list[str], list[Action]]:
        """Give a group's bundles back: (its queued tasks, now dropped; workers running
        its tasks; its actors' workers; actions). Running work keeps what it holds until it
        ends, then returns it to the node's pool."""
        for key in [key for key in self._bundles if key[0] == pg_id]:
            add(self.available, self._bundles.pop(key))
        queued = []
        for shape in list(self._queues):
            queue = self._queues[shape]
            for task in list(queue):
                pg = pg_of(task.spec)
                if pg is not None and pg["id"] == pg_id:
                    queue.remove(task)
                    queued.append(task)
            if not queue:
                del self._queues[shape]
        running = [w for w, r in self._running.items() if r.bundle and r.bundle[0] == pg_id]
        actors = [w for w, r in self._actors.items() if r.bundle and r.bundle[0] == pg_id]
        return queued, running, actors, self._schedule()

    def has_bundle(self, pg_id: str, index: int) -> bool:
        if index == -1:
            return any(key[0] == pg_id for key in self._bundles)
        return (pg_id, index) in self._bundles

    def _queue_key(self, spec: TaskSpec) -> tuple:
        """Tasks queue together when they need the same resources from the same place, in
        the same code environment."""
        key = shape_key(spec.demand)
        pg = pg_of(spec)
        if pg is not None:
            key = (*key, ("\x00pg", pg["id"], pg["index"]))
        code = code_key(spec.runtime_env)
        return (*key, ("\x00code", code)) if code else key

    def _pool(self, bundle: tuple[str, int] | None) -> dict[str, float]:
        """Where a task's resources come from: its bundle, or the node's pool (also once
        its bundle is released)."""
        if bundle is None:
            return self.available
        return self._bundles.get(bundle, self.available)

    def _bundle_for(self, spec: TaskSpec) -> tuple[str, int] | None:
        """The bundle a group's task runs in: its own, or (index -1) the first of the group
        here with room for it, else any of the group's bundles here."""
        pg = pg_of(spec)
        assert pg is not None
        if pg["index"] != -1:
            key = (pg["id"], pg["index"])
            return key if key in self._bundles else None
        mine = sorted(key for key in self._bundles if key[0] == pg["id"])
        for key in mine:
            if fits(spec.demand, self._bundles[key]):
                return key
        return mine[0] if mine else None
