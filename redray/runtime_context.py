"""What a running task (or the driver) can learn about where and as what it runs."""

from __future__ import annotations

import json
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
    #: "<module>.<qualified name>" of the running task's function or actor method.
    function_name: str | None = None
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

#: The accelerator kinds get_accelerator_ids() lists, as Ray 2.x does.
_ACCELERATOR_KINDS = (
    "GPU", "TPU", "NPU", "HPU", "neuron_cores", "RBLN", "MBLT", "TTNPU", "FURIOSA",
)  # fmt: skip
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

    def get_task_function_name(self) -> str | None:
        """ "<module>.<qualified name>" of the running task or actor method; None in the
        driver."""
        return current.function_name if current.task_id is not None else None

    def get_assigned_resources(self) -> dict[str, float]:
        """What the running task or actor holds (an actor: what it holds for life)."""
        return dict(current.assigned_resources)

    def get_accelerator_ids(self) -> dict[str, list[str]]:
        """The accelerator ids assigned to this worker, by kind (only GPUs in redray)."""
        return {
            kind: [str(gpu) for gpu in current.gpu_ids] if kind == "GPU" else []
            for kind in _ACCELERATOR_KINDS
        }

    def get_placement_group_id(self) -> str | None:
        """The id of the placement group the task or actor runs in, else None."""
        return current.placement_group["id"] if current.placement_group else None

    @property
    def current_placement_group(self) -> Any:
        """The PlacementGroup the task or actor runs in, else None."""
        from redray.util.placement_group import get_current_placement_group

        return get_current_placement_group()

    @property
    def should_capture_child_tasks_in_placement_group(self) -> bool:
        """Whether tasks submitted from here go into the current placement group."""
        return bool(current.placement_group and current.placement_group.get("capture"))

    def get_runtime_env_string(self) -> str:
        """The current runtime_env as a JSON string ("{}" when there is none)."""
        return json.dumps(current.runtime_env or {})

    @property
    def runtime_env(self) -> dict[str, Any]:
        return dict(current.runtime_env or {})

    @property
    def was_current_actor_reconstructed(self) -> bool:
        """Whether this actor was restarted (a property, as in Ray)."""
        return current.attempt > 0 and current.actor_id is not None

    @property
    def current_actor(self) -> Any:
        """A handle to the current actor (RuntimeError outside an actor)."""
        if current.actor_id is None:
            raise RuntimeError("This method is only available in an actor.")
        from redray.actor import _handle_from_record

        return _handle_from_record(session.current_client(), current.actor_id)

    def get(self) -> dict[str, Any]:
        """job_id, node_id and namespace, plus task_id in a task and actor_id in an actor."""
        context: dict[str, Any] = {
            "job_id": current.job_id,
            "node_id": current.node_id,
            "namespace": current.namespace,
        }
        if current.task_id is not None:
            context["task_id"] = current.task_id
        if current.actor_id is not None:
            context["actor_id"] = current.actor_id
        return context

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
    def actor_id(self) -> str | None:
        return current.actor_id

    @property
    def namespace(self) -> str:
        return current.namespace

    @property
    def worker_mode(self) -> str:
        return current.mode

    @property
    def gcs_address(self) -> str:
        return session.current_address()
