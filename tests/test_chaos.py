"""Chaos: a 2,000-task job with dependencies survives workers being SIGKILLed at random.

A helper thread kills worker processes (children of the embedded node daemon) while the
job runs. Every task appends one line per execution to a shared file (O_APPEND, so lines
never interleave), which lets the test check that retries stay within max_retries and that
no finished task is run again. Afterwards every result must be right and shutdown() must
leave no process and no store directory behind.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
import pytest

import redray
from redray.objectstore.shm_store import store_directory

TASKS = 2000
LEAVES = 400
KILLS = 30
MAX_RETRIES = 10


@redray.remote(max_retries=MAX_RETRIES)
def step(log: str, index: int, *inputs: int) -> int:
    """Task `index`: its own index plus the sum of the results it depends on."""
    with open(log, "a") as file:
        file.write(f"{index}\n")
    time.sleep(0.005)  # a little work, so that most kills hit a running task
    return index + sum(inputs)


def _build_job(log: str, rng: random.Random) -> tuple[list[redray.ObjectRef], list[int]]:
    """Layers of tasks: each non-leaf task sums 1-3 results of earlier tasks."""
    refs: list[redray.ObjectRef] = []
    expected: list[int] = []
    for index in range(TASKS):
        inputs = [] if index < LEAVES else rng.sample(range(index), rng.randint(1, 3))
        refs.append(step.remote(log, index, *(refs[i] for i in inputs)))
        expected.append(index + sum(expected[i] for i in inputs))
    return refs, expected


def _daemon() -> psutil.Process:
    (daemon,) = [
        p for p in psutil.Process().children() if "redray.node.daemon" in " ".join(p.cmdline())
    ]
    return daemon


class WorkerKiller(threading.Thread):
    """SIGKILLs up to `limit` random workers (with 2 CPUs busy, mostly busy ones) until
    told to stop."""

    def __init__(self, daemon: psutil.Process, limit: int, rng: random.Random) -> None:
        super().__init__(name="worker-killer", daemon=True)
        self.daemon_process = daemon
        self.limit = limit
        self.rng = rng
        self.killed: list[int] = []
        self.seen: set[int] = set()
        self.done = threading.Event()

    def run(self) -> None:
        while len(self.killed) < self.limit and not self.done.wait(self.rng.uniform(0.02, 0.1)):
            victim = self._pick()
            if victim is not None:
                try:
                    victim.send_signal(signal.SIGKILL)
                    self.killed.append(victim.pid)
                except psutil.NoSuchProcess:
                    pass

    def _pick(self) -> psutil.Process | None:
        try:
            workers = self.daemon_process.children()
        except psutil.NoSuchProcess:
            return None
        self.seen.update(worker.pid for worker in workers)
        return self.rng.choice(workers) if workers else None


@pytest.mark.timeout(300)
def test_job_survives_random_worker_kills(ray_fresh: Any, tmp_path: Path) -> None:
    context = ray_fresh(num_cpus=2)
    node_id = context["node_id"]
    daemon = _daemon()
    cluster_pids = {daemon.pid, *(p.pid for p in psutil.Process().children())}
    seed = os.getpid()
    log = tmp_path / "executions"
    killer = WorkerKiller(daemon, KILLS, random.Random(seed))
    killer.start()
    try:
        refs, expected = _build_job(str(log), random.Random(seed + 1))
        assert redray.get(refs, timeout=240) == expected
    finally:
        killer.done.set()
        killer.join(timeout=30)
    assert killer.killed, "the killer never found a worker to kill"

    runs = Counter(int(line) for line in log.read_text().split())
    assert set(runs) == set(range(TASKS))
    assert max(runs.values()) <= MAX_RETRIES + 1
    # A task re-runs only if a kill interrupted it: never more re-runs than kills.
    assert sum(runs.values()) - TASKS <= len(killer.killed)

    cluster_pids |= killer.seen | {worker.pid for worker in daemon.children()}
    redray.shutdown()
    left = [pid for pid in cluster_pids if _alive(pid)]
    assert left == [], f"processes left after shutdown: {left}"
    assert not store_directory(node_id).exists()


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
