"""Reading the task event history (written by redray/client/task_events.py).

A job's history is one hash, `task_events:<job>`, with one field per task attempt
("<task id>:<attempt>"): a header line "<rank><STATE>" (the attempt's current state) and
one JSON segment per line. Listing with filters never parses what cannot match: the state
is read from the header and other `=` filters are first checked as a substring of the raw
record (`"key":value`, as the writer encodes it), so 100k recorded tasks with a filter
matching ten cost one HGETALL and a scan of bytes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import redis

from redray.client.task_events import FAILED, FINISHED, RUNNING
from redray.control import keys

Filter = tuple[str, str, Any]

#: How many records one read of a job's history fetches.
_PAGE = 10_000


def job_ids(client: redis.Redis) -> list[str]:
    """The jobs with a task history (ids whose history expired are pruned)."""
    jobs = sorted(job.decode() for job in client.smembers(keys.TASK_EVENT_JOBS))
    pipe = client.pipeline(transaction=False)
    for job in jobs:
        pipe.exists(keys.task_events(job))
    gone = [job for job, exists in zip(jobs, pipe.execute()) if not exists]
    if gone:
        client.srem(keys.TASK_EVENT_JOBS, *gone)
    return [job for job in jobs if job not in gone]


def dropped_counts(client: redis.Redis, jobs: list[str] | None = None) -> dict[str, int]:
    """How many task events each job's history dropped (its cap was reached)."""
    jobs = job_ids(client) if jobs is None else jobs
    pipe = client.pipeline(transaction=False)
    for job in jobs:
        pipe.hget(keys.task_events_meta(job), "dropped")
    return {job: int(count) for job, count in zip(jobs, pipe.execute()) if count}


def _needle(key: str, value: Any) -> bytes | None:
    """The bytes an attempt's raw record must contain to have `key` = `value`."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    return f'"{key}":{json.dumps(value)}'.encode()


def _prefilter(filters: list[Filter]) -> Callable[[bytes, bytes], bool]:
    """A cheap test on (field, raw record) that every record the filters keep passes: the
    state is read from the header, the task id from the field, `=` on other keys looks
    for the key and value as the writer encodes them."""
    state_eq = {str(v).encode() for k, p, v in filters if k == "state" and p == "="}
    state_ne = {str(v).encode() for k, p, v in filters if k == "state" and p == "!="}
    prefixes = [f"{v}:".encode() for k, p, v in filters if k == "task_id" and p == "="]
    needles = [
        needle
        for k, p, v in filters
        if p == "=" and k not in ("state", "task_id", "job_id")
        for needle in [_needle(k, v)]
        if needle is not None
    ]

    def keep(field: bytes, raw: bytes) -> bool:
        if state_eq or state_ne:
            state = raw[1 : raw.index(b"\n")]
            if (state_eq and state not in state_eq) or state in state_ne:
                return False
        if prefixes and not any(field.startswith(prefix) for prefix in prefixes):
            return False
        return all(needle in raw for needle in needles)

    return keep


def parse(raw: bytes) -> dict[str, Any]:
    """One attempt's record, as the fields of Ray's TaskState."""
    header, _, body = raw.partition(b"\n")
    record: dict[str, Any] = {}
    events: list[list[Any]] = []
    for line in body.split(b"\n"):
        segment = json.loads(line)
        events += segment.pop("ev", ())
        record.update(segment)
    events.sort(key=lambda event: event[1])
    record["state"] = header[1:].decode()
    record.setdefault("func_or_class_name", record.get("name"))
    record["language"] = "PYTHON"
    record["events"] = [{"state": state, "created_ms": ts / 1000} for state, ts in events]
    record["creation_time_ms"] = events[0][1] // 1000 if events else None
    for state, ts in events:
        if state == RUNNING and record.get("start_time_ms") is None:
            record["start_time_ms"] = ts // 1000
            record["start_time_us"] = ts
        elif state in (FINISHED, FAILED):
            record["end_time_ms"] = ts // 1000
            record["end_time_us"] = ts
    return record


def iter_records(client: redis.Redis, filters: list[Filter]) -> Iterator[dict[str, Any]]:
    """The recorded attempts the filters could keep, parsed (exact filtering is the
    caller's). A `job_id =` filter reads only that job's history."""
    jobs = None
    for key, predicate, value in filters:
        if key == "job_id" and predicate == "=":
            jobs = [str(value)]
    keep = _prefilter(filters)
    for job in job_ids(client) if jobs is None else jobs:
        # Pages rather than one HGETALL: a listing stops reading once it has `limit`.
        for field, raw in client.hscan_iter(keys.task_events(job), count=_PAGE):
            if not keep(field, raw):
                continue
            record = parse(raw)
            task_id, _, attempt = field.decode().rpartition(":")
            record.update(task_id=task_id, attempt_number=int(attempt), job_id=job)
            yield record


def attempts_of(client: redis.Redis, task_id: str) -> list[dict[str, Any]]:
    """Every recorded attempt of one task, oldest first."""
    found = iter_records(client, [("task_id", "=", task_id)])
    return sorted(found, key=lambda record: record["attempt_number"])
