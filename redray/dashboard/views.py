"""What the dashboard shows, read from the control store: plain JSON-able data, the same
for the page and for scripts using the JSON API."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import redis

from redray.client.node_view import read_nodes
from redray.control import keys
from redray.jobs import records

#: Error records the errors view returns at most.
MAX_ERRORS = 1000


class NotFound(LookupError):
    """An id in the URL names nothing (answered with 404)."""


def nodes(client: redis.Redis) -> list[dict[str, Any]]:
    found = []
    for state, alive in read_nodes(client, include_dead=True):
        found.append(
            {
                "node_id": state.node_id,
                "state": "ALIVE" if alive else "DEAD",
                "is_head_node": state.is_head,
                "node_ip": state.address,
                "hostname": state.hostname,
                "resources_total": _public(state.total),
                "resources_available": _public(state.available) if alive else {},
                "queued_tasks": state.queued if alive else 0,
                "object_store_memory": state.extra.get("object_store_memory"),
            }
        )
    return sorted(found, key=lambda node: (node["state"] != "ALIVE", not node["is_head_node"]))


def node(client: redis.Redis, node_id: str) -> dict[str, Any]:
    for found in nodes(client):
        if found["node_id"] == node_id:
            return found
    raise NotFound(f"no node {node_id!r} in this cluster")


def jobs(client: redis.Redis) -> list[dict[str, Any]]:
    return [_job(job) for job in records.read_all(client)]


def job(client: redis.Redis, submission_id: str) -> dict[str, Any]:
    found = records.read(client, submission_id)
    if found is None:
        raise NotFound(f"no job {submission_id!r} in this cluster")
    logs = client.xrange(keys.job_logs(submission_id))
    return {**_job(found), "logs": "".join(f[b"t"].decode(errors="replace") for _, f in logs)}


def errors(client: redis.Redis, limit: int) -> list[dict[str, Any]]:
    if not 1 <= limit <= MAX_ERRORS:
        raise ValueError(f"limit must be between 1 and {MAX_ERRORS}; got {limit}")
    return [json.loads(raw) for raw in client.lrange(keys.ERRORS, 0, limit - 1)]


def overview(client: redis.Redis) -> dict[str, Any]:
    listed = nodes(client)
    alive = [n for n in listed if n["state"] == "ALIVE"]
    total: dict[str, float] = {}
    available: dict[str, float] = {}
    for found in alive:
        for name, amount in found["resources_total"].items():
            total[name] = total.get(name, 0.0) + amount
            available[name] = available.get(name, 0.0) + found["resources_available"].get(name, 0)
    job_states: dict[str, int] = {}
    for found in records.read_all(client):
        job_states[found.status.value] = job_states.get(found.status.value, 0) + 1
    return {
        "nodes": {"alive": len(alive), "dead": len(listed) - len(alive)},
        "resources": {
            name: {"total": total[name], "used": total[name] - available[name]} for name in total
        },
        "queued_tasks": sum(n["queued_tasks"] for n in alive),
        "jobs": job_states,
        "errors": client.llen(keys.ERRORS),
    }


def _job(found: records.JobInfo) -> dict[str, Any]:
    return {**dataclasses.asdict(found), "status": found.status.value}


def _public(resources: dict[str, float]) -> dict[str, float]:
    """Without the per-node `node:<ip>` marker resources."""
    return {name: amount for name, amount in resources.items() if not name.startswith("node:")}
