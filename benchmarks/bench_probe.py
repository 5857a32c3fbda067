"""Cold start and idle memory, measured in a fresh Python process.

Run as a script (``python bench_probe.py --backend ray``) it imports the framework, calls
``init()``, waits for one no-op task's result, idles ~2 s, sums the RSS of every process
the framework started, shuts down, and prints one JSON object. "Every process the framework
started" is every process seen right after init, after the first result and after the idle
period below the probe's parent (the worker, which is a Linux child subreaper while the probe
runs, so daemonized or orphaned framework processes are re-parented to it), except the probe.

Imported by ``bench_worker.py`` it provides the ``cold_start`` / ``idle_memory``
benchmarks, which run that script once (cached) and pick their figures out of it.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# The script's own directory is sys.path[0] when run directly, so this works both ways.
import bench_harness as h

IDLE_SECONDS = 2.0
PROBE_TIMEOUT_S = 90.0

_cache: dict[str, dict[str, Any]] = {}


# --------------------------------------------------------------------------- in the worker


def _run_probe(ctx: h.Ctx) -> dict[str, Any]:
    """Run this file in a fresh subprocess (once per backend) and return its JSON."""
    if ctx.backend in _cache:
        return _cache[ctx.backend]
    env = h.backend_env(ctx.backend)
    fd, out_path = tempfile.mkstemp(prefix="bench-probe-", suffix=".json")
    os.close(fd)
    cmd = [
        sys.executable,
        __file__,
        "--backend",
        ctx.backend,
        "--idle",
        str(IDLE_SECONDS),
        "--out",
        out_path,
    ]
    preexisting = h.descendants()
    probe_pids: set[int] = set()
    # While the probe runs we are its subreaper: processes it daemonizes or orphans are
    # re-parented to us, so the probe measures our whole subtree (--scan-root).
    with h.Subreaper(keep=lambda: probe_pids):
        try:
            t0 = time.perf_counter()
            cmd += ["--scan-root", str(os.getpid())]
            # The result goes to a file: forked framework processes could hold a pipe open.
            # Own session: nothing the probe's framework signals can reach this process.
            proc = subprocess.Popen(cmd, env=env, start_new_session=True)
            probe_pids.add(proc.pid)
            try:
                code = proc.wait(timeout=PROBE_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                h.kill_pids(h.descendants() - preexisting)
                raise TimeoutError(
                    f"cold-start probe did not finish in {PROBE_TIMEOUT_S:.0f} s"
                ) from None
            wall = time.perf_counter() - t0
            leftovers = h.reap_descendants(wait=5.0, exclude=preexisting)
            text = Path(out_path).read_text().strip()
        finally:
            Path(out_path).unlink(missing_ok=True)
    if not text:
        raise RuntimeError(f"cold-start probe exited {code} without a result")
    result = json.loads(text)
    if "error" in result:
        raise RuntimeError(result["error"])
    result["process_wall_s"] = wall
    if leftovers:
        result["leftover_processes_killed"] = leftovers
    _cache[ctx.backend] = result
    return result


def cold_start(ctx: h.Ctx) -> dict[str, Any]:
    r = _run_probe(ctx)
    return {
        "metrics": {
            "cold_start.import": r["import_s"] * 1e3,
            "cold_start.init_to_first": (r["init_s"] + r["first_task_s"]) * 1e3,
        },
        "details": {
            k: r[k]
            for k in (
                "import_s",
                "init_s",
                "first_task_s",
                "process_wall_s",
                "shutdown_s",
                "leftover_processes_killed",
            )
            if k in r
        },
    }


def idle_memory(ctx: h.Ctx) -> dict[str, Any]:
    r = _run_probe(ctx)
    return {
        "metrics": {
            "idle_memory.rss": r["cluster_rss_mb"],
            "idle_memory.driver": r["driver_rss_mb"],
        },
        "details": {
            "processes": r["processes"],
            "num_processes": len(r["processes"]),
            "driver_rss_mb": r["driver_rss_mb"],
            "idle_s": r["idle_s"],
        },
    }


# --------------------------------------------------------------------------- in the probe


def _noop() -> None:
    return None


def probe(backend: str, idle: float, scan_root: int | None = None) -> dict[str, Any]:
    """Measure import, init, first result and idle memory in *this* (fresh) process.

    The framework's processes are the descendants of ``scan_root`` (our parent, acting as
    subreaper, when run by the worker; default: this process), except this process.
    """
    root = scan_root or os.getpid()

    def framework_pids() -> set[int]:
        return h.descendants(root) - {os.getpid()}

    t0 = time.perf_counter()
    rt = h.load_backend(backend)
    t1 = time.perf_counter()
    rt.init(**h.init_kwargs(backend, rt))
    try:
        t2 = time.perf_counter()
        seen = framework_pids()  # right after init
        ref = rt.remote(_noop).remote()
        rt.get(ref)
        t3 = time.perf_counter()

        seen |= framework_pids()
        time.sleep(idle)
        seen |= framework_pids()
        procs = h.rss_by_pid(seen)
        driver_rss = h.rss_by_pid([os.getpid()]).get(os.getpid(), ("", 0.0))[1]
    finally:
        t4 = time.perf_counter()
        rt.shutdown()
        t5 = time.perf_counter()
    return {
        "backend": backend,
        "import_s": t1 - t0,
        "init_s": t2 - t1,
        "first_task_s": t3 - t2,
        "idle_s": idle,
        "cluster_rss_mb": sum(mb for _, mb in procs.values()),
        "processes": sorted(
            (
                {"pid": pid, "name": name, "rss_mb": round(mb, 1)}
                for pid, (name, mb) in procs.items()
            ),
            key=lambda d: -d["rss_mb"],
        ),
        "driver_rss_mb": driver_rss,
        "shutdown_s": t5 - t4,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--backend", required=True)
    ap.add_argument("--idle", type=float, default=IDLE_SECONDS)
    ap.add_argument("--out", default=None, help="write the JSON here (default: stdout)")
    ap.add_argument(
        "--scan-root",
        type=int,
        default=None,
        help="count this process's descendants (default: our own)",
    )
    args = ap.parse_args(argv)
    # If we hang, leave a Python stack in the log before the worker kills us.
    faulthandler.dump_traceback_later(PROBE_TIMEOUT_S - 5, exit=False)
    channel = open(args.out, "w") if args.out else h.open_result_channel()
    with channel:
        try:
            result = probe(args.backend, args.idle, args.scan_root)
        except Exception as exc:  # reported to the worker, which turns it into "n/a"
            h.emit(channel, {"error": f"{type(exc).__name__}: {exc}"})
            return 1
        h.emit(channel, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
