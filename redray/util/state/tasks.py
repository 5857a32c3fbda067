"""Reading the task event history (written by redray/client/task_events.py).

A job's history is one hash, `task_events:<job>`, with a few records per task attempt,
one per writer ("<task id>:<attempt>" for the submitter, then ":r" the worker, ":n" the
node, ":c" the owner): a header line "<rank><STATE>" and JSON segments, one per line. The
attempt's state is its most advanced writer's. Listing with filters never parses what
cannot match: the state is read from the headers, and other `=` filters are first checked
as a substring of the raw records (`"key":value`, as the writers encode it), so 100k
recorded tasks with a filter matching ten cost one HGETALL and a scan of bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import orjson
import redis

from redray.client.task_events import (
    FAILED,
    FINISHED,
    NORMAL_TASK,
    RUNNING,
    STATES_BY_CODE,
)
from redray.control import keys

Filter = tuple[str, str, Any]

#: Filter keys not looked for in the records' bytes: read from the header or field, or
#: not written when they have their default value (type, language).
_NOT_NEEDLES = (
    "state", "task_id", "job_id", "attempt_number", "type", "language", "name",
    "func_or_class_name",
)  # fmt: skip
#: How many records one HSCAN of a job's history asks for.
_PAGE = 50_000


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
    return f'"{key}":'.encode() + orjson.dumps(value)  # as the writers encode it


def _attempt_of(field: bytes) -> bytes:
    """ "<task id>:<attempt>" of a record's field "<task id>:<attempt>[:writer][/name]" (a
    writer suffix ends in a letter, an attempt number in a digit)."""
    field = field.partition(b"/")[0]
    return field[:-2] if field[-1] > 0x60 else field


def _group(records: dict[bytes, bytes], attempts: set[bytes] | None) -> dict:
    """Records by attempt (only those of `attempts` when given), and the attempt's task
    name (from the field names)."""
    groups: dict[bytes, tuple[list[bytes], list[bytes]]] = {}
    for field, raw in records.items():
        attempt = _attempt_of(field)
        if attempts is None or attempt in attempts:
            raws, names = groups.setdefault(attempt, ([], []))
            raws.append(raw)
            name = field.partition(b"/")[2]
            if name:
                names.append(name)
    return groups


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _read(client: redis.Redis, job: str, filters: list[Filter]) -> dict[bytes, bytes]:
    """The records of one job's history that the filters may need. Redis narrows a task id
    or name filter itself (both are in the field names); else the whole history is read."""
    key = keys.task_events(job)
    for column, predicate, value in filters:
        if predicate == "=" and column == "task_id":
            return dict(client.hscan_iter(key, match=f"{_glob_escape(str(value))}:*", count=_PAGE))
    for column, predicate, value in filters:
        if predicate == "=" and column in ("name", "func_or_class_name"):
            named = dict(client.hscan_iter(key, match=f"*/{_glob_escape(str(value))}", count=_PAGE))
            # A cancel by id is recorded without the name: look those up by attempt.
            attempts = sorted({_attempt_of(field) for field in named})
            owners = [attempt + b":c" for attempt in attempts]
            if owners:
                named.update((f, raw) for f, raw in zip(owners, client.hmget(key, owners)) if raw)
            return named
    return client.hgetall(key)


def _candidates(records: dict[bytes, bytes], filters: list[Filter]) -> set[bytes] | None:
    """The attempts that can match the `=` filters on values or state: those with a record
    holding each needle, or in that state. None when no filter narrows the search."""
    tests = [_needle(k, v) for k, p, v in filters if p == "=" and k not in _NOT_NEEDLES]
    tests = [test for test in tests if test is not None]
    candidates: set[bytes] | None = None
    for needle in tests:
        hits = {_attempt_of(f) for f, raw in records.items() if needle in raw}
        candidates = hits if candidates is None else candidates & hits
    for key, predicate, value in filters:
        if key == "state" and predicate == "=":
            header = str(value).encode() + b"\n"
            hits = {_attempt_of(f) for f, raw in records.items() if raw[1:].startswith(header)}
            candidates = hits if candidates is None else candidates & hits
    return candidates


def _state(records: list[bytes]) -> bytes:
    """The attempt's state: its most advanced writer's (a failure wins a tie: a cancelled
    task's own late FINISHED does not count)."""
    best = max(records, key=lambda raw: (raw[0], raw[1:7] == b"FAILED"))
    return best[1 : best.index(b"\n")]


def _prefilter(filters: list[Filter]) -> Callable[[list[bytes]], bool]:
    """A cheap test on an attempt's raw records that every attempt the filters keep
    passes: the state from the headers, `=` on other keys looks for the key and value as
    the writers encode them."""
    state_eq = {str(v).encode() for k, p, v in filters if k == "state" and p == "="}
    state_ne = {str(v).encode() for k, p, v in filters if k == "state" and p == "!="}
    needles = [_needle(k, v) for k, p, v in filters if p == "=" and k not in _NOT_NEEDLES]

    def keep(records: list[bytes]) -> bool:
        if state_eq or state_ne:
            state = _state(records)
            if (state_eq and state not in state_eq) or state in state_ne:
                return False
        return all(any(needle in raw for raw in records) for needle in needles if needle)

    return keep


def parse(records: list[bytes]) -> dict[str, Any]:
    """One attempt's records, merged into the fields of Ray's TaskState."""
    record: dict[str, Any] = {}
    events: list[tuple[str, int]] = []
    for raw in sorted(records, key=lambda raw: raw[0]):  # later stages' fields win
        for line in raw.split(b"\n")[1:]:
            segment = orjson.loads(line)
            events += [(STATES_BY_CODE[e[0]], int(e[1:])) for e in segment.pop("ev").split(",")]
            record.update(segment)
    events.sort(key=lambda event: event[1])
    record["state"] = _state(records).decode()
    record.setdefault("type", NORMAL_TASK)
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
    caller's). A `job_id =` filter reads only that job's history, a `task_id =` filter
    only that task's records."""
    jobs = None
    for key, predicate, value in filters:
        if key == "job_id" and predicate == "=":
            jobs = [str(value)]
    keep = _prefilter(filters)
    for job in job_ids(client) if jobs is None else jobs:
        records = _read(client, job, filters)
        groups = _group(records, _candidates(records, filters))
        for attempt_key, (group, names) in groups.items():
            if not keep(group):
                continue
            record = parse(group)
            task, _, attempt = attempt_key.decode().partition(":")
            name = names[0].decode() if names else None
            record.update(task_id=task, attempt_number=int(attempt), job_id=job, name=name)
            record["func_or_class_name"] = name
            yield record


def attempts_of(client: redis.Redis, task_id: str) -> list[dict[str, Any]]:
    """Every recorded attempt of one task, oldest first."""
    found = iter_records(client, [("task_id", "=", task_id)])
    return sorted(found, key=lambda record: record["attempt_number"])
