"""What a running task (or the driver) can learn about where and as what it runs."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from redray import session


@dataclass
class _Current:
    """Per-process facts, plus the task the main thread is executing."""

    job_id: str = ""
    node_id: str = ""
    worker_id: str = ""
    namespace: str = ""
    mode: str = "driver"
    task_id: str | None = None
    task_name: str | None = None
    actor_id: str | None = None
    actor_name: str | None = None
    #: The running task's (or actor's) runtime_env: tasks it submits inherit it.
    runtime_env: dict[str, Any] | None = None
    gpu_ids: list[int] = field(default_factory=list)
    assigned_resources: dict[str, float] = field(default_factory=dict)
    attempt: int = 0
    #: The placement group of the running task or actor: spec.extra["pg"] (see
    #: redray/util/placement_group.py), or None.
    placement_group: dict[str, Any] | None = None


current = _Current()
_lock = threading.Lock()


def current_namespace(client: Any) -> str:
    """Where named actors are created and looked up: the running task's job namespace,
    else this driver's (its job id when it did not name one)."""
    return current.namespace or client.namespace or client.job_id


class RuntimeContext:
    """Returned by `redray.get_runtime_context()`, with Ray's accessor names."""

    def get_job_id(self) -> str:
        return current.job_id

    def get_node_id(self) -> str:
        return current.node_id

    def get_worker_id(self) -> str:
        return current.worker_id

    def get_task_id(self) -> str | None:
        return current.task_id

    def get_task_name(self) -> str | None:
        return current.task_name

    def get_actor_id(self) -> str | None:
        return current.actor_id

    def get_actor_name(self) -> str | None:
        """The current actor's name ("" if it has none); None outside an actor."""
        return current.actor_name if current.actor_id is not None else None

    def get_assigned_resources(self) -> dict[str, float]:
        return dict(current.assigned_resources)

    def get_accelerator_ids(self) -> dict[str, list[str]]:
        return {"GPU": [str(gpu) for gpu in current.gpu_ids]}

    @property
    def was_current_actor_reconstructed(self) -> bool:
        """Whether this actor was restarted (a property, as in Ray)."""
        return current.attempt > 0 and current.actor_id is not None

    def get(self) -> dict[str, Any]:
        return {"job_id": current.job_id, "node_id": current.node_id, "task_id": current.task_id}

    @property
    def job_id(self) -> str:
        return current.job_id

    @property
    def node_id(self) -> str:
        return current.node_id

    @property
    def task_id(self) -> str | None:
        return current.task_id

    @property
    def namespace(self) -> str:
        return current.namespace

    @property
    def worker_mode(self) -> str:
        return current.mode

    @property
    def gcs_address(self) -> str:
        return session.current_address()
