"""`redray.timeline()`: the task event history as a Chrome trace (chrome://tracing, Perfetto).

One complete event ("ph": "X") per task attempt that ran, from RUNNING to its end (or to
now while it runs), on a row per worker process of each node, as Ray's timeline draws
them: `pid` is the node's address, `tid` the worker.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import redis

from redray.util.state import tasks as task_history


def chrome_trace_events(client: redis.Redis) -> list[dict[str, Any]]:
    from redray.client.node_view import read_nodes

    addresses = {state.node_id: state.address for state, _ in read_nodes(client, True)}
    now_us = time.time() * 1_000_000
    events = []
    for record in task_history.iter_records(client, []):
        start = record.get("start_time_us")
        if start is None:
            continue  # never ran
        end = record.get("end_time_us") or now_us
        name = record.get("func_or_class_name") or record.get("name") or "task"
        node = record.get("node_id") or ""
        events.append(
            {
                "cat": f"task::{name}",
                "name": name,
                "pid": addresses.get(node, node),
                "tid": f"worker:{record.get('worker_id')} (pid {record.get('worker_pid')})",
                "ts": start,
                "dur": max(0, end - start),
                "ph": "X",
                "cname": "rail_response" if record["state"] == "FAILED" else "generic_work",
                "args": {
                    "name": name,
                    "task_id": record.get("task_id"),
                    "attempt_number": record.get("attempt_number"),
                    "job_id": record.get("job_id"),
                    "state": record["state"],
                    "error_type": record.get("error_type"),
                },
            }
        )
    events.sort(key=lambda event: event["ts"])
    return events


def timeline(filename: str | None = None) -> list[dict[str, Any]] | None:
    """The cluster's task timeline as Chrome trace events; written to `filename` as JSON
    (and None returned) when one is given, as Ray's `ray.timeline` does."""
    from redray.util.state.api import connect

    events = chrome_trace_events(connect())
    if filename is None:
        return events
    with open(os.fspath(filename), "w") as file:
        json.dump(events, file)
    return None
