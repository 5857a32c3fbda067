"""A worker's stdout and stderr: kept in the node's log files and sent to the job's driver.

A worker's file descriptors 1 and 2 point at its own log files
(`<log dir>/worker-<worker id>-<pid>.out|.err`), so everything it writes, C extensions and
child processes included, is kept on its node for `redray logs`. Python's `sys.stdout` and
`sys.stderr` are replaced by `CapturedStream`s that also collect each complete line with
what printed it (task name or actor class, task and job ids). The lines reach Redis in
batches, never one round trip per line:

- when a task or actor call commits its results, its lines ride on the same pipelined
  write, ahead of the commit, so a task's output is on the driver before `get()` returns;
- while a task runs (or a background thread prints), a flusher thread sends what has
  accumulated every `FLUSH_SECONDS`; it is started by the first line ever written, so a
  worker that never prints runs no extra thread.

Each job's lines go to one capped stream, `logs:<job id>` (client/worker_logs.py reads it).
"""

from __future__ import annotations

import io
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from redray import runtime_context
from redray.control import keys
from redray.task_spec import TaskSpec

#: How long lines written mid-task wait, at most, before they are sent.
FLUSH_SECONDS = 0.1
#: Entries (batches of lines) kept per job stream; older ones are trimmed. With entries of
#: at most ENTRY_BYTES of text, a job's output holds at most ~160 MB of Redis.
STREAM_MAXLEN = 10_000
ENTRY_BYTES = 16 * 1024
#: Lines held while Redis is unreachable; beyond that the oldest are dropped (and counted).
MAX_PENDING_LINES = 100_000


@dataclass(frozen=True)
class Source:
    """What printed a line: becomes the driver's prefix `(name pid=..., ip=...)`."""

    job_id: str
    task_id: str
    name: str
    actor_id: str
    is_actor: bool


_NO_SOURCE = Source("", "", "", "", False)


@dataclass(frozen=True)
class OutputPlace:
    """Where a node's workers keep their output, and the node's address for the prefix."""

    log_dir: str
    ip: str


class WorkerOutput:
    """One worker process's output capture and its batched sender."""

    def __init__(
        self, redis_kwargs: dict[str, Any], node_id: str, worker_id: str, ip: str, log_dir: str
    ) -> None:
        self._redis_kwargs = redis_kwargs
        self._fields = {"p": str(os.getpid()), "ip": ip, "n": node_id, "w": worker_id}
        self._lock = threading.Lock()
        #: Held while a batch is on its way, so a commit never overtakes an earlier batch.
        self._send_lock = threading.Lock()
        self._pending: list[tuple[Source, bool, str]] = []
        self._dropped = 0
        self._last_source = _NO_SOURCE
        #: The actor's prefix (its class name, or repr), once this worker hosts one.
        self.actor_label: str | None = None
        #: Anything written since the last commit took the pending lines.
        self.written = False
        #: In a process forked by a task: flush() sends at once (such children end with
        #: os._exit after flushing their streams, before a flusher would run).
        self.forked_child = False
        self._wakeup = threading.Event()
        self._flusher: threading.Thread | None = None
        self._connection: redis.Redis | None = None
        directory = Path(log_dir)
        directory.mkdir(parents=True, exist_ok=True)
        stem = directory / f"worker-{worker_id}-{os.getpid()}"
        self.paths = (str(stem) + ".out", str(stem) + ".err")
        for fd, path in zip((1, 2), self.paths):
            file_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(file_fd, fd)
            os.close(file_fd)
        sys.stdout = CapturedStream(self, 1, is_err=False)
        sys.stderr = CapturedStream(self, 2, is_err=True)
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        """In a process the task forked (multiprocessing): its lines are its own, and the
        parent's flusher thread and locks did not come along."""
        self._fields = {**self._fields, "p": str(os.getpid())}
        self._pending = []
        self.written = False
        self.forked_child = True
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._wakeup = threading.Event()
        self._flusher = None
        self._connection = None
        for stream in (sys.stdout, sys.stderr):
            if isinstance(stream, CapturedStream):
                stream._lock = threading.Lock()

    # ---- capture (any thread) ------------------------------------------------------------

    def add_lines(self, is_err: bool, lines: list[str], spec: TaskSpec | None = None) -> None:
        source = self._source(spec)
        with self._lock:
            start_flusher = not self._pending
            self._pending.extend((source, is_err, line) for line in lines)
            if len(self._pending) > MAX_PENDING_LINES:
                excess = len(self._pending) - MAX_PENDING_LINES
                del self._pending[:excess]
                self._dropped += excess
            flusher = None
            if start_flusher and self._flusher is None:
                flusher = self._flusher = threading.Thread(
                    target=self._flush_loop, name="redray-output", daemon=True
                )
        if start_flusher:
            self._wakeup.set()
        if flusher is not None:
            flusher.start()

    def _source(self, spec: TaskSpec | None = None) -> Source:
        """The running task's identity (`spec`'s while it commits); between tasks, the last
        one's (as Ray attributes a worker's lines to the last task it started)."""
        current = runtime_context.current
        if spec is not None:
            task_id, task_name, job_id = spec.task_id, spec.name, spec.job_id
        elif current.task_id is not None:
            task_id, task_name, job_id = current.task_id, current.task_name, current.job_id
        else:
            return self._last_source
        if self.actor_label is not None:
            name, is_actor = self.actor_label, True
        else:
            name, is_actor = task_name or "", False
        source = self._last_source
        if (source.task_id, source.name) != (task_id, name):
            source = Source(job_id, task_id, name, current.actor_id or "", is_actor)
            self._last_source = source
        return source

    # ---- sending --------------------------------------------------------------------------

    def write_pending(self, pipe: Any, spec: TaskSpec) -> None:
        """Queue the lines written so far on `pipe`: the commit of task `spec`, sent right
        after. A line the task left unfinished is a line of its own."""
        if not self.written:  # the common case, on every task's commit: one attribute read
            return
        self.written = False
        for stream in (sys.stdout, sys.stderr):
            if isinstance(stream, CapturedStream):
                stream.end_line(spec)
        with self._send_lock:
            for key, fields in self._take_batches():
                pipe.xadd(key, fields, maxlen=STREAM_MAXLEN, approximate=True)

    def _take_batches(self) -> list[tuple[str, dict[str, str]]]:
        """Pending lines as stream entries: one per run of lines from one source and stream."""
        with self._lock:
            pending, self._pending = self._pending, []
            dropped, self._dropped = self._dropped, 0
        if dropped and pending:
            source, is_err, _ = pending[0]
            pending.insert(0, (source, True, f"[redray: {dropped} lines of output dropped]"))
        batches: list[tuple[str, dict[str, str]]] = []
        run: list[str] = []
        size = 0
        for index, (source, is_err, line) in enumerate(pending):
            run.append(line)
            size += len(line) + 1
            following = pending[index + 1] if index + 1 < len(pending) else None
            if following is not None and following[:2] == (source, is_err) and size < ENTRY_BYTES:
                continue
            if source.job_id:  # lines before the first task belong to no driver
                fields = {
                    **self._fields,
                    "t": source.task_id,
                    "name": source.name,
                    "a": source.actor_id,
                    "actor": "1" if source.is_actor else "",
                    "e": "1" if is_err else "",
                    "l": "\n".join(run),
                }
                batches.append((keys.logs(source.job_id), fields))
            run = []
            size = 0
        return batches

    def close(self) -> None:
        """The worker is exiting: send what is still pending (a background thread's lines)."""
        for stream in (sys.stdout, sys.stderr):
            if isinstance(stream, CapturedStream):
                stream.end_line(None)
        with self._send_lock:
            batches = self._take_batches()
            if batches:
                self._send(batches)

    def _flush_loop(self) -> None:
        while True:
            self._wakeup.wait()
            time.sleep(FLUSH_SECONDS)  # gather what else is printed meanwhile
            with self._lock:
                self._wakeup.clear()
            with self._send_lock:
                batches = self._take_batches()
                if batches:
                    self._send(batches)

    def _send(self, batches: list[tuple[str, dict[str, str]]]) -> None:
        """Write batches on the flusher's own connection; lost if Redis is unreachable
        (a task never waits on its output)."""
        try:
            if self._connection is None:
                self._connection = redis.Redis(**self._redis_kwargs, socket_timeout=5)
            pipe = self._connection.pipeline(transaction=False)
            for key, fields in batches:
                pipe.xadd(key, fields, maxlen=STREAM_MAXLEN, approximate=True)
            pipe.execute()
        except redis.RedisError:
            with self._lock:
                self._dropped += sum(fields["l"].count("\n") + 1 for _, fields in batches)


class CapturedStream(io.TextIOBase):
    """`sys.stdout` / `sys.stderr` of a worker: writes go to the log file (fd 1 or 2), and
    complete lines to the worker's pending output."""

    def __init__(self, output: WorkerOutput, fd: int, is_err: bool) -> None:
        super().__init__()
        self._output = output
        self._fd = fd
        self._is_err = is_err
        self._partial = ""
        self._lock = threading.Lock()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    @property
    def errors(self) -> str:  # type: ignore[override]
        return "replace"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._fd

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self._output.written = True
        with self._lock:
            data = self._partial + text
            if "\n" not in text:
                self._partial = data
                return len(text)
            complete, _, self._partial = data.rpartition("\n")
            os.write(self._fd, (complete + "\n").encode("utf-8", "replace"))
        self._output.add_lines(self._is_err, complete.split("\n"))
        return len(text)

    def end_line(self, spec: TaskSpec | None) -> None:
        """A task ended mid-line: what it wrote of the line is a line of its own."""
        with self._lock:
            partial, self._partial = self._partial, ""
            if partial:
                os.write(self._fd, (partial + "\n").encode("utf-8", "replace"))
        if partial:
            self._output.add_lines(self._is_err, [partial], spec)

    def flush(self) -> None:
        """Lines are written as they complete; a partial line waits for its end (or the
        end of the task), as a terminal shows it. In a forked child, what is pending is
        sent now."""
        if self._output.forked_child:
            self._output.close()
