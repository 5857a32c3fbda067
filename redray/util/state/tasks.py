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
from collections.abc import Iterator
from typing import Any

import redis

from redray.client.task_events import FAILED, FINISHED, RUNNING
from redray.control import keys

Filter = tuple[str, str, Any]


def job_ids(client: redis.Redis) -> list[str]:
    """The jobs that may have a task history (the job table's, plus any key found)."""
    known = [job.decode() for job in client.hkeys(keys.JOBS)]
    return sorted(known)


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


def _raw_matches(field: bytes, raw: bytes, filters: list[Filter]) -> bool:
    """A cheap test that is true for every record the filters keep (and maybe a few more)."""
    for key, predicate, value in filters:
        if key == "state":
            state = raw[1 : raw.index(b"\n")].decode()
            if (state == value) != (predicate == "="):
                return False
        elif predicate == "=":
            if key == "task_id":
                if not field.startswith(f"{value}:".encode()):
                    return False
            elif key == "attempt_number":
                if not field.endswith(f":{value}".encode()):
                    return False
            else:
                needle = _needle(key, value)
                if needle is not None and needle not in raw:
                    return False
    return True


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


def iter_records(
    client: redis.Redis, filters: list[Filter], jobs: list[str] | None = None
) -> Iterator[dict[str, Any]]:
    """Every recorded attempt the filters could keep, parsed (exact filtering is the
    caller's). A `job_id =` filter reads only that job's history."""
    for key, predicate, value in filters:
        if key == "job_id" and predicate == "=":
            jobs = [str(value)]
    for job in job_ids(client) if jobs is None else jobs:
        for field, raw in client.hgetall(keys.task_events(job)).items():
            if _raw_matches(field, raw, filters):
                record = parse(raw)
                if record.get("task_id") is None:  # only events of a record whose start
                    task_id, _, attempt = field.decode().rpartition(":")  # was lost
                    record.update(task_id=task_id, attempt_number=int(attempt), job_id=job)
                yield record


def attempts_of(client: redis.Redis, task_id: str) -> list[dict[str, Any]]:
    """Every recorded attempt of one task, oldest first."""
    found = []
    for job in job_ids(client):
        for field, raw in client.hscan_iter(
            keys.task_events(job), match=f"{task_id}:*", count=10_000
        ):
            record = parse(raw)
            record.setdefault("task_id", task_id)
            record.setdefault("attempt_number", int(field.decode().rpartition(":")[2]))
            record.setdefault("job_id", job)
            found.append(record)
    return sorted(found, key=lambda record: record["attempt_number"])
