"""Starting, tracking and stopping one node's worker processes.

Workers are forked from the node daemon, which has already imported redray (the worker's
modules included, the actor runtime too), redis, cloudpickle and numpy and runs no
threads, so a worker is ready in milliseconds, not the ~100 ms of a fresh interpreter.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy  # noqa: F401  (most tasks' values are arrays: imported once, not per worker)

import redray.worker.actor_runtime  # noqa: F401  (imported once here, not by each new actor)
from redray import ids
from redray.control.channel import Channel
from redray.worker.main import run_worker
from redray.worker.output import OutputPlace


@dataclass
class WorkerProcess:
    worker_id: str
    pid: int
    channel: Channel


def describe_exit(status: int | None) -> str:
    """How a worker ended, in words: 'killed by signal 9 (SIGKILL)', 'exited with code 1'."""
    if status is None:
        return "exited (status unknown)"
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        return f"killed by signal {number} ({signal.Signals(number).name})"
    return f"exited with code {os.WEXITSTATUS(status)}"


class WorkerPool:
    def __init__(
        self,
        redis_kwargs: dict[str, Any],
        node_id: str,
        close_in_child: Callable[[], None],
        output: OutputPlace,
    ) -> None:
        self._redis_kwargs = redis_kwargs
        self._output = output
        self._node_id = node_id
        self._close_in_child = close_in_child
        self.workers: dict[str, WorkerProcess] = {}

    def start(self) -> WorkerProcess:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        worker_id = ids.new_client_id()
        pid = os.fork()
        if pid == 0:  # the worker
            try:
                ours.close()
                self._close_in_child()
                for worker in self.workers.values():
                    worker.channel.close()
                run_worker(
                    Channel(theirs), self._redis_kwargs, self._node_id, worker_id, self._output
                )
            finally:
                os._exit(1)
        theirs.close()
        worker = WorkerProcess(worker_id, pid, Channel(ours))
        self.workers[worker_id] = worker
        return worker

    def reap(self, worker_id: str) -> str:
        """Forget a worker whose channel closed; returns how it ended."""
        worker = self.workers.pop(worker_id)
        worker.channel.close()
        try:
            _, status = os.waitpid(worker.pid, 0)
        except ChildProcessError:
            status = None
        return describe_exit(status)

    def kill(self, worker_id: str, sig: int = signal.SIGKILL) -> None:
        worker = self.workers.get(worker_id)
        if worker is not None:
            try:
                os.kill(worker.pid, sig)
            except ProcessLookupError:
                pass

    def stop_all(self) -> None:
        for worker in list(self.workers.values()):
            try:
                os.kill(worker.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for worker_id in list(self.workers):
            self.reap(worker_id)
