"""Ids: random hex for tasks and clients; object ids derive from the task that makes them.
Also the id of a process's pid namespace, which says whether two processes' pids compare."""

from __future__ import annotations

import itertools
import os

TASK_ID_BYTES = 12

# Task ids are a random per-process prefix plus a counter: unique across the cluster
# without a system call per task. Re-seeded after fork so workers never share a prefix.
_prefix = os.urandom(6).hex()
_counter = itertools.count(1)


def _reseed() -> None:
    global _prefix, _counter
    _prefix = os.urandom(6).hex()
    _counter = itertools.count(1)


os.register_at_fork(after_in_child=_reseed)


def new_task_id() -> str:
    return f"{_prefix}{next(_counter):012x}"


def new_client_id() -> str:
    return os.urandom(8).hex()


def new_node_id() -> str:
    return os.urandom(14).hex()


def object_id_for(task_id: str, index: int) -> str:
    """The id of a task's index-th return value (index 0 is used by `put`)."""
    return f"{task_id}{index:04x}"


def task_id_of(object_id: str) -> str:
    return object_id[: TASK_ID_BYTES * 2]


def pid_namespace() -> int | None:
    """Which pid namespace this process lives in (None where /proc cannot tell)."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None
