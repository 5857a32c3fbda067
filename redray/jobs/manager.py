"""The job manager: the head's process that runs submitted jobs' entrypoints.

It takes start and stop requests from `keys.JOB_REQUESTS` (a list: a request made while it
was down waits for it), runs each entrypoint as a shell command in its own process group,
with the cluster's address in RAY_ADDRESS/REDRAY_ADDRESS (so `init()` joins this cluster)
and the job's runtime_env (its working_dir as cwd, env_vars set, the whole runtime_env the
job's default for `init()`), and keeps the output: in a file of the session directory and,
capped, in `keys.job_logs(id)`. A thread per running job follows its output and records
how it ended. `redray stop` (SIGTERM) stops the running jobs first.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import redis

from redray.control import keys, reconnect
from redray.jobs import records
from redray.jobs.records import JOB_RUNTIME_ENV, JobInfo, JobStatus
from redray.runtime_env import packages

#: How long a stopped job's process group gets between SIGTERM and SIGKILL.
STOP_GRACE_S = 3.0


def now_ms() -> int:
    return int(time.time() * 1000)


class JobManager:
    def __init__(self, client: redis.Redis, address: str, node_id: str, log_dir: Path) -> None:
        self._client = client
        self._address = address
        self._node_id = node_id
        self._log_dir = log_dir
        self._lock = threading.Lock()
        self._running: dict[str, subprocess.Popen] = {}
        self._stopping: set[str] = set()
        self._shutdown = threading.Event()
        self._followers: list[threading.Thread] = []

    def serve(self) -> None:
        """Take requests until SIGTERM/SIGINT, then stop every running job."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._shutdown.set())
        self._fail_orphans()
        heartbeat = str(os.getpid())
        while not self._shutdown.is_set():
            self._client.set(keys.JOB_MANAGER, heartbeat, ex=records.MANAGER_HEARTBEAT_TTL_S)
            request = self._client.brpop([keys.JOB_REQUESTS], timeout=1)
            if request is not None:
                self._handle(json.loads(request[1]))
        with self._lock:
            running = list(self._running)
        self._stop_running(running)
        for follower in self._followers:
            follower.join(timeout=STOP_GRACE_S)  # each records how its job ended
        self._client.delete(keys.JOB_MANAGER)

    def _handle(self, request: dict[str, Any]) -> None:
        if request.get("op") == "start":
            self.start(request["id"])
        elif request.get("op") == "stop":
            self.stop(request["id"], "stopped by request")

    def _fail_orphans(self) -> None:
        """Jobs a previous manager left running cannot be followed any more."""
        for job in records.read_all(self._client):
            if job.status == JobStatus.RUNNING:
                job.status = JobStatus.FAILED
                job.message = "The job manager restarted while the job was running."
                job.end_time = now_ms()
                records.write(self._client, job)

    def start(self, submission_id: str) -> None:
        job = records.read(self._client, submission_id)
        if job is None or job.status != JobStatus.PENDING:
            return
        runtime_env = job.runtime_env or {}
        env = {
            **os.environ,
            **(runtime_env.get("env_vars") or {}),
            "RAY_ADDRESS": self._address,
            "REDRAY_ADDRESS": self._address,
            "REDRAY_JOB_SUBMISSION_ID": submission_id,
            "PYTHONUNBUFFERED": "1",
        }
        if runtime_env:
            env[JOB_RUNTIME_ENV] = json.dumps(runtime_env)
        try:
            cwd = self._working_dir(runtime_env.get("working_dir"))
            process = subprocess.Popen(
                job.entrypoint, shell=True, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        except Exception as error:
            self._finish(job, JobStatus.FAILED, f"The job could not be started: {error}")
            return
        job.status = JobStatus.RUNNING
        job.driver_pid = process.pid
        job.driver_node_id = self._node_id
        job.message = "Job is currently running."
        records.write(self._client, job)
        with self._lock:
            self._running[submission_id] = process
        follower = threading.Thread(
            target=self._follow, args=(job, process), name=f"job-{submission_id}", daemon=True
        )
        self._followers.append(follower)
        follower.start()

    def _working_dir(self, uri: str | None) -> str:
        if not uri:
            return str(self._log_dir)
        unpacked = packages.unpack(self._client, uri, self._node_id)
        return str(packages.working_directory(unpacked))

    def stop(self, submission_id: str, reason: str) -> None:
        with self._lock:
            running = submission_id in self._running
        if running:
            self._stop_running([submission_id])
            return
        job = records.read(self._client, submission_id)
        if job is not None and job.status == JobStatus.PENDING:
            self._finish(job, JobStatus.STOPPED, f"Job was {reason} before it started.")

    def _stop_running(self, submission_ids: list[str]) -> None:
        """SIGTERM to the jobs' process groups, SIGKILL to what is left after the grace."""
        with self._lock:
            processes = [self._running[i] for i in submission_ids if i in self._running]
            self._stopping.update(submission_ids)
        for process in processes:
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for process in processes:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)

    def _follow(self, job: JobInfo, process: subprocess.Popen) -> None:
        """Keep the job's output until it ends, then record how it ended."""
        assert process.stdout is not None
        stream = keys.job_logs(job.submission_id)
        with open(self._log_dir / f"job-driver-{job.submission_id}.log", "ab") as log_file:
            pending = b""
            while chunk := process.stdout.read1(65536):
                log_file.write(chunk)
                log_file.flush()
                text, pending = _complete_lines(pending + chunk)
                if text:
                    self._client.xadd(stream, {"t": text}, maxlen=records.LOG_LINES_KEPT)
            if pending:
                self._client.xadd(stream, {"t": pending}, maxlen=records.LOG_LINES_KEPT)
        code = process.wait()
        with self._lock:
            self._running.pop(job.submission_id, None)
            stopped = job.submission_id in self._stopping
            self._stopping.discard(job.submission_id)
        job.driver_exit_code = code
        if stopped:
            self._finish(job, JobStatus.STOPPED, "Job was intentionally stopped.")
        elif code == 0:
            self._finish(job, JobStatus.SUCCEEDED, "Job finished successfully.")
        else:
            job.error_type = "JOB_ENTRYPOINT_COMMAND_ERROR"
            message = f"Job entrypoint command failed with exit code {code}"
            self._finish(job, JobStatus.FAILED, message)

    def _finish(self, job: JobInfo, status: JobStatus, message: str) -> None:
        job.status = status
        job.message = message
        job.end_time = now_ms()
        records.write(self._client, job)


def _complete_lines(data: bytes) -> tuple[bytes, bytes]:
    """(the complete lines in `data`, the unfinished last line)."""
    end = data.rfind(b"\n") + 1
    return data[:end], data[end:]


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def main(argv: list[str] | None = None) -> None:
    """`python -m redray.jobs.manager CONFIG_JSON`; the password comes by environment."""
    config = json.loads((argv or sys.argv[1:])[0])
    # Rides out a Redis outage for the grace period (control/reconnect.py).
    client = reconnect.client(reconnect.with_env_password(config["redis_kwargs"]))
    log_dir = Path(config["log_dir"])
    JobManager(client, config["address"], config["node_id"], log_dir).serve()


if __name__ == "__main__":
    main()
