"""`redray job submit|status|logs|stop|list|delete`: jobs from the command line, as Ray's
`ray job ...`, through `redray.job_submission.JobSubmissionClient`."""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
import time
from datetime import datetime
from typing import Any

from redray.job_submission import JobInfo, JobSubmissionClient

#: How often `submit` (without --no-wait) looks at the job's status while it follows it.
_POLL_S = 0.5


def add_parser(commands: Any, password_env: str) -> None:
    job = commands.add_parser("job", help="submit and follow jobs run on the cluster's head")
    actions = job.add_subparsers(dest="job_command", required=True)

    def action(name: str, text: str) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, help=text)
        parser.add_argument("--address", help="HOST:PORT of the cluster's Redis")
        parser.add_argument("--redis-password", help=f"Redis password (or ${password_env})")
        parser.set_defaults(handler=run)
        return parser

    submit = action("submit", "run a command as a job's driver: redray job submit -- python x.py")
    submit.add_argument("--submission-id", "--job-id", dest="submission_id")
    submit.add_argument("--working-dir", help="a directory (or .zip) shipped as the job's cwd")
    submit.add_argument("--runtime-env-json", help="the job's runtime_env, as JSON")
    submit.add_argument("--metadata-json", help="metadata to keep with the job, as JSON")
    submit.add_argument("--no-wait", action="store_true", help="do not follow the job's output")
    submit.add_argument("entrypoint", nargs=argparse.REMAINDER)
    for name, text in (
        ("status", "show a job's status"),
        ("stop", "stop a job"),
        ("delete", "forget an ended job and its output"),
    ):
        action(name, text).add_argument("job_id")
    logs = action("logs", "print a job's output")
    logs.add_argument("job_id")
    logs.add_argument("-f", "--follow", action="store_true", help="follow until the job ends")
    action("list", "list the cluster's jobs")


def run(args: argparse.Namespace) -> int:
    try:
        client = JobSubmissionClient(args.address, _redis_password=args.redis_password)
        return _ACTIONS[args.job_command](client, args)
    except (RuntimeError, ValueError, ConnectionError) as error:
        print(f"redray job {args.job_command}: {error}", file=sys.stderr)
        return 1


def _submit(client: JobSubmissionClient, args: argparse.Namespace) -> int:
    entrypoint = args.entrypoint[1:] if args.entrypoint[:1] == ["--"] else args.entrypoint
    if not entrypoint:
        raise ValueError("no entrypoint given: redray job submit [options] -- COMMAND ...")
    runtime_env = json.loads(args.runtime_env_json) if args.runtime_env_json else {}
    if args.working_dir:
        runtime_env["working_dir"] = args.working_dir
    submission_id = client.submit_job(
        entrypoint=shlex.join(entrypoint),
        submission_id=args.submission_id,
        runtime_env=runtime_env or None,
        metadata=json.loads(args.metadata_json) if args.metadata_json else None,
    )
    print(f"Job '{submission_id}' submitted successfully")
    if args.no_wait:
        print(f"Query its status with `redray job status {submission_id}`, its output with "
              f"`redray job logs {submission_id}`.")  # fmt: skip
        return 0
    asyncio.run(_print_tail(client, submission_id))
    job = client.get_job_info(submission_id)
    print(f"Job '{submission_id}' {job.status.value.lower()}: {job.message}")
    return 0 if job.status.value == "SUCCEEDED" else 1


async def _print_tail(client: JobSubmissionClient, submission_id: str) -> None:
    async for chunk in client.tail_job_logs(submission_id):
        sys.stdout.write(chunk)
        sys.stdout.flush()


def _status(client: JobSubmissionClient, args: argparse.Namespace) -> int:
    job = client.get_job_info(args.job_id)
    print(f"Status for job '{args.job_id}': {job.status.value}")
    print(f"Status message: {job.message}")
    return 0


def _logs(client: JobSubmissionClient, args: argparse.Namespace) -> int:
    if args.follow:
        asyncio.run(_print_tail(client, args.job_id))
    else:
        sys.stdout.write(client.get_job_logs(args.job_id))
    return 0


def _stop(client: JobSubmissionClient, args: argparse.Namespace) -> int:
    if not client.stop_job(args.job_id):
        print(f"Job '{args.job_id}' has already ended.")
        return 0
    print(f"Waiting for job '{args.job_id}' to exit...")
    while not client.get_job_status(args.job_id).is_terminal():
        time.sleep(_POLL_S)
    print(f"Job '{args.job_id}' was stopped")
    return 0


def _delete(client: JobSubmissionClient, args: argparse.Namespace) -> int:
    client.delete_job(args.job_id)
    print(f"Job '{args.job_id}' deleted successfully")
    return 0


def _list(client: JobSubmissionClient, args: argparse.Namespace) -> int:
    jobs = client.list_jobs()
    if not jobs:
        print("No jobs.")
    for job in jobs:
        print(_describe(job))
    return 0


def _describe(job: JobInfo) -> str:
    started = datetime.fromtimestamp((job.start_time or 0) / 1000).strftime("%Y-%m-%d %H:%M:%S")
    return f"{job.submission_id}  {job.status.value:<9}  {started}  {job.entrypoint}"


_ACTIONS = {
    "submit": _submit,
    "status": _status,
    "logs": _logs,
    "stop": _stop,
    "delete": _delete,
    "list": _list,
}
