"""`redray.util.state`: Ray's state API (list_*, get_*, summarize_*) read from Redis.

Unlike Ray's, filters are applied before `limit` (a RUNNING task is never cut off by
10,000 finished ones) and nothing is truncated except by `limit`. A job whose history
reached its cap says how many events it dropped (a warning here, a line in the CLI).
"""

from __future__ import annotations

import json
import logging
import pickle
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import redis

from redray.client.node_view import read_nodes
from redray.control import keys
from redray.objectstore.shm_store import spill_directory
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

_ACTOR_STATES = {
    "pending": "PENDING_CREATION",
    "alive": "ALIVE",
    "restarting": "RESTARTING",
    "dead": "DEAD",
}


# ---- reaching the cluster --------------------------------------------------------------


def connect(address: str | None = None) -> redis.Redis:
    """The Redis of the current session, else of `address` (or this machine's cluster)."""
    from redray import api

    if address is None and api.is_initialized():
        return api.current_client().redis
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

_ACTOR_FIELDS = ("state", "class", "job", "name", "namespace", "node", "pid", "restarts",
                 "detached", "death", "created")  # fmt: skip


def _actor_records(
    client: redis.Redis, filters: list[Filter], limit: int = 0
) -> Iterator[dict[str, Any]]:
    actor_ids = [raw.decode() for raw in client.smembers(keys.ACTORS)]
    for key, predicate, value in filters:
        if key == "actor_id" and predicate == "=":
            actor_ids = [str(value)]
    pipe = client.pipeline(transaction=False)
    for actor_id in actor_ids:
        pipe.hmget(keys.actor(actor_id), *_ACTOR_FIELDS)
    gone = []
    for actor_id, values in zip(actor_ids, pipe.execute()):
        if values[0] is None:
            gone.append(actor_id)
            continue
        yield _actor_record(actor_id, dict(zip(_ACTOR_FIELDS, values)))
    if gone:  # expired records of dead actors
        client.srem(keys.ACTORS, *gone)


def _actor_record(actor_id: str, raw: dict[str, bytes | None]) -> dict[str, Any]:
    text = {k: v.decode() for k, v in raw.items() if v is not None and k != "death"}
    death = None
    if raw.get("death"):
        try:
            death = {"actor_died_error_context": {"error_message": str(pickle.loads(raw["death"]))}}
        except Exception:  # an unloadable error still says the actor died
            death = {"actor_died_error_context": {"error_message": "<unreadable error>"}}
    state = _ACTOR_STATES.get(text.get("state", ""), text.get("state", "").upper())
    return {
        "actor_id": actor_id,
        "class_name": text.get("class"),
        "state": state,
        "job_id": text.get("job"),
        "name": text.get("name", ""),
        "node_id": text.get("node"),
        "pid": int(text["pid"]) if text.get("pid") else None,
        "ray_namespace": text.get("namespace"),
        "serialized_runtime_env": "{}",
        "required_resources": {},
        "death_cause": death,
        "is_detached": text.get("detached") == "1",
        "repr_name": "",
        "num_restarts": int(text.get("restarts") or 0),
    }


list_actors = _lister(ActorState, _actor_records)
list_actors.__name__ = "list_actors"


def get_actor(
    id: str, address: str | None = None, timeout: int = DEFAULT_RPC_TIMEOUT, _explain: bool = False
) -> ActorState | None:
    """One actor by id (None if unknown)."""
    found = list(_actor_records(connect(address), [("actor_id", "=", id)]))
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
    for record in _actor_records(client, []):
        name = record["class_name"] or "?"
        entry = summary.setdefault(name, {"class_name": name, "state_counts": {}})
        entry["state_counts"][record["state"]] = entry["state_counts"].get(record["state"], 0) + 1
        total += 1
    return {"cluster": {"summary": summary, "total_actors": total, "summary_by": "class"}}


# ---- objects ---------------------------------------------------------------------------


def _object_records(
    client: redis.Redis, filters: list[Filter], limit: int = 0
) -> Iterator[dict[str, Any]]:
    """Every object in the directory, with its owner's process and node."""
    nodes = {state.node_id: state for state, _ in read_nodes(client, include_dead=True)}
    owners = {k.decode(): json.loads(v) for k, v in client.hgetall(keys.CLIENTS).items()}
    object_ids = [
        key.decode()[len(keys.PREFIX) + 4 :]
        for key in client.scan_iter(match=keys.PREFIX + "obj:*", count=10_000)
        if key.count(b":") == 2
    ]
    for key, predicate, value in filters:
        if key == "object_id" and predicate == "=":
            object_ids = [str(value)]
    fields = ("k", "s", "n", "o", "r", "b")
    pipe = client.pipeline(transaction=False)
    for object_id in object_ids:
        pipe.hmget(keys.obj(object_id), *fields)
    for object_id, values in zip(object_ids, pipe.execute()):
        if values[0] is None:
            continue
        kind, size, node, owner, released, borrowers = (
            v.decode() if v is not None else None for v in values
        )
        process = owners.get(owner or "", {})
        node_id = node or process.get("node")
        node_state = nodes.get(node_id or "")
        yield {
            "object_id": object_id,
            "object_size": int(size or 0),
            "task_status": "FAILED" if kind == "e" else "FINISHED",
            "attempt_number": 0,
            "reference_type": "LOCAL_REFERENCE" if released != "1" else "BORROWED",
            "call_site": "disabled",
            "type": "DRIVER" if process.get("kind") == "driver" else "WORKER",
            "pid": process.get("pid"),
            "ip": node_state.address if node_state else None,
            "node_id": node_id,
            "spilled": bool(node and kind == "s" and _spilled(node, object_id)),
        }


def _spilled(node_id: str, object_id: str) -> bool:
    """Whether the node (of this machine) spilled the object to disk."""
    return (spill_directory(node_id) / object_id).exists()


list_objects = _lister(ObjectState, _object_records)
list_objects.__name__ = "list_objects"


def get_objects(
    id: str, address: str | None = None, timeout: int = DEFAULT_RPC_TIMEOUT, _explain: bool = False
) -> list[ObjectState]:
    """The references to one object (an empty list if unknown)."""
    records = _object_records(connect(address), [("object_id", "=", id)])
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
    records = list(_object_records(client, []))
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


def _node_records(
    client: redis.Redis, filters: list[Filter], limit: int = 0
) -> Iterator[dict[str, Any]]:
    for state, alive in read_nodes(client, include_dead=True):
        started = state.extra.get("started")
        yield {
            "node_id": state.node_id,
            "node_ip": state.address,
            "is_head_node": state.is_head,
            "state": "ALIVE" if alive else "DEAD",
            "state_message": None if alive else "The node's heartbeat expired.",
            "node_name": state.address,
            "resources_total": state.total,
            "labels": {"ray.io/node-id": state.node_id, **state.extra.get("labels", {})},
            "start_time_ms": int(started * 1000) if started else None,
            "end_time_ms": 0,
        }


list_nodes = _lister(NodeState, _node_records)
list_nodes.__name__ = "list_nodes"


def get_node(
    id: str, address: str | None = None, timeout: int = DEFAULT_RPC_TIMEOUT, _explain: bool = False
) -> NodeState | None:
    for record in _node_records(connect(address), []):
        if record["node_id"] == id:
            return NodeState.from_record(record, detail=True)
    return None


def _job_records(
    client: redis.Redis, filters: list[Filter], limit: int = 0
) -> Iterator[dict[str, Any]]:
    drivers = client.hgetall(keys.CLIENTS)
    for job_id, raw in sorted(client.hgetall(keys.DRIVER_JOBS).items()):
        job = json.loads(raw)
        status = job["status"]
        if status == "RUNNING" and job.get("driver_client_id", "").encode() not in drivers:
            status = "FAILED"  # its driver died without ending the job
        yield {
            "job_id": job_id.decode(),
            "submission_id": None,
            "entrypoint": job.get("entrypoint", ""),
            "type": "DRIVER",
            "status": status,
            "message": None,
            "error_type": None,
            "driver_info": {
                "id": job_id.decode(),
                "node_ip_address": None,
                "pid": str(job.get("driver_pid")),
            },
            "start_time": job.get("start_time"),
            "end_time": job.get("end_time"),
            "metadata": {},
            "runtime_env": {},
            "driver_node_id": job.get("driver_node_id"),
            "driver_exit_code": None,
        }
    yield from _submitted_job_records(client)


def _submitted_job_records(client: redis.Redis) -> Iterator[dict[str, Any]]:
    """Jobs submitted through the job submission API (redray/jobs/), as Ray lists them."""
    from redray.jobs import records

    for info in records.read_all(client):
        yield {
            "job_id": info.job_id,
            "submission_id": info.submission_id,
            "entrypoint": info.entrypoint,
            "type": "SUBMISSION",
            "status": str(info.status),
            "message": info.message,
            "error_type": info.error_type,
            "driver_info": {"pid": str(info.driver_pid)} if info.driver_pid else None,
            "start_time": info.start_time,
            "end_time": info.end_time,
            "metadata": info.metadata or {},
            "runtime_env": info.runtime_env or {},
            "driver_node_id": info.driver_node_id,
            "driver_exit_code": info.driver_exit_code,
        }


list_jobs = _lister(JobState, _job_records)
list_jobs.__name__ = "list_jobs"


def _worker_records(
    client: redis.Redis, filters: list[Filter], limit: int = 0
) -> Iterator[dict[str, Any]]:
    nodes = {state.node_id: state for state, _ in read_nodes(client, include_dead=True)}
    for client_id, raw in client.hgetall(keys.CLIENTS).items():
        process = json.loads(raw)
        node = nodes.get(process.get("node") or "")
        yield {
            "worker_id": client_id.decode(),
            "is_alive": True,
            "worker_type": "DRIVER" if process.get("kind") == "driver" else "WORKER",
            "exit_type": None,
            "node_id": process.get("node"),
            "ip": node.address if node else None,
            "pid": process.get("pid"),
        }


list_workers = _lister(WorkerState, _worker_records)
list_workers.__name__ = "list_workers"


def _placement_group_records(
    client: redis.Redis, filters: list[Filter], limit: int = 0
) -> Iterator[dict[str, Any]]:
    for raw_id in sorted(client.smembers(keys.PLACEMENT_GROUPS)):
        pg_id = raw_id.decode()
        record = {
            k.decode(): v.decode() for k, v in client.hgetall(keys.placement_group(pg_id)).items()
        }
        if not record:
            continue
        bundles = json.loads(record.get("bundles") or "[]")
        nodes = json.loads(record["nodes"]) if record.get("nodes") else [None] * len(bundles)
        yield {
            "placement_group_id": pg_id,
            "name": record.get("name", ""),
            "creator_job_id": record.get("job"),
            "state": record.get("state", "").upper(),
            "bundles": [
                {
                    "bundle_id": {"placement_group_id": pg_id, "bundle_index": index},
                    "unit_resources": bundle,
                    "node_id": node,
                }
                for index, (bundle, node) in enumerate(zip(bundles, nodes))
            ],
            "is_detached": record.get("lifetime") == "detached",
            "stats": {
                "scheduling_state": "FINISHED" if record.get("state") == "created" else "QUEUED"
            },
        }


list_placement_groups = _lister(PlacementGroupState, _placement_group_records)
list_placement_groups.__name__ = "list_placement_groups"


def get_placement_group(
    id: str, address: str | None = None, timeout: int = DEFAULT_RPC_TIMEOUT, _explain: bool = False
) -> PlacementGroupState | None:
    for record in _placement_group_records(connect(address), []):
        if record["placement_group_id"] == id:
            return PlacementGroupState.from_record(record, detail=True)
    return None


#: What each list_* reads: resource name (as the CLI spells it) -> (record type, source).
SOURCES: dict[str, tuple[type[StateSchema], Source]] = {
    "tasks": (TaskState, _task_records),
    "actors": (ActorState, _actor_records),
    "objects": (ObjectState, _object_records),
    "nodes": (NodeState, _node_records),
    "jobs": (JobState, _job_records),
    "placement-groups": (PlacementGroupState, _placement_group_records),
    "workers": (WorkerState, _worker_records),
}
