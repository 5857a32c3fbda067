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
from redray.util.state.api import list_from, task_summary
from redray.util.state.timeline import chrome_trace_events

#: The state API's kinds the dashboard lists, by URL name.
LISTS = {
    "tasks": "tasks",
    "actors": "actors",
    "objects": "objects",
    "placement_groups": "placement_groups",
    "workers": "workers",
}
#: Rows one list page returns at most (the server pages, the browser never holds 100k).
MAX_LIMIT = 1000

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
        "tasks": task_counts(client),
        "jobs": job_states,
        "errors": client.llen(keys.ERRORS),
    }


def listing(
    client: redis.Redis, kind: str, filters: list[tuple[str, str, str]], limit: int, detail: bool
) -> list[dict[str, Any]]:
    """A state API list (`redray list <kind>`), filtered before the limit."""
    if kind not in LISTS:
        raise NotFound(f"no list {kind!r}; the lists are {', '.join(LISTS)}")
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}; got {limit}")
    return [row.asdict() for row in list_from(client, LISTS[kind], filters, limit, detail)]


def task(client: redis.Redis, task_id: str) -> dict[str, Any]:
    """Every recorded attempt of one task, in full."""
    attempts = listing(client, "tasks", [("task_id", "=", task_id)], MAX_LIMIT, detail=True)
    if not attempts:
        raise NotFound(f"no task {task_id!r} recorded in this cluster")
    attempts.sort(key=lambda attempt: attempt.get("attempt_number") or 0)
    return {"task_id": task_id, "attempts": attempts}


def actor(client: redis.Redis, actor_id: str) -> dict[str, Any]:
    found = listing(client, "actors", [("actor_id", "=", actor_id)], 1, detail=True)
    if not found:
        raise NotFound(f"no actor {actor_id!r} in this cluster")
    calls = listing(client, "tasks", [("actor_id", "=", actor_id)], 100, detail=False)
    return {**found[0], "calls": calls}


def task_counts(client: redis.Redis) -> dict[str, Any]:
    """Tasks by state, over every job's recorded history."""
    counts: dict[str, int] = {}
    for entry in task_summary(client)["cluster"]["summary"].values():
        for state, count in entry["state_counts"].items():
            counts[state] = counts.get(state, 0) + count
    return counts


def timeline(client: redis.Redis) -> list[dict[str, Any]]:
    return chrome_trace_events(client)


def _job(found: records.JobInfo) -> dict[str, Any]:
    return {**dataclasses.asdict(found), "status": found.status.value}


def _public(resources: dict[str, float]) -> dict[str, float]:
    """Without the per-node `node:<ip>` marker resources."""
    return {name: amount for name, amount in resources.items() if not name.startswith("node:")}
