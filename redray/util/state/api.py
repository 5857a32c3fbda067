"""`redray.util.state`: Ray's state API (list_*, get_*, summarize_*) read from Redis.

Unlike Ray's, filters are applied before `limit` (a RUNNING task is never cut off by
10,000 finished ones) and nothing is truncated except by `limit`. A job whose history
reached its cap says how many events it dropped (a warning here, a line in the CLI).
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import redis

from redray import session
from redray.util.state import sources
from redray.util.state import tasks as task_history
from redray.util.state.common import (
    DEFAULT_LIMIT,
    DEFAULT_RPC_TIMEOUT,
    PREDICATES,
    ActorState,
    JobState,
    NodeState,
    ObjectState,
    PlacementGroupState,
    StateSchema,
    TaskState,
    WorkerState,
)

logger = logging.getLogger(__name__)

Filter = tuple[str, str, Any]

# ---- reaching the cluster --------------------------------------------------------------


def connect(address: str | None = None) -> redis.Redis:
    """The Redis of the current session, else of `address` (or this machine's cluster)."""
    client = session.client_if_connected() if address is None else None
    if client is not None:
        return client.redis
    from redray.cluster import connect_kwargs, resolve_address

    target = resolve_address(address or "auto")
    if target is None:
        raise ConnectionError(
            "No redray cluster to read the state of: call redray.init() first, or start one "
            "with `redray start --head` and pass its address."
        )
    return redis.Redis(**connect_kwargs(target, None))


# ---- filters ---------------------------------------------------------------------------


def check_filters(schema: type[StateSchema], filters: Iterable[Filter] | None) -> list[Filter]:
    """Validated filters (value types converted as the column holds them)."""
    checked = []
    valid = sorted(schema.filterable_columns())
    for item in filters or []:
        if not isinstance(item, (tuple, list)) or len(item) != 3:
            raise ValueError(f"A filter is a (key, predicate, value) tuple, got {item!r}.")
        key, predicate, value = item
        if key not in schema.filterable_columns():
            raise ValueError(
                f"The given filter column {key!r} is not supported. Supported filter "
                f"columns: {valid}"
            )
        if predicate not in PREDICATES:
            raise ValueError(
                f"Unsupported filter predicate {predicate!r}. Available predicates: "
                f"{', '.join(PREDICATES)}."
            )
        checked.append((key, predicate, _typed(schema, key, value)))
    return checked


def _typed(schema: type[StateSchema], key: str, value: Any) -> Any:
    """A filter value given as text (CLI) in the column's type."""
    annotation = str(schema.__dataclass_fields__[key].type)  # type: ignore[attr-defined]
    if isinstance(value, str):
        if annotation.startswith("int"):
            try:
                return int(value)
            except ValueError:
                return value
        if annotation.startswith("bool"):
            return value.lower() in ("true", "1", "yes")
        if key in ("state", "type", "status", "worker_type", "reference_type", "error_type"):
            return value.upper()
    return value


def matches(record: dict[str, Any], filters: list[Filter]) -> bool:
    for key, predicate, value in filters:
        if (record.get(key) == value) != (predicate == "="):
            return False
    return True


def _select(
    schema: type[StateSchema],
    records: Iterable[dict[str, Any]],
    filters: list[Filter],
    limit: int,
    detail: bool,
) -> list[Any]:
    """Filter first, then take `limit`."""
    out = []
    for record in records:
        if len(out) >= limit:
            break
        if matches(record, filters):
            out.append(schema.from_record(record, detail))
    return out


def _check_limit(limit: int) -> None:
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        raise ValueError(f"limit must be a non-negative int, got {limit!r}.")


#: Reads the records of one kind: (client, validated filters, limit) -> records.
Source = Callable[[redis.Redis, list[Filter], int], Iterable[dict]]


def list_from(
    client: redis.Redis,
    kind: str,
    filters: Iterable[Filter] | None = None,
    limit: int = DEFAULT_LIMIT,
    detail: bool = False,
) -> list[Any]:
    """list_<kind> against a given Redis client (the CLI's way in)."""
    schema, source = SOURCES[kind]
    _check_limit(limit)
    checked = check_filters(schema, filters)
    return _select(schema, source(client, checked, limit), checked, limit, detail)


def _lister(schema: type[StateSchema], source: Source) -> Callable[..., list[Any]]:
    def list_resources(
        address: str | None = None,
        filters: list[Filter] | None = None,
        limit: int = DEFAULT_LIMIT,
        timeout: int = DEFAULT_RPC_TIMEOUT,
        detail: bool = False,
        raise_on_missing_output: bool = True,
        _explain: bool = False,
    ) -> list[Any]:
        _check_limit(limit)
        checked = check_filters(schema, filters)
        return _select(schema, source(connect(address), checked, limit), checked, limit, detail)

    return list_resources


# ---- tasks -----------------------------------------------------------------------------


def _task_records(
    client: redis.Redis, filters: list[Filter], limit: int = 0
) -> Iterator[dict[str, Any]]:
    _warn_dropped(client)
    return task_history.iter_records(client, filters)


def _warn_dropped(client: redis.Redis) -> None:
    dropped = task_history.dropped_counts(client)
    if dropped:
        total = sum(dropped.values())
        message = (
            f"{total} task event(s) were dropped because jobs reached their task history cap "
            f"({', '.join(f'job {j}: {n}' for j, n in dropped.items())}); raise it with "
            "init(task_events_max_per_job=...) or `redray start --task-events-max-per-job`."
        )
        warnings.warn(message, stacklevel=4)
        logger.warning(message)


def task_events_dropped(address: str | None = None) -> dict[str, int]:
    """redray: how many task events each job dropped at its cap (jobs with none omitted)."""
    return task_history.dropped_counts(connect(address))


list_tasks = _lister(TaskState, _task_records)
list_tasks.__name__ = "list_tasks"
list_tasks.__doc__ = """Task attempts, filtered then limited: `list_tasks(filters=[("state",
"=", "RUNNING")])`. Keys: TaskState.filterable_columns(); predicates "=" and "!="."""


def get_task(
    id: Any, address: str | None = None, timeout: int = DEFAULT_RPC_TIMEOUT, _explain: bool = False
) -> TaskState | None:
    """The latest attempt of a task (a task id, or an ObjectRef it returned); None if no
    task with that id was recorded."""
    task_id = _task_id(id)
    attempts = task_history.attempts_of(connect(address), task_id)
    return TaskState.from_record(attempts[-1], detail=True) if attempts else None


def _task_id(id: Any) -> str:
    from redray import ids
    from redray.object_ref import ObjectRef

    if isinstance(id, ObjectRef):
        return ids.task_id_of(id.hex())
    if not isinstance(id, str):
        raise TypeError(f"A task id is a str or an ObjectRef, got {type(id).__name__}.")
    return id


def summarize_tasks(
    address: str | None = None,
    timeout: int = DEFAULT_RPC_TIMEOUT,
    raise_on_missing_output: bool = True,
    _explain: bool = False,
) -> dict[str, Any]:
    """Task counts by function (or Class.method) and state, as Ray's summary."""
    return task_summary(connect(address))


def task_summary(client: redis.Redis) -> dict[str, Any]:
    _warn_dropped(client)
    summary: dict[str, dict[str, Any]] = {}
    total = total_actor_tasks = total_actor_scheduled = 0
    for record in task_history.iter_records(client, []):
        name = record.get("func_or_class_name") or record.get("name") or "?"
        entry = summary.setdefault(
            name,
            {"func_or_class_name": name, "type": record.get("type"), "state_counts": {}},
        )
        counts = entry["state_counts"]
        counts[record["state"]] = counts.get(record["state"], 0) + 1
        kind = record.get("type")
        if kind == "ACTOR_TASK":
            total_actor_tasks += 1
        elif kind == "ACTOR_CREATION_TASK":
            total_actor_scheduled += 1
        else:
            total += 1
    return {
        "cluster": {
            "summary": summary,
            "total_tasks": total,
            "total_actor_tasks": total_actor_tasks,
            "total_actor_scheduled": total_actor_scheduled,
            "summary_by": "func_name",
        }
    }


# ---- actors ----------------------------------------------------------------------------

list_actors = _lister(ActorState, sources.actor_records)
list_actors.__name__ = "list_actors"


def get_actor(
    id: str, address: str | None = None, timeout: int = DEFAULT_RPC_TIMEOUT, _explain: bool = False
) -> ActorState | None:
    """One actor by id (None if unknown)."""
    found = list(sources.actor_records(connect(address), [("actor_id", "=", id)]))
    return ActorState.from_record(found[0], detail=True) if found else None


def summarize_actors(
    address: str | None = None,
    timeout: int = DEFAULT_RPC_TIMEOUT,
    raise_on_missing_output: bool = True,
    _explain: bool = False,
) -> dict[str, Any]:
    """Actor counts by class and state."""
    return actor_summary(connect(address))


def actor_summary(client: redis.Redis) -> dict[str, Any]:
    summary: dict[str, dict[str, Any]] = {}
    total = 0
    for record in sources.actor_records(client, []):
        name = record["class_name"] or "?"
        entry = summary.setdefault(name, {"class_name": name, "state_counts": {}})
        entry["state_counts"][record["state"]] = entry["state_counts"].get(record["state"], 0) + 1
        total += 1
    return {"cluster": {"summary": summary, "total_actors": total, "summary_by": "class"}}


# ---- objects ---------------------------------------------------------------------------


list_objects = _lister(ObjectState, sources.object_records)
list_objects.__name__ = "list_objects"


def get_objects(
    id: str, address: str | None = None, timeout: int = DEFAULT_RPC_TIMEOUT, _explain: bool = False
) -> list[ObjectState]:
    """The references to one object (an empty list if unknown)."""
    records = sources.object_records(connect(address), [("object_id", "=", id)])
    return [ObjectState.from_record(record, detail=True) for record in records]


def summarize_objects(
    address: str | None = None,
    timeout: int = DEFAULT_RPC_TIMEOUT,
    raise_on_missing_output: bool = True,
    _explain: bool = False,
) -> dict[str, Any]:
    """Object counts and sizes (one group: redray records no call sites)."""
    return object_summary(connect(address))


def object_summary(client: redis.Redis) -> dict[str, Any]:
    records = list(sources.object_records(client, []))
    size_mb = sum(r["object_size"] for r in records) / 2**20
    group = {
        "total_objects": len(records),
        "total_size_mb": size_mb,
        "total_num_workers": len({r["pid"] for r in records}),
        "total_num_nodes": len({r["node_id"] for r in records}),
        "task_state_counts": dict(Counter(r["task_status"] for r in records)),
        "task_attempt_number_counts": dict(Counter(str(r["attempt_number"]) for r in records)),
        "ref_type_counts": dict(Counter(r["reference_type"] for r in records)),
    }
    return {
        "cluster": {
            "summary": {"disabled": group} if records else {},
            "total_objects": len(records),
            "total_size_mb": size_mb,
            "callsite_enabled": False,
            "summary_by": "callsite",
        }
    }


# ---- nodes, jobs, workers, placement groups ---------------------------------------------


list_nodes = _lister(NodeState, sources.node_records)
list_nodes.__name__ = "list_nodes"


def get_node(
    id: str, address: str | None = None, timeout: int = DEFAULT_RPC_TIMEOUT, _explain: bool = False
) -> NodeState | None:
    for record in sources.node_records(connect(address), []):
        if record["node_id"] == id:
            return NodeState.from_record(record, detail=True)
    return None


list_jobs = _lister(JobState, sources.job_records)
list_jobs.__name__ = "list_jobs"


list_workers = _lister(WorkerState, sources.worker_records)
list_workers.__name__ = "list_workers"


list_placement_groups = _lister(PlacementGroupState, sources.placement_group_records)
list_placement_groups.__name__ = "list_placement_groups"


def get_placement_group(
    id: str, address: str | None = None, timeout: int = DEFAULT_RPC_TIMEOUT, _explain: bool = False
) -> PlacementGroupState | None:
    for record in sources.placement_group_records(connect(address), []):
        if record["placement_group_id"] == id:
            return PlacementGroupState.from_record(record, detail=True)
    return None


#: What each list_* reads: resource name (as the CLI spells it) -> (record type, source).
SOURCES: dict[str, tuple[type[StateSchema], Source]] = {
    "tasks": (TaskState, _task_records),
    "actors": (ActorState, sources.actor_records),
    "objects": (ObjectState, sources.object_records),
    "nodes": (NodeState, sources.node_records),
    "jobs": (JobState, sources.job_records),
    "placement-groups": (PlacementGroupState, sources.placement_group_records),
    "workers": (WorkerState, sources.worker_records),
}
