"""Benchmark redray against Ray: same workloads, one subprocess per backend, one table.

    python benchmarks/run.py [--backends redray,ray] [--only name1,name2]
                             [--json out.json] [--quick] [--big] [--verbose]
                             [--timeout-scale X] [--list]

Each backend runs in its own ``bench_worker.py`` subprocess (the frameworks never share a
process), one after the other. A benchmark that raises, hangs past its time limit or
crashes the worker is reported as "n/a" with the reason; the worker is then restarted for
the benchmarks that remain. Every process a worker started is cleaned up afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import bench_catalog as cat
import bench_harness as h
from bench_report import BackendRun, BenchOutcome, render, table_rows
from bench_worker import INIT_TIMEOUT_S, SHUTDOWN_TIMEOUT_S

HELLO_TIMEOUT_S = 60.0  # interpreter start + framework import
GAP_TIMEOUT_S = 60.0  # between one benchmark's end and the next event
STEP_TIMEOUT_S = {"__init__": INIT_TIMEOUT_S, "__shutdown__": SHUTDOWN_TIMEOUT_S}
MAX_RESTARTS = 3

_WORKER_PIDS: set[int] = set()  # reaped by their Popen objects, not by the Subreaper


def log(msg: str) -> None:
    print(msg, flush=True)


def _reader(stream: Any, q: queue.Queue[str | None]) -> None:
    for line in stream:
        q.put(line)
    q.put(None)


def _tail(path: Path | None, n: int = 12) -> str:
    if path is None or not path.exists():
        return ""
    lines = path.read_text(errors="replace").splitlines()
    return "\n".join("      " + ln for ln in lines[-n:])


class WorkerSession:
    """One ``bench_worker.py`` subprocess and the bookkeeping of its JSON lines."""

    def __init__(self, backend: str, names: list[str], args: argparse.Namespace) -> None:
        self.backend = backend
        env = h.backend_env(backend)
        cmd = [
            sys.executable,
            str(h.BENCH_DIR / "bench_worker.py"),
            "--backend",
            backend,
            "--only",
            ",".join(names),
        ]
        cmd += ["--quick"] * args.quick + ["--big"] * args.big
        cmd += ["--timeout-scale", str(args.timeout_scale)]
        self.log_path: Path | None = None
        if args.verbose:
            stderr: Any = None
        else:
            fd, name = tempfile.mkstemp(prefix=f"bench-{backend}-", suffix=".log")
            self.log_path = Path(name)
            stderr = fd
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True, start_new_session=True
        )
        _WORKER_PIDS.add(self.proc.pid)
        if self.log_path is not None:
            os.close(stderr)
        self.q: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=_reader, args=(self.proc.stdout, self.q), daemon=True).start()

    def next_event(self, timeout: float) -> dict[str, Any] | None:
        """Next JSON event; ``None`` at EOF/exit; raises ``queue.Empty`` on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise queue.Empty
            try:
                line = self.q.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                # A forked child may keep our stdout open after the worker died.
                if self.proc.poll() is not None and self.q.empty():
                    return None
                continue
            if line is None:
                return None
            line = line.strip()
            if line.startswith("{"):
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(event, dict) and "event" in event:
                    return event

    def close(self, kill_now: bool = False) -> list[str]:
        """Stop the worker and everything it started; return what had to be killed.

        A worker that finished is given 15 s to exit; a hung one (``kill_now``) is not.
        """
        killed: list[str] = []
        try:
            self.proc.wait(timeout=1 if kill_now else 15)
        except subprocess.TimeoutExpired:
            killed += h.kill_pids(h.descendants(self.proc.pid) | {self.proc.pid})
        _WORKER_PIDS.discard(self.proc.pid)
        # We are a child subreaper, so whatever the worker started is still our descendant.
        killed += h.reap_descendants(wait=5.0)
        return killed

    def cleanup_log(self) -> None:
        if self.log_path is not None:
            self.log_path.unlink(missing_ok=True)


def run_backend(backend: str, benches: list[cat.Bench], args: argparse.Namespace) -> BackendRun:
    """Run the selected benchmarks for one backend, restarting the worker after hangs."""
    run = BackendRun(name=backend, benches={b.name: BenchOutcome() for b in benches})
    remaining = [b.name for b in benches]
    restarts = 0
    while remaining:
        session = WorkerSession(backend, remaining, args)
        current: str | None = None
        timeout = HELLO_TIMEOUT_S
        finished_cleanly = False
        had_errors = False
        failure = ""
        try:
            while True:
                try:
                    ev = session.next_event(timeout)
                except queue.Empty:
                    failure = f"timed out after {timeout:.0f} s"
                    break
                if ev is None:
                    try:
                        code = session.proc.wait(timeout=5)
                    except subprocess.TimeoutExpired:
                        code = None
                    how = (
                        f"killed by signal {-code}"
                        if code is not None and code < 0
                        else f"exit code {code}"
                    )
                    failure = f"worker exited unexpectedly ({how})"
                    break
                kind = ev["event"]
                if kind == "backend_error":
                    run.available, run.error = False, ev["error"]
                    log(f"[{backend}] unavailable: {ev['error']}")
                    remaining = []
                    finished_cleanly = True
                    break
                if kind == "hello":
                    run.version = ev.get("version", "")
                    log(f"[{backend}] version {run.version}, init({_kw(ev.get('init_kwargs'))})")
                    timeout = GAP_TIMEOUT_S
                elif kind == "start":
                    current = ev["bench"]
                    if current in STEP_TIMEOUT_S:
                        timeout = STEP_TIMEOUT_S[current]
                    else:
                        timeout = cat.timeout_for(cat.BY_NAME[current], args.big)
                    timeout *= args.timeout_scale
                elif kind in ("result", "error"):
                    name = ev["bench"]
                    current, timeout = None, GAP_TIMEOUT_S
                    if name == "__init__" and kind == "error":
                        had_errors = True
                        reason = f"init failed: {ev['error']}"
                        log(f"[{backend}] {reason}")
                        for n in remaining:
                            if cat.BY_NAME[n].needs_cluster and run.benches[n].status == "not run":
                                run.benches[n].error = reason
                        remaining = []
                        finished_cleanly = True
                        break
                    if name.startswith("__"):
                        continue
                    out = run.benches[name]
                    out.elapsed_s = ev.get("elapsed_s")
                    if kind == "result":
                        out.status, out.metrics, out.details = "ok", ev["metrics"], ev["details"]
                        log(f"[{backend}] {name:<20} ok    ({out.elapsed_s:.1f} s)")
                    else:
                        out.status, out.error = "error", ev["error"]
                        out.details = {"traceback": ev.get("traceback", "")}
                        had_errors = True
                        log(f"[{backend}] {name:<20} n/a   {ev['error']}")
                    remaining = [n for n in remaining if n != name]
                elif kind == "done":
                    finished_cleanly = True
                    remaining = []
                    break
        except KeyboardInterrupt:
            session.close(kill_now=True)
            raise
        leftovers = session.close(kill_now=not finished_cleanly)
        if leftovers:
            note = f"killed {len(leftovers)} leftover process(es): {', '.join(leftovers[:8])}"
            run.notes.append(note)
            log(f"[{backend}] {note}")
        if finished_cleanly:
            if had_errors and session.log_path:
                run.notes.append(f"worker stderr kept in {session.log_path}")
            else:
                session.cleanup_log()
            break
        # The worker hung or crashed: blame the step in progress, then go on without it.
        tail = _tail(session.log_path, 25)
        where = current or "between benchmarks"
        log(f"[{backend}] {where}: {failure}" + (f"; worker stderr tail:\n{tail}" if tail else ""))
        if session.log_path:
            log(f"[{backend}] full worker log: {session.log_path}")
            run.notes.append(f"worker stderr kept in {session.log_path}")
        if current in (None, "__init__", "__shutdown__"):
            if current == "__shutdown__":
                break  # every benchmark already reported
            reason = f"{'init ' if current == '__init__' else ''}{failure}"
            for n in remaining:
                run.benches[n].error = f"not run: worker {reason}"
            break
        run.benches[current].status, run.benches[current].error = "error", failure
        remaining = [n for n in remaining if n != current]
        restarts += 1
        if restarts > MAX_RESTARTS:
            for n in remaining:
                run.benches[n].error = "not run: too many worker restarts"
            break
        if remaining:
            log(f"[{backend}] restarting worker for: {', '.join(remaining)}")
    return run


def _kw(kwargs: dict[str, Any] | None) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in (kwargs or {}).items())


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    try:
        import psutil

        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--backends",
        default="redray,ray",
        help="comma-separated module names (default: redray,ray); the ratio "
        "column compares the first against the second",
    )
    ap.add_argument(
        "--only",
        default=None,
        help=f"comma-separated benchmark names or groups ({', '.join(cat.GROUPS)}); default: all",
    )
    ap.add_argument("--json", metavar="PATH", help="also write all results as JSON here")
    ap.add_argument("--quick", action="store_true", help="fewer iterations (smoke test)")
    ap.add_argument("--big", action="store_true", help="include the 1 GB put/get")
    ap.add_argument(
        "--verbose",
        action="store_true",
        help="show the frameworks' own stderr instead of logging it to a temp file",
    )
    ap.add_argument(
        "--timeout-scale",
        type=float,
        default=1.0,
        metavar="X",
        help="multiply every per-benchmark time limit by X (default 1)",
    )
    ap.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = ap.parse_args(argv)

    if args.list:
        for b in cat.CATALOG:
            print(f"{b.name:<20} {b.group:<8} {b.doc}")
        return 0
    try:
        benches = cat.select(args.only)
    except ValueError as exc:
        ap.error(str(exc))
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not backends:
        ap.error("--backends is empty")

    t0 = time.monotonic()
    runs = []
    # As subreaper, whatever a worker started stays our descendant, even once orphaned,
    # so it can be cleaned up when the worker is done.
    with h.Subreaper(keep=lambda: _WORKER_PIDS):
        for backend in backends:
            tb = time.monotonic()
            log(
                f"[{backend}] running {len(benches)} benchmark(s)"
                f"{' (quick)' if args.quick else ''} ..."
            )
            runs.append(run_backend(backend, benches, args))
            log(f"[{backend}] finished in {time.monotonic() - tb:.0f} s")

    print()
    print(render(runs, benches, args.big))
    print(f"\n(total {time.monotonic() - t0:.0f} s; {machine_info()})")

    if args.json:
        doc = {
            "machine": machine_info(),
            "args": {k: v for k, v in vars(args).items() if k != "list"},
            "backends": {r.name: asdict(r) for r in runs},
            "table": table_rows(runs, benches, args.big),
        }
        Path(args.json).write_text(json.dumps(doc, indent=2, default=str))
        log(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
