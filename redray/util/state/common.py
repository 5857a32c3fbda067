"""The records the state API returns, with Ray's names and fields (ray.util.state.common).

Each is a dataclass that also allows dict-style access (`task["state"]`), as Ray's do.
A column's metadata says whether it is only filled with `detail=True` and whether it can
be used in `filters`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

#: What list_* return when no `limit` is given (Ray's DEFAULT_LIMIT).
DEFAULT_LIMIT = 100
#: Ray's default timeout of a state API call, in seconds (accepted; reads here are local).
DEFAULT_RPC_TIMEOUT = 30
#: The filter predicates Ray supports.
PREDICATES = ("=", "!=")


def column(*, detail: bool = False, filterable: bool = False) -> Any:
    return field(default=None, metadata={"detail": detail, "filterable": filterable})


class StateSchema:
    """Dict-style access and the column lists, for every state record."""

    @classmethod
    def list_columns(cls, detail: bool = True) -> list[str]:
        return [f.name for f in fields(cls) if detail or not f.metadata.get("detail")]  # type: ignore[arg-type]

    @classmethod
    def columns(cls) -> set[str]:
        return set(cls.list_columns(detail=True))

    @classmethod
    def base_columns(cls) -> set[str]:
        return set(cls.list_columns(detail=False))

    @classmethod
    def detail_columns(cls) -> set[str]:
        return cls.columns()

    @classmethod
    def filterable_columns(cls) -> set[str]:
        return {f.name for f in fields(cls) if f.metadata.get("filterable")}  # type: ignore[arg-type]

    @classmethod
    def from_record(cls, record: dict[str, Any], detail: bool) -> Any:
        """An instance from a dict; without `detail`, detail-only columns stay None."""
        names = cls.list_columns(detail)
        return cls(**{name: record.get(name) for name in names})

    def asdict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def __setitem__(self, key: str, value: Any) -> None:
        setattr(self, key, value)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)


@dataclass
class TaskState(StateSchema):
    task_id: str | None = column(filterable=True)
    attempt_number: int | None = column(filterable=True)
    name: str | None = column(filterable=True)
    state: str | None = column(filterable=True)
    job_id: str | None = column(filterable=True)
    actor_id: str | None = column(filterable=True)
    type: str | None = column(filterable=True)
    func_or_class_name: str | None = column(filterable=True)
    parent_task_id: str | None = column(filterable=True)
    node_id: str | None = column(filterable=True)
    worker_id: str | None = column(filterable=True)
    worker_pid: int | None = column(filterable=True)
    error_type: str | None = column(filterable=True)
    language: str | None = column(detail=True, filterable=True)
    required_resources: dict | None = column(detail=True)
    runtime_env_info: dict | None = column(detail=True)
    placement_group_id: str | None = column(detail=True, filterable=True)
    events: list | None = column(detail=True)
    profiling_data: dict | None = column(detail=True)
    creation_time_ms: int | None = column(detail=True)
    start_time_ms: int | None = column(detail=True)
    end_time_ms: int | None = column(detail=True)
    task_log_info: dict | None = column(detail=True)
    error_message: str | None = column(detail=True)
    is_debugger_paused: bool | None = column(detail=True, filterable=True)
    call_site: str | None = column(detail=True)
    label_selector: dict | None = column(detail=True)


@dataclass
class ActorState(StateSchema):
    actor_id: str | None = column(filterable=True)
    class_name: str | None = column(filterable=True)
    state: str | None = column(filterable=True)
    job_id: str | None = column(filterable=True)
    name: str | None = column(filterable=True)
    node_id: str | None = column(filterable=True)
    pid: int | None = column(filterable=True)
    ray_namespace: str | None = column(filterable=True)
    serialized_runtime_env: str | None = column(detail=True)
    required_resources: dict | None = column(detail=True)
    death_cause: dict | None = column(detail=True)
    is_detached: bool | None = column(detail=True)
    placement_group_id: str | None = column(detail=True, filterable=True)
    repr_name: str | None = column(detail=True, filterable=True)
    num_restarts: int | None = column(detail=True)
    call_site: str | None = column(detail=True)


@dataclass
class ObjectState(StateSchema):
    object_id: str | None = column(filterable=True)
    object_size: int | None = column(filterable=True)
    task_status: str | None = column(filterable=True)
    attempt_number: int | None = column(filterable=True)
    reference_type: str | None = column(filterable=True)
    call_site: str | None = column(filterable=True)
    type: str | None = column(filterable=True)
    pid: int | None = column(filterable=True)
    ip: str | None = column(filterable=True)
    #: redray extras (what `redray memory` shows): the node holding the primary copy, and
    #: whether it is spilled to disk there.
    node_id: str | None = column(detail=True)
    spilled: bool | None = column(detail=True)


@dataclass
class NodeState(StateSchema):
    node_id: str | None = column(filterable=True)
    node_ip: str | None = column(filterable=True)
    is_head_node: bool | None = column(filterable=True)
    state: str | None = column(filterable=True)
    state_message: str | None = column()
    node_name: str | None = column(filterable=True)
    resources_total: dict | None = column()
    labels: dict | None = column()
    start_time_ms: int | None = column(detail=True)
    end_time_ms: int | None = column(detail=True)


@dataclass
class JobState(StateSchema):
    job_id: str | None = column(filterable=True)
    submission_id: str | None = column(filterable=True)
    entrypoint: str | None = column()
    type: str | None = column(filterable=True)
    status: str | None = column(filterable=True)
    message: str | None = column()
    error_type: str | None = column()
    driver_info: dict | None = column()
    start_time: int | None = column(detail=True)
    end_time: int | None = column(detail=True)
    metadata: dict | None = column(detail=True)
    runtime_env: dict | None = column(detail=True)
    driver_node_id: str | None = column(detail=True)
    driver_exit_code: int | None = column(detail=True)


@dataclass
class PlacementGroupState(StateSchema):
    placement_group_id: str | None = column(filterable=True)
    name: str | None = column(filterable=True)
    creator_job_id: str | None = column(filterable=True)
    state: str | None = column(filterable=True)
    bundles: list | None = column(detail=True)
    is_detached: bool | None = column(detail=True, filterable=True)
    stats: dict | None = column(detail=True)


@dataclass
class WorkerState(StateSchema):
    worker_id: str | None = column(filterable=True)
    is_alive: bool | None = column(filterable=True)
    worker_type: str | None = column(filterable=True)
    exit_type: str | None = column(filterable=True)
    node_id: str | None = column(filterable=True)
    ip: str | None = column(filterable=True)
    pid: int | None = column(filterable=True)
    exit_detail: str | None = column(detail=True)
    start_time_ms: int | None = column(detail=True)
    end_time_ms: int | None = column(detail=True)
