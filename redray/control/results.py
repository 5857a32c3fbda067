"""Committing a task's outputs and recording failures: shared by workers, daemons, drivers."""

from __future__ import annotations

import json
import os
import pickle
import time
from collections.abc import Sequence
from typing import Any

import redis

from redray.control import keys
from redray.control.entry import Entry
from redray.control.scripts import Commands
from redray.task_spec import TaskSpec

#: How many failure records Redis keeps for error_info().
ERRORS_KEPT = 1000


def commit_outputs(
    commands: Commands,
    pipe: redis.client.Pipeline,
    spec: TaskSpec,
    entries: Sequence[Entry],
    final_state: str = "finished",
    notify_owner: bool = True,
) -> None:
    """Queue the atomic commit of a task's return values on `pipe` (exactly once per task)."""
    commit_entries(
        commands, pipe, spec.task_id, spec.owner, spec.return_ids, entries, final_state,
        notify_owner,
    )  # fmt: skip


def commit_entries(
    commands: Commands,
    pipe: redis.client.Pipeline,
    task_id: str,
    owner: str,
    object_ids: Sequence[str],
    entries: Sequence[Entry],
    final_state: str = "finished",
    notify_owner: bool = True,
) -> None:
    flat: list[Any] = []
    for object_id, entry in zip(object_ids, entries):
        flat += [object_id, entry.kind, entry.size, entry.node, entry.data]
    if not notify_owner:
        flat.append("0")
    commands.call("commit_objects", task_id, owner, final_state, len(entries), *flat, pipe=pipe)


def error_entries(error: bytes, count: int) -> list[Entry]:
    """A pickled error (objectstore/serialization.py:dumps) as the entries of `count` return
    values: how every failed, cancelled or lost task's results are written."""
    return [Entry("e", len(error), "", error)] * count


def fail_returns(
    commands: Commands,
    pipe: redis.client.Pipeline,
    task_id: str,
    owner: str,
    return_ids: Sequence[str],
    error: bytes,
    final_state: str = "finished",
) -> None:
    """Queue the commit of a pickled error as every return value of a task (exactly once
    per task, like any commit: refused if the task already has a terminal state)."""
    entries = error_entries(error, len(return_ids))
    commit_entries(commands, pipe, task_id, owner, return_ids, entries, final_state)


def record_failure(
    pipe: redis.client.Pipeline,
    spec: TaskSpec,
    error_entry: Entry,
    node_id: str | None,
    **extra: Any,
) -> None:
    """Append a failure record (what error_info() and `redray errors` list)."""
    try:
        error = pickle.loads(error_entry.data)
        message = str(error)
        error_type = type(getattr(error, "cause", None) or error).__name__
    except Exception:  # the record must be written even if the error cannot be loaded
        message, error_type = "<error that could not be deserialized>", "Unknown"
    record = {
        "type": "task",
        "task_id": spec.task_id,
        "task_name": spec.name,
        "job_id": spec.job_id,
        "node_id": node_id,
        "pid": os.getpid(),
        "attempt": spec.attempt,
        "error_type": error_type,
        "message": message,
        "time": time.time(),
        **extra,
    }
    pipe.lpush(keys.ERRORS, json.dumps(record))
    pipe.ltrim(keys.ERRORS, 0, ERRORS_KEPT - 1)
