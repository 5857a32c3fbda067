"""Task events: every task and actor-call attempt records its state changes, with Ray's
state names, for the state API (`redray.util.state`), `redray list tasks` and the timeline.

Events never cost a round trip, nor a write per task. A process buffers them
(`TaskEventBuffer`, merged per attempt) and a background thread sends what is buffered at
most `FLUSH_SECONDS` after it was recorded (as Ray reports task events every second), as
one Lua command through the process's pipelined writer, without waiting for the reply. A
node daemon (which must stay thread-free) sends its own with its batched acknowledgements.
Redis applies them with the Lua command `task_events` (control/commands.lua), which bounds
each job's history and counts what it drops. The record format (one hash field per
attempt) is read by `redray/util/state/tasks.py`.
"""

from __future__ import annotations

import os
import pickle
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson

from redray import runtime_context
from redray.task_spec import TaskSpec

# Ray's task states (TaskStatus), in lifecycle order.
PENDING_ARGS_AVAIL = "PENDING_ARGS_AVAIL"
PENDING_NODE_ASSIGNMENT = "PENDING_NODE_ASSIGNMENT"
SUBMITTED_TO_WORKER = "SUBMITTED_TO_WORKER"
RUNNING = "RUNNING"
FINISHED = "FINISHED"
FAILED = "FAILED"

#: How far along the lifecycle a state is: a record shows its most advanced state, so the
#: submitter's PENDING event arriving after the worker's FINISHED cannot undo it.
RANK = {
    PENDING_ARGS_AVAIL: 0,
    PENDING_NODE_ASSIGNMENT: 1,
    SUBMITTED_TO_WORKER: 2,
    RUNNING: 3,
    FINISHED: 4,
    FAILED: 4,
}

#: How a state is written in a record's event list ("ev": "N1700000000000000,R...": code
#: and time in µs), to keep 100k records small.
CODES = {
    PENDING_ARGS_AVAIL: "A",
    PENDING_NODE_ASSIGNMENT: "N",
    SUBMITTED_TO_WORKER: "S",
    RUNNING: "R",
    FINISHED: "F",
    FAILED: "X",
}
STATES_BY_CODE = {code: state for state, code in CODES.items()}

#: Ray's task types.
NORMAL_TASK = "NORMAL_TASK"
ACTOR_CREATION_TASK = "ACTOR_CREATION_TASK"
ACTOR_TASK = "ACTOR_TASK"

#: Defaults of a job's history: at most this many task attempts, kept this long (seconds)
#: after its last event. `init(task_events_max_per_job=..., task_events_ttl_s=...)` and
#: `redray start --task-events-max-per-job/--task-events-ttl-s` change them.
DEFAULT_MAX_PER_JOB = 100_000
DEFAULT_TTL_SECONDS = 24 * 3600

#: Buffered events are sent at the latest this long after they were recorded.
FLUSH_SECONDS = 0.5
#: ... or at once when this many attempts are buffered.
FLUSH_AT = 512

#: Ray's ErrorType names, by the redray exception class a failure was committed as.
_ERROR_TYPES = {
    "TaskCancelledError": "TASK_CANCELLED",
    "WorkerCrashedError": "WORKER_DIED",
    "ActorDiedError": "ACTOR_DIED",
    "ActorUnavailableError": "ACTOR_UNAVAILABLE",
    "NodeDiedError": "NODE_DIED",
    "OwnerDiedError": "OWNER_DIED",
    "ObjectLostError": "OBJECT_LOST",
    "OutOfMemoryError": "OUT_OF_MEMORY",
    "TaskPlacementGroupRemoved": "TASK_PLACEMENT_GROUP_REMOVED",
    "ActorPlacementGroupRemoved": "ACTOR_PLACEMENT_GROUP_REMOVED",
    "TaskUnschedulableError": "TASK_UNSCHEDULABLE_ERROR",
    "RuntimeEnvSetupError": "RUNTIME_ENV_SETUP_FAILED",
}


_PID = os.getpid()


def _refresh_pid() -> None:
    global _PID
    _PID = os.getpid()


os.register_at_fork(after_in_child=_refresh_pid)


#: orjson (several times faster than json: events are encoded per task) with str() keys.
_JSON = orjson.OPT_NON_STR_KEYS


def now_us() -> int:
    return int(time.time() * 1_000_000)


def enabled_for(spec: TaskSpec) -> bool:
    """Whether `spec`'s events are recorded (option enable_task_events, default True)."""
    return spec.extra.get("te", True)


def task_type(spec: TaskSpec) -> str:
    if spec.extra.get("actor"):
        return ACTOR_CREATION_TASK
    if spec.extra.get("method") is not None:
        return ACTOR_TASK
    return NORMAL_TASK


def static_fields(spec: TaskSpec, actor_id: str | None = None) -> dict[str, Any]:
    """What the attempt is: the fields that do not change as it runs. The submitter adds
    the parent task (the task it runs, if any)."""
    pg = spec.extra.get("pg")
    # The task id, attempt, name and job are in the record's field and key: not repeated.
    fields: dict[str, Any] = {"required_resources": spec.demand}
    kind = task_type(spec)
    if kind != NORMAL_TASK:  # the reader's default
        fields["type"] = kind
    actor_id = actor_id or spec.extra.get("actor_id")
    if actor_id:
        fields["actor_id"] = actor_id
    if pg:
        fields["placement_group_id"] = pg.get("id") if isinstance(pg, dict) else str(pg)
    return fields


def job_of(spec: TaskSpec) -> str:
    return spec.job_id or runtime_context.current.job_id or "unknown"


def error_fields(error_data: bytes, final_state: str = "") -> dict[str, Any]:
    """error_type (Ray's ErrorType name) and error_message of a committed error value."""
    if final_state == "cancelled":
        return {"error_type": "TASK_CANCELLED", "error_message": "The task was cancelled."}
    try:
        error = pickle.loads(error_data)
    except Exception:  # the record must be written even if the error cannot be loaded
        return {"error_type": "TASK_EXECUTION_EXCEPTION", "error_message": "<unreadable error>"}
    return describe_error(error)


def describe_error(error: BaseException) -> dict[str, Any]:
    name = type(error).__name__
    error_type = _ERROR_TYPES.get(name)
    if error_type is None:
        cause = getattr(error, "cause", None)
        cause_name = type(cause).__name__ if cause is not None else ""
        error_type = _ERROR_TYPES.get(cause_name, "TASK_EXECUTION_EXCEPTION")
    return {"error_type": error_type, "error_message": str(error)}


#: Who wrote a record of an attempt: each writes its own field, whole, so Redis never has
#: to merge (attempt field + suffix): the submitter, the worker that runs it, the node
#: daemon (a lost worker, a dropped queued task), the owner ending it without running it
#: (cancel, a failed dependency).
SUBMITTER, RUNNER, NODE, OWNER = "", ":r", ":n", ":c"


def record_field(spec: TaskSpec, writer: str) -> str:
    """ "<task id>:<attempt><writer>/<name>": the name is in the field so that Redis can
    find a function's records itself (HSCAN MATCH), without sending the whole history."""
    return f"{spec.task_id}:{spec.attempt}{writer}/{spec.name}"


class TaskEventBuffer:
    """One process's pending task events, merged per attempt and writer until sent.

    `record()` is cheap (a dict update under a lock). `drain()` returns the Lua command
    that writes everything buffered (a daemon adds it to its own batched writes); with
    `send` (the pipelined writer's add) a background thread sends it within
    FLUSH_SECONDS. Records that may still grow (a running attempt, a task waiting for its
    arguments) stay known after they were sent, so that their next write is complete.
    """

    def __init__(
        self,
        command: Callable[..., tuple[Any, ...]],
        send: Callable[..., None] | None = None,
        *,
        enabled: bool = True,
        max_per_job: int = DEFAULT_MAX_PER_JOB,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
    ) -> None:
        """`command(name, *args)` builds a Lua command (Commands.raw); `send(*command)`
        writes one without waiting (WriteBatcher.add); without it the owner drains."""
        self._command = command
        self._send = send
        self.enabled = enabled
        self.max_per_job = max_per_job
        self.ttl_seconds = ttl_seconds
        self._lock = threading.Lock()
        #: (job, "<task id>:<attempt><writer>") -> [rank, state, segment]: to send.
        self._pending: dict[tuple[str, str], list[Any]] = {}
        #: Records sent that this process will write again (not final yet).
        self._open: dict[tuple[str, str], list[Any]] = {}
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    # ---- recording -----------------------------------------------------------------

    def record(
        self,
        spec: TaskSpec,
        state: str,
        ts: int | None = None,
        writer: str = SUBMITTER,
        **fields: Any,
    ) -> None:
        """Note that `spec`'s current attempt entered `state` (now, or at `ts` µs)."""
        if enabled_for(spec):
            key = (job_of(spec), record_field(spec, writer))
            self._add(key, state, ts, fields)

    def record_attempt(
        self, job_id: str, task_id: str, attempt: int, state: str, fields: dict[str, Any]
    ) -> None:
        """An attempt known only by id ended (cancel): the owner's record."""
        self._add((job_id, f"{task_id}:{attempt}{OWNER}"), state, None, fields)

    def _add(
        self, key: tuple[str, str], state: str, ts: int | None, fields: dict, earlier: str = ""
    ) -> None:
        """Merge one event (after `earlier` ones, already encoded) into `key`'s record."""
        event = f"{earlier}{CODES[state]}{ts or now_us()}"
        rank = RANK[state]
        with self._lock:
            first = not self._pending  # the flusher has to be woken
            entry = self._pending.get(key)
            if entry is None:
                entry = self._open.pop(key, None)
                if entry is not None:
                    self._pending[key] = entry
            if entry is None:
                self._pending[key] = [rank, state, {"ev": event, **fields}]
            else:
                if rank >= entry[0]:
                    entry[0], entry[1] = rank, state
                entry[2]["ev"] += "," + event
                entry[2].update(fields)
            full = len(self._pending) >= FLUSH_AT
        if full and self._send is not None:
            self.flush()
        elif first and self._send is not None:
            self._start_flusher()

    def running(self, spec: TaskSpec, node_id: str | None, worker_id: str) -> None:
        """A worker starts `spec` (it was handed to it just now). A retry's record is
        started here, so it carries what the task is as well."""
        # Tasks this one submits inherit its setting (enable_task_events=False).
        self.enabled = enabled_for(spec)
        if not self.enabled:
            return
        ts = now_us()
        fields: dict[str, Any] = {"node_id": node_id, "worker_id": worker_id, "worker_pid": _PID}
        actor_id = runtime_context.current.actor_id or spec.extra.get("actor_id")
        if actor_id:
            fields["actor_id"] = actor_id
        if spec.attempt:
            fields.update(static_fields(spec))
        elif spec.extra.get("method") is not None or spec.extra.get("actor"):
            fields["type"] = task_type(spec)  # even before the submitter's record lands
        # An actor call was SUBMITTED_TO_WORKER when it was sent.
        earlier = "" if spec.extra.get("method") is not None else f"S{ts},"
        key = (job_of(spec), record_field(spec, RUNNER))
        self._add(key, RUNNING, ts, fields, earlier)

    def ended(self, spec: TaskSpec, state: str, fields: dict[str, Any]) -> None:
        """`spec`'s attempt finished or failed: by the worker that ran it, or by its owner
        (a failed dependency, a cancel before it ran)."""
        if not enabled_for(spec):
            return
        job_id = job_of(spec)
        key = (job_id, record_field(spec, RUNNER))
        with self._lock:
            ran_here = key in self._pending or key in self._open
        self._add(key if ran_here else (job_id, record_field(spec, OWNER)), state, None, fields)

    def retrying(self, spec: TaskSpec, error: dict[str, Any], writer: str) -> None:
        """Attempt `spec.attempt` failed with `error` and the next one is queued."""
        if not enabled_for(spec):
            return
        self.record(spec, FAILED, None, writer, **error)
        spec.attempt += 1
        try:
            # Whoever queues the next attempt is its submitter.
            self.record(spec, PENDING_NODE_ASSIGNMENT, None, SUBMITTER, **static_fields(spec))
        finally:
            spec.attempt -= 1

    # ---- sending -------------------------------------------------------------------

    def drain(self) -> tuple[Any, ...] | None:
        """The Lua command that writes everything buffered (None if nothing is)."""
        with self._lock:
            if not self._pending:
                return None
            pending, self._pending = self._pending, {}
            for key, entry in pending.items():
                # A running attempt, or a task waiting for its arguments, writes again.
                if entry[0] < RANK[FINISHED] and (key[1].endswith(RUNNER) or entry[0] == 0):
                    self._open[key] = entry
        by_job: dict[str, list[Any]] = {}
        for (job_id, field), (rank, state, segment) in pending.items():
            record = f"{rank}{state}\n".encode() + orjson.dumps(segment, option=_JSON)
            by_job.setdefault(job_id, []).extend((field, record))
        args: list[Any] = [self.max_per_job, int(self.ttl_seconds)]
        for job_id, pairs in by_job.items():
            args += [job_id, len(pairs) // 2, *pairs]
        return self._command("task_events", *args)

    def flush(self) -> None:
        """Send what is buffered through the pipelined writer (no waiting for Redis)."""
        command = self.drain()
        if command is not None and self._send is not None:
            try:
                self._send(*command)
            except Exception:  # events must never break the work they describe
                pass

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self.flush()

    def _start_flusher(self) -> None:
        self._wake.set()
        if self._thread is None and not self._closed:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run_flusher, name="redray-task-events", daemon=True
                    )
                    self._thread.start()

    def _run_flusher(self) -> None:
        while not self._closed:
            self._wake.wait()
            self._wake.clear()
            if self._closed:
                return
            time.sleep(FLUSH_SECONDS)
            self.flush()
