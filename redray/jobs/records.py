"""A submitted job's record (Ray's JobInfo, with its JobStatus), as kept in `keys.JOBS`."""

from __future__ import annotations

import dataclasses
import enum
import json
from typing import Any

import redis

from redray.control import keys

#: Output lines kept per job (the oldest are trimmed).
LOG_LINES_KEPT = 100_000
#: Environment variable carrying a job's runtime_env to its driver's `init()`.
JOB_RUNTIME_ENV = "REDRAY_JOB_RUNTIME_ENV"
#: How long the manager's heartbeat lives; a submit with no manager fails after this.
MANAGER_HEARTBEAT_TTL_S = 10


class JobStatus(str, enum.Enum):
    """Ray's job states; a job ends STOPPED, SUCCEEDED or FAILED."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    def __str__(self) -> str:
        return self.value

    def is_terminal(self) -> bool:
        return self in (JobStatus.STOPPED, JobStatus.SUCCEEDED, JobStatus.FAILED)


@dataclasses.dataclass
class JobInfo:
    """What is known of a submitted job (Ray's JobInfo/JobDetails fields). Times are
    milliseconds since the epoch, as in Ray."""

    status: JobStatus
    entrypoint: str
    submission_id: str
    job_id: str | None = None
    type: str = "SUBMISSION"
    message: str | None = None
    error_type: str | None = None
    start_time: int | None = None
    end_time: int | None = None
    metadata: dict[str, str] | None = None
    runtime_env: dict[str, Any] | None = None
    entrypoint_num_cpus: float | None = None
    entrypoint_num_gpus: float | None = None
    entrypoint_memory: int | None = None
    entrypoint_resources: dict[str, float] | None = None
    driver_exit_code: int | None = None
    driver_node_id: str | None = None
    driver_pid: int | None = None

    def to_json(self) -> str:
        return json.dumps({**dataclasses.asdict(self), "status": self.status.value})

    @classmethod
    def from_json(cls, text: str | bytes) -> JobInfo:
        fields = json.loads(text)
        fields["status"] = JobStatus(fields["status"])
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(**{name: value for name, value in fields.items() if name in known})


def read(client: redis.Redis, submission_id: str) -> JobInfo | None:
    raw = client.hget(keys.JOBS, submission_id)
    return JobInfo.from_json(raw) if raw is not None else None


def read_all(client: redis.Redis) -> list[JobInfo]:
    jobs = [JobInfo.from_json(raw) for raw in client.hgetall(keys.JOBS).values()]
    return sorted(jobs, key=lambda job: job.start_time or 0)


def write(client: redis.Redis | redis.client.Pipeline, job: JobInfo) -> None:
    client.hset(keys.JOBS, job.submission_id, job.to_json())
