"""Where the state API reads actors, objects, nodes, jobs, workers and placement groups
from: each `*_records(client, filters, limit)` yields Ray's fields as dicts (api.py turns
them into records, filters them and applies the limit; a filter on the id narrows the
read)."""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator
from typing import Any

import redis

from redray.client.node_view import read_nodes
from redray.control import keys
from redray.objectstore.shm_store import spill_directory

Filter = tuple[str, str, Any]

_ACTOR_STATES = {
    "pending": "PENDING_CREATION",
    "alive": "ALIVE",
    "restarting": "RESTARTING",
    "dead": "DEAD",
}


_ACTOR_FIELDS = ("state", "class", "job", "name", "namespace", "node", "pid", "restarts",
                 "detached", "death", "created")  # fmt: skip


def actor_records(
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


def object_records(
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


def node_records(
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


def job_records(
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


def worker_records(
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


def placement_group_records(
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
