"""`redray logs`: workers' output, by task, actor, worker, node or job, with `--follow`.

Lines come from the jobs' log streams in Redis (`logs:<job id>`, written by
worker/output.py), so a task on any node can be read from anywhere. A worker whose node
is on this machine also has its complete output (C extensions and child processes too)
in its node's log files, which `redray logs worker --pid N` prefers. With no target,
the command lists the log files of this machine's nodes and the jobs with output.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis

from redray.client.worker_logs import LogBatch
from redray.control import keys
from redray.control.raw import stream_entries

#: entry field a target kind is matched on
_FIELD = {"task": b"t", "actor": b"a", "worker": b"p", "node": b"n"}
_FOLLOW_BLOCK_MS = 1000


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "kind",
        nargs="?",
        choices=["task", "actor", "worker", "node", "job"],
        help="whose output: a task's, an actor's, a worker's (--pid), a node's or a job's "
        "(none: list the log files here and the jobs with output)",
    )
    parser.add_argument("--id", help="the task, actor, node or job id")
    parser.add_argument("--pid", type=int, help="the worker's process id (worker)")
    parser.add_argument("--node-id", help="only output from this node")
    parser.add_argument("--job-id", help="only this job's output")
    parser.add_argument("--err", action="store_true", help="stderr only")
    parser.add_argument("--out", action="store_true", help="stdout only")
    parser.add_argument("--tail", type=int, default=0, help="only the last N lines")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing new output")


def run(args: argparse.Namespace, client: redis.Redis) -> int:
    """The `redray logs` command; returns the exit code (1 when nothing matched)."""
    if args.kind is None:
        return _list(client)
    wanted = _wanted(args)
    if args.kind == "worker":
        files = _local_worker_files(client, args.pid, args.node_id)
        if files:
            return _print_files(files, args)
    streams = [keys.logs(args.job_id)] if args.job_id else _job_streams(client)
    if args.kind == "job":
        streams = [keys.logs(args.id)]
    raw = args.kind in ("task", "actor", "worker")
    last_ids = {stream: "0-0" for stream in streams}
    lines: list[str] = []
    for stream in streams:
        entries = client.xrange(stream)
        if entries:
            last_ids[stream] = entries[-1][0]
        lines.extend(_format(entries, wanted, args, raw))
    if args.tail:
        lines = lines[-args.tail :]
    for line in lines:
        print(line)
    if args.follow:
        return _follow(client, last_ids, wanted, args, raw)
    if not lines:
        print(f"No output recorded for {args.kind} {args.id or args.pid or ''}.".rstrip(),
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


def _wanted(args: argparse.Namespace) -> tuple[bytes, bytes] | None:
    """(entry field, value) the entries must have; None for a whole job."""
    if args.kind == "job":
        if not args.id:
            raise SystemExit("redray logs job: give the job id with --id")
        return None
    if args.kind == "worker":
        if args.pid is None:
            raise SystemExit("redray logs worker: give the worker's process id with --pid")
        return _FIELD["worker"], str(args.pid).encode()
    if not args.id:
        raise SystemExit(f"redray logs {args.kind}: give the {args.kind} id with --id")
    return _FIELD[args.kind], args.id.encode()


def _format(
    entries: list[tuple[Any, dict[bytes, bytes]]],
    wanted: tuple[bytes, bytes] | None,
    args: argparse.Namespace,
    raw: bool,
) -> Iterator[str]:
    for _, fields in entries:
        if wanted is not None and fields.get(wanted[0]) != wanted[1]:
            continue
        if args.node_id and fields.get(b"n") != args.node_id.encode():
            continue
        batch = LogBatch.from_fields(fields)
        if (args.err and not batch.is_err) or (args.out and batch.is_err):
            continue
        name = f"{batch.name} " if batch.name else ""
        prefix = "" if raw else f"({name}pid={batch.pid}, ip={batch.ip}) "
        for line in batch.lines:
            yield prefix + line


def _follow(
    client: redis.Redis,
    last_ids: dict[str, Any],
    wanted: tuple[bytes, bytes] | None,
    args: argparse.Namespace,
    raw: bool,
) -> int:
    try:
        while True:
            if not args.job_id and args.kind != "job":  # jobs started since
                for stream in _job_streams(client):
                    last_ids.setdefault(stream, "0-0")
            if not last_ids:
                time.sleep(_FOLLOW_BLOCK_MS / 1000)
                continue
            reply = client.xread(last_ids, block=_FOLLOW_BLOCK_MS)
            for name, entries in stream_entries(reply):
                last_ids[name.decode()] = entries[-1][0]
                for line in _format(entries, wanted, args, raw):
                    print(line, flush=True)
    except KeyboardInterrupt:
        return 0


def _job_streams(client: redis.Redis) -> list[str]:
    return sorted(key.decode() for key in client.scan_iter(match=keys.LOGS_PATTERN, count=1000))


def _local_log_dirs(client: redis.Redis, node_id: str | None) -> dict[str, Path]:
    """node id -> its log directory, for the nodes whose directory is on this machine."""
    found = {}
    for raw_id, raw in client.hgetall(keys.NODES).items():
        record = json.loads(raw)
        directory = record.get("log_dir")
        if directory and Path(directory).is_dir() and node_id in (None, raw_id.decode()):
            found[raw_id.decode()] = Path(directory)
    return found


def _local_worker_files(client: redis.Redis, pid: int, node_id: str | None) -> list[Path]:
    for directory in _local_log_dirs(client, node_id).values():
        files = sorted(directory.glob(f"worker-*-{pid}.*"))
        if files:
            return files
    return []


def _print_files(files: list[Path], args: argparse.Namespace) -> int:
    chosen = [f for f in files if not (args.err and f.suffix == ".out")]
    chosen = [f for f in chosen if not (args.out and f.suffix == ".err")]
    positions = {}
    for path in chosen:
        with path.open("rb") as handle:
            lines = handle.read().decode("utf-8", "replace").splitlines()
            positions[path] = handle.tell()
        for line in lines[-args.tail :] if args.tail else lines:
            print(line)
    if not args.follow:
        return 0
    try:
        while True:
            for path in chosen:
                with path.open("rb") as handle:
                    handle.seek(positions[path])
                    new = handle.read()
                    positions[path] = handle.tell()
                if new:
                    sys.stdout.write(new.decode("utf-8", "replace"))
                    sys.stdout.flush()
            time.sleep(0.2)  # tail -f of a file has no doorbell to wait on
    except KeyboardInterrupt:
        return 0


def _list(client: redis.Redis) -> int:
    for node_id, directory in sorted(_local_log_dirs(client, None).items()):
        print(f"Node {node_id}: {directory}")
        for path in sorted(directory.iterdir()):
            print(f"  {path.name}  ({path.stat().st_size} bytes)")
    streams = _job_streams(client)
    if streams:
        print("Jobs with worker output (redray logs job --id ID):")
        for stream in streams:
            print(f"  {stream.rsplit(':', 1)[1]}  ({client.xlen(stream)} batches)")
    else:
        print("No worker output recorded in this cluster.")
    return 0
