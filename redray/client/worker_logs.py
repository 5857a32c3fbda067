"""Printing workers' output on the driver, as Ray does.

The driver's notification reader (client/notifications.py) also reads its job's log
stream (`logs:<job id>`, written by worker/output.py) and hands each entry to
`WorkerLogPrinter.on_entries`, which prints its lines to this process's `sys.stdout` or
`sys.stderr` (so a Jupyter cell shows them) behind Ray's prefix: `(f pid=123)`,
`(MyActor pid=123)`, and `, ip=10.0.0.2` when the worker's node is on another machine.

Identical lines from different workers within `RAY_DEDUP_LOGS_AGG_WINDOW_S` seconds are
collapsed into one `... [repeated 5x across cluster]` (`LogDeduplicator`, Ray's rules and
environment variables: `RAY_DEDUP_LOGS=0` turns it off, `RAY_DEDUP_LOGS_ALLOW_REGEX` /
`RAY_DEDUP_LOGS_SKIP_REGEX` never dedup / always drop). `RAY_COLOR_PREFIX=0` prints no
colour codes, `RAY_DISABLE_WORKER_LOG_PREFIX=1` no prefix.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_CYAN = "\x1b[36m"
_GREEN = "\x1b[32m"
_RESET = "\x1b[0m"
#: Words with digits or hex differ between workers; Ray ignores them when comparing lines.
_NUMBERS = re.compile(r"(\d+|0x[0-9a-fA-F]+)")
#: Lines of redray.experimental.tqdm_ray bars: handled by the bar, never deduplicated.
TQDM_MAGIC = "__ray_tqdm_magic_token__"


def _env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() not in ("0", "false", "no", "off", "")


@dataclass
class LogBatch:
    """Lines from one worker (pid, ip) and one stream, with what ran there."""

    pid: str
    ip: str
    name: str
    is_actor: bool
    is_err: bool
    lines: list[str]

    @classmethod
    def from_fields(cls, fields: dict[bytes, bytes]) -> LogBatch:
        text = fields.get(b"l", b"").decode("utf-8", "replace")
        return cls(
            pid=fields.get(b"p", b"").decode(),
            ip=fields.get(b"ip", b"").decode(),
            name=fields.get(b"name", b"").decode("utf-8", "replace"),
            is_actor=bool(fields.get(b"actor")),
            is_err=bool(fields.get(b"e")),
            lines=text.split("\n"),
        )

    def with_lines(self, lines: list[str]) -> LogBatch:
        return LogBatch(self.pid, self.ip, self.name, self.is_actor, self.is_err, lines)


def canonical(line: str) -> str:
    """A line without its words containing numbers: lines equal so are duplicates."""
    return " ".join(word for word in line.split() if not _NUMBERS.search(word))


@dataclass
class _Seen:
    first_seen: float
    #: Occurrences since it was last printed.
    count: int
    line: str
    batch: LogBatch
    sources: set[tuple[str, str]] = field(default_factory=set)


class LogDeduplicator:
    """Ray's log deduplication: the first occurrence of a line prints at once; later ones
    from *other* workers within the window are counted and printed once as
    `line [repeated Nx across cluster]` when the window ends. A worker repeating its own
    line is never collapsed."""

    def __init__(
        self,
        window_s: float,
        allow: str | None,
        skip: str | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window_s = window_s
        self._allow = re.compile(allow) if allow else None
        self._skip = re.compile(skip) if skip else None
        self._clock = clock
        self._recent: dict[str, _Seen] = {}
        self._warned = False

    def deduplicate(self, batch: LogBatch) -> list[LogBatch]:
        """What to print now: (part of) this batch, and repeats whose window has ended."""
        now = self._clock()
        source = (batch.ip, batch.pid)
        emitted: list[str] = []
        for line in batch.lines:
            if TQDM_MAGIC in line or (self._allow and self._allow.search(line)):
                emitted.append(line)
                continue
            if self._skip and self._skip.search(line):
                continue
            key = canonical(line)
            if not key:
                emitted.append(line)
                continue
            seen = self._recent.get(key)
            if seen is None:
                self._recent[key] = _Seen(now, 0, line, batch, {source})
                emitted.append(line)
                continue
            seen.sources.add(source)
            if len(seen.sources) > 1:
                seen.count += 1
                seen.line, seen.batch = line, batch
            else:
                emitted.append(line)
        return [batch.with_lines(emitted), *self.expired(now)]

    def expired(self, now: float | None = None) -> list[LogBatch]:
        """Repeats whose window has ended (the reader calls this when idle too)."""
        now = self._clock() if now is None else now
        out: list[LogBatch] = []
        for key in list(self._recent):
            seen = self._recent[key]
            if now - seen.first_seen < self.window_s:
                continue
            if seen.count > 1:
                out.append(seen.batch.with_lines([self._repeated(seen)]))
                seen.first_seen, seen.count = now, 0  # keep collapsing this line
            else:
                del self._recent[key]
                if seen.count == 1:  # one repeat: not worth a summary, print it plainly
                    out.append(seen.batch.with_lines([seen.line]))
        return out

    def flush(self) -> list[LogBatch]:
        """Everything still counted (the driver is shutting down)."""
        out = []
        for seen in self._recent.values():
            if seen.count > 1:
                out.append(seen.batch.with_lines([self._repeated(seen)]))
            elif seen.count == 1:
                out.append(seen.batch.with_lines([seen.line]))
        self._recent.clear()
        return out

    def _repeated(self, seen: _Seen) -> str:
        note = f" [repeated {seen.count}x across cluster]"
        if not self._warned:
            self._warned = True
            note += (
                " (redray deduplicates logs by default. Set RAY_DEDUP_LOGS=0 to disable "
                "log deduplication.)"
            )
        if _env_flag("RAY_COLOR_PREFIX", True):
            return f"{seen.line}{_GREEN}{note}{_RESET}"
        return seen.line + note


class WorkerLogPrinter:
    """Prints a job's worker output on its driver (see the module docstring)."""

    def __init__(self, local_ip: str) -> None:
        self.local_ip = local_ip
        self.dedup_enabled = _env_flag("RAY_DEDUP_LOGS", True)
        window = float(os.environ.get("RAY_DEDUP_LOGS_AGG_WINDOW_S", "5"))
        allow = os.environ.get("RAY_DEDUP_LOGS_ALLOW_REGEX", "__ray_testing_never_deduplicate__")
        skip = os.environ.get("RAY_DEDUP_LOGS_SKIP_REGEX")
        self._dedup = {False: LogDeduplicator(window, allow, skip),
                       True: LogDeduplicator(window, allow, skip)}  # fmt: skip
        self._lock = threading.Lock()
        #: Lines of redray.experimental.tqdm_ray bars go here instead of being printed.
        self.on_tqdm_line: Callable[[str], None] | None = None
        #: Undoes what was hooked for this printer (IPython's post_execute).
        self.on_close: Callable[[], None] | None = None

    def on_entries(self, entries: list[tuple[Any, dict[bytes, bytes]]]) -> None:
        with self._lock:
            for _, fields in entries:
                batch = LogBatch.from_fields(fields)
                if self.dedup_enabled:
                    for out in self._dedup[batch.is_err].deduplicate(batch):
                        self._print(out)
                else:
                    self._print(batch)

    def on_idle(self) -> None:
        """Print the repeat summaries whose window has ended."""
        if self.dedup_enabled:
            with self._lock:
                for dedup in self._dedup.values():
                    for out in dedup.expired():
                        self._print(out)

    def flush_repeats(self) -> None:
        """Print every repeat still counted (end of a notebook cell, or shutdown)."""
        with self._lock:
            for dedup in self._dedup.values():
                for out in dedup.flush():
                    self._print(out)

    def close(self) -> None:
        self.flush_repeats()
        if self.on_close is not None:
            self.on_close()

    def prefix(self, batch: LogBatch) -> str:
        name = f"{batch.name} " if batch.name else ""
        ip = "" if batch.ip == self.local_ip else f", ip={batch.ip}"
        text = f"({name}pid={batch.pid}{ip})"
        if _env_flag("RAY_COLOR_PREFIX", True):
            return f"{_CYAN}{text}{_RESET}"
        return text

    def _print(self, batch: LogBatch) -> None:
        if not batch.lines:
            return
        sink = sys.stderr if batch.is_err else sys.stdout
        bare = _env_flag("RAY_DISABLE_WORKER_LOG_PREFIX", False)
        prefix = "" if bare else self.prefix(batch) + " "
        text = []
        for line in batch.lines:
            if TQDM_MAGIC in line and self.on_tqdm_line is not None:
                self.on_tqdm_line(line)
            else:
                text.append(f"{prefix}{line}\n")
        if text:
            bars = sys.modules.get("redray.experimental.tqdm_ray")
            try:
                if bars is not None and bars.instance().active:  # lines go above the bars
                    with bars.instance().printing():
                        sink.write("".join(text))
                        sink.flush()
                else:
                    sink.write("".join(text))
                    sink.flush()
            except (OSError, ValueError):
                pass  # the driver's stream is closed: nothing to show the lines on


def start_worker_log_printer(client: Any) -> None:
    """Make a driver print its job's worker output (init(log_to_driver=True), the default)."""
    from redray.host import node_ip

    printer = client.worker_logs = WorkerLogPrinter(node_ip())
    printer.on_tqdm_line = _draw_remote_bar
    _flush_repeats_after_each_cell(printer)
    client.ensure_reader()


def _flush_repeats_after_each_cell(printer: WorkerLogPrinter) -> None:
    """In IPython/Jupyter, a cell's repeated-line summaries show at the end of that cell
    (as Ray does), not with the next cell's output."""
    ipython_module = sys.modules.get("IPython")
    shell = ipython_module.get_ipython() if ipython_module is not None else None
    if shell is not None:
        shell.events.register("post_execute", printer.flush_repeats)
        printer.on_close = lambda: shell.events.unregister("post_execute", printer.flush_repeats)


def _draw_remote_bar(line: str) -> None:
    """A redray.experimental.tqdm_ray state line: its bar is drawn, not printed."""
    from redray.experimental import tqdm_ray

    tqdm_ray.instance().process_line(line)
