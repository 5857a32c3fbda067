"""The job table: one record per driver (job), for `list_jobs` and the CLI, and the
settings of the job's task event history (client/task_events.py)."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import redis

from redray.client.task_events import DEFAULT_MAX_PER_JOB, DEFAULT_TTL_SECONDS
from redray.control import keys


def cluster_defaults(client: redis.Redis) -> tuple[int, float]:
    """The task event cap and TTL `redray start` set for the cluster (else the defaults)."""
    cap, ttl = client.hmget(keys.CLUSTER, "task_events_max_per_job", "task_events_ttl_s")
    return (
        int(cap) if cap else DEFAULT_MAX_PER_JOB,
        float(ttl) if ttl else DEFAULT_TTL_SECONDS,
    )


def register_job(
    client: redis.Redis,
    job_id: str,
    *,
    driver_client_id: str,
    node_id: str | None,
    namespace: str,
    max_task_events: int,
    ttl_seconds: float,
) -> None:
    """Record a starting job and its task event settings (read by every writer's Lua)."""
    record = {
        "job_id": job_id,
        "status": "RUNNING",
        "entrypoint": " ".join([os.path.basename(sys.executable), *sys.argv]).strip(),
        "start_time": int(time.time() * 1000),
        "end_time": 0,
        "driver_pid": os.getpid(),
        "driver_node_id": node_id,
        "driver_client_id": driver_client_id,
        "namespace": namespace,
    }
    meta = keys.task_events_meta(job_id)
    pipe = client.pipeline(transaction=False)
    pipe.hset(keys.DRIVER_JOBS, job_id, json.dumps(record))
    pipe.hset(meta, mapping={"cap": max_task_events, "ttl": int(ttl_seconds)})
    pipe.expire(meta, int(ttl_seconds))
    pipe.execute()


def end_job(client: redis.Redis, job_id: str, ttl_seconds: float) -> None:
    """The driver ends: its job is SUCCEEDED, and its task history lives `ttl_seconds`."""
    raw = client.hget(keys.DRIVER_JOBS, job_id)
    if raw is None:
        return
    record: dict[str, Any] = json.loads(raw)
    record.update(status="SUCCEEDED", end_time=int(time.time() * 1000))
    pipe = client.pipeline(transaction=False)
    pipe.hset(keys.DRIVER_JOBS, job_id, json.dumps(record))
    pipe.expire(keys.task_events(job_id), int(ttl_seconds))
    pipe.expire(keys.task_events_meta(job_id), int(ttl_seconds))
    pipe.execute()
