"""A worker's main loop: take a task from the node daemon, run it, say it is done."""

from __future__ import annotations

import os
import pickle
import signal
from typing import Any, NoReturn

from redray import runtime_context, session
from redray.client.core import CoreClient
from redray.control.channel import Channel
from redray.worker.executor import TaskExecutor
from redray.worker.functions import FunctionCache
from redray.worker.output import OutputPlace, WorkerOutput


def run_worker(
    channel: Channel,
    redis_kwargs: dict[str, Any],
    node_id: str,
    worker_id: str,
    output: OutputPlace,
) -> NoReturn:
    """Entry point of a forked worker process; never returns."""
    _die_with_parent()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    captured = WorkerOutput(redis_kwargs, node_id, worker_id, output.ip, output.log_dir)
    client = CoreClient(redis_kwargs, node_id=node_id, job_id="", namespace="", kind="worker")
    client.output = captured
    client.on_block = lambda: channel.send(("blocked",))
    client.on_unblock = lambda: channel.send(("unblocked",))
    session.set_client(client)
    runtime_context.current.mode = "worker"
    runtime_context.current.node_id = node_id
    runtime_context.current.worker_id = worker_id
    executor = TaskExecutor(client, FunctionCache(client.redis))

    def interrupt_task(signum: int, frame: object) -> None:
        # redray.cancel() of the running task; a late signal between tasks is ignored.
        if executor.in_user_code:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt_task)
    code = 0
    try:
        channel.send(("ready",))
        while True:
            message = channel.recv()
            if message[0] == "exit":
                break
            spec = pickle.loads(message[1])
            if spec.extra.get("actor"):  # this worker becomes the actor's, until it ends
                from redray.worker.actor_runtime import run_actor

                run_actor(client, executor, channel, spec, message[2], worker_id)
                break
            retire = executor.run(spec, message[2])
            channel.send(("done", spec.task_id, retire))
            executor.finish_commit()
            if retire:
                break
    except (EOFError, OSError):
        code = 1  # the node daemon is gone: nothing left to work for
    finally:
        captured.close()
        client.close()
    os._exit(code)


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker when its node daemon dies, even mid-task."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return  # not Linux: the worker still exits when its channel to the daemon closes
    if os.getppid() == 1:  # the daemon died before the request took effect
        os._exit(1)
