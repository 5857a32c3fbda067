"""Ids: random hex for tasks and clients; object ids derive from the task that makes them."""

from __future__ import annotations

import os

TASK_ID_BYTES = 12


def new_task_id() -> str:
    return os.urandom(TASK_ID_BYTES).hex()


def new_client_id() -> str:
    return os.urandom(8).hex()


def new_node_id() -> str:
    return os.urandom(14).hex()


def object_id_for(task_id: str, index: int) -> str:
    """The id of a task's index-th return value (index 0 is used by `put`)."""
    return f"{task_id}{index:04x}"


def task_id_of(object_id: str) -> str:
    return object_id[: TASK_ID_BYTES * 2]
