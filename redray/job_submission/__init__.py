"""Submitting jobs to a cluster: Ray's `ray.job_submission` API.

A job is a shell command (usually `python script.py`) that the head's job manager runs as
the job's driver (see `redray.jobs.manager`). Unlike Ray's client, which speaks HTTP to the
dashboard, this one talks to the cluster's Redis: give it the same address `init()` takes.

    from redray.job_submission import JobSubmissionClient, JobStatus

    client = JobSubmissionClient("127.0.0.1:6379")
    job_id = client.submit_job(entrypoint="python script.py",
                               runtime_env={"working_dir": "./"})
    print(client.get_job_status(job_id), client.get_job_logs(job_id))
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import string
from collections.abc import AsyncIterator
from typing import Any

import redis

from redray.cluster import connect_kwargs, resolve_address
from redray.control import keys
from redray.jobs import records
from redray.jobs.manager import now_ms
from redray.jobs.records import JobInfo, JobStatus
from redray.runtime_env import packages
from redray.runtime_env import spec as runtime_env_spec

JobDetails = JobInfo  # Ray lists jobs as JobDetails, a JobInfo with more fields

__all__ = ["JobDetails", "JobInfo", "JobStatus", "JobSubmissionClient"]

_ID_ALPHABET = string.ascii_letters + string.digits


class JobSubmissionClient:
    """Submit, follow and stop the jobs of the cluster at `address` (host:port of its
    Redis, or "auto", or None for RAY_ADDRESS/REDRAY_ADDRESS or this machine's cluster)."""

    def __init__(
        self,
        address: str | None = None,
        create_cluster_if_needed: bool = False,
        cookies: dict[str, Any] | None = None,
        metadata: dict[str, str] | None = None,
        headers: dict[str, Any] | None = None,
        verify: bool | str = True,
        *,
        _redis_password: str | None = None,
    ) -> None:
        if address and address.startswith(("http://", "https://")):
            raise ValueError(
                f"JobSubmissionClient({address!r}): redray has no HTTP job server; pass the "
                "cluster's Redis address (host:port, as for redray.init), or 'auto' on a "
                "machine of the cluster."
            )
        target = resolve_address(address or "auto")
        if target is None:
            raise ValueError("JobSubmissionClient needs the address of a running cluster.")
        password = _redis_password or os.environ.get("REDRAY_REDIS_PASSWORD")
        self._redis = redis.Redis(**connect_kwargs(target, password))
        self._address = target
        self._default_metadata = dict(metadata or {})

    def submit_job(
        self,
        *,
        entrypoint: str,
        job_id: str | None = None,
        runtime_env: dict[str, Any] | None = None,
        metadata: dict[str, str] | None = None,
        submission_id: str | None = None,
        entrypoint_num_cpus: float | None = None,
        entrypoint_num_gpus: float | None = None,
        entrypoint_memory: int | None = None,
        entrypoint_resources: dict[str, float] | None = None,
    ) -> str:
        """Queue `entrypoint` to run on the head; returns its submission id."""
        if not isinstance(entrypoint, str) or not entrypoint.strip():
            raise ValueError(f"entrypoint must be a non-empty shell command; got {entrypoint!r}.")
        runtime_env_spec.check("runtime_env", runtime_env)
        if not self._redis.exists(keys.JOB_MANAGER):
            raise RuntimeError(
                f"No job manager runs in the cluster at {self._address}: jobs run on a head "
                "started with `redray start --head`."
            )
        resolved, uploads = packages.prepare(runtime_env) if runtime_env else (None, {})
        packages.upload(self._redis, uploads)
        submission_id = submission_id or job_id or _new_submission_id()
        job = JobInfo(
            status=JobStatus.PENDING,
            entrypoint=entrypoint,
            submission_id=submission_id,
            message="Job has not started yet.",
            start_time=now_ms(),
            metadata={**self._default_metadata, **(metadata or {})},
            runtime_env=resolved,
            entrypoint_num_cpus=entrypoint_num_cpus,
            entrypoint_num_gpus=entrypoint_num_gpus,
            entrypoint_memory=entrypoint_memory,
            entrypoint_resources=entrypoint_resources,
        )
        if not self._redis.hsetnx(keys.JOBS, submission_id, job.to_json()):
            raise RuntimeError(f"Job with submission_id {submission_id} already exists.")
        self._redis.lpush(keys.JOB_REQUESTS, _request("start", submission_id))
        return submission_id

    def get_job_info(self, job_id: str) -> JobInfo:
        job = records.read(self._redis, job_id)
        if job is None:
            raise RuntimeError(f"Job {job_id} does not exist.")
        return job

    def get_job_status(self, job_id: str) -> JobStatus:
        return self.get_job_info(job_id).status

    def list_jobs(self) -> list[JobDetails]:
        return records.read_all(self._redis)

    def stop_job(self, job_id: str) -> bool:
        """Ask the head to stop the job; False when it had already ended."""
        if self.get_job_info(job_id).status.is_terminal():
            return False
        self._redis.lpush(keys.JOB_REQUESTS, _request("stop", job_id))
        return True

    def delete_job(self, job_id: str) -> bool:
        """Forget an ended job and its output."""
        job = self.get_job_info(job_id)
        if not job.status.is_terminal():
            raise RuntimeError(
                f"Job {job_id} is {job.status.value}: stop it (and let it end) before deleting it."
            )
        pipe = self._redis.pipeline()
        pipe.hdel(keys.JOBS, job_id)
        pipe.delete(keys.job_logs(job_id))
        pipe.execute()
        return True

    def get_job_logs(self, job_id: str) -> str:
        self.get_job_info(job_id)
        entries = self._redis.xrange(keys.job_logs(job_id))
        return "".join(fields[b"t"].decode(errors="replace") for _, fields in entries)

    async def tail_job_logs(self, job_id: str) -> AsyncIterator[str]:
        """The job's output as it comes, chunk by chunk, until the job has ended."""
        last = "0-0"
        while True:
            ended = self.get_job_info(job_id).status.is_terminal()
            entries = await asyncio.to_thread(self._read_logs, job_id, last, not ended)
            for entry_id, fields in entries:
                last = entry_id
                yield fields[b"t"].decode(errors="replace")
            if ended and not entries:
                return

    def _read_logs(self, job_id: str, after: str, block: bool) -> list[tuple[Any, Any]]:
        found = self._redis.xread({keys.job_logs(job_id): after}, block=500 if block else None)
        return found[0][1] if found else []


def _new_submission_id() -> str:
    return "raysubmit_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(16))


def _request(op: str, submission_id: str) -> str:
    return json.dumps({"op": op, "id": submission_id})
