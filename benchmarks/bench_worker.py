"""Run the benchmarks for ONE backend in this process and print JSON lines.

    python benchmarks/bench_worker.py --backend ray [--only a,b] [--quick] [--big]

Each line on stdout is one JSON object with an ``event`` key:

* ``hello``          backend imported (name, version, init kwargs)
* ``backend_error``  backend cannot be imported / lacks Ray's API; nothing else follows
* ``start``          a benchmark (or the ``__init__`` / ``__shutdown__`` step) begins
* ``result``         its ``metrics`` (metric key -> value) and ``details``
* ``error``          it raised; ``error`` holds the reason
* ``done``           all selected benchmarks ran

Anything the framework prints goes to stderr, so stdout carries only these lines.
``run.py`` enforces time limits and restarts this worker after a hang or crash.
"""

from __future__ import annotations

import argparse
import faulthandler
import importlib
import os
import sys
import time
import traceback
from typing import Any, TextIO

import bench_catalog as cat
import bench_harness as h

INIT_TIMEOUT_S = 120.0  # init() + first task; run.py enforces these two limits
SHUTDOWN_TIMEOUT_S = 60.0


def _short_error(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    first = msg[0] if msg else ""
    return f"{type(exc).__name__}: {first}"[:300] if first else type(exc).__name__


def arm_stack_dump(limit_s: float) -> None:
    """Dump every thread's stack to stderr shortly before run.py would kill us."""
    faulthandler.dump_traceback_later(max(1.0, limit_s - 3.0), exit=False)


def run_bench(channel: TextIO, bench: cat.Bench, ctx: h.Ctx, scale: float = 1.0) -> None:
    """Run one benchmark, reporting its result or its error on ``channel``."""
    h.emit(channel, {"event": "start", "bench": bench.name, "time": time.time()})
    arm_stack_dump(cat.timeout_for(bench, ctx.big) * scale)
    t0 = time.perf_counter()
    try:
        func = getattr(importlib.import_module(bench.module), bench.func)
        out: dict[str, Any] = func(ctx)
        expected = {m.key for m in cat.metrics_for(bench, ctx.big)}
        missing = expected - set(out["metrics"])
        if missing:
            raise RuntimeError(f"benchmark did not report {sorted(missing)}")
    except Exception as exc:
        h.emit(
            channel,
            {
                "event": "error",
                "bench": bench.name,
                "error": _short_error(exc),
                "traceback": traceback.format_exc(limit=6),
                "elapsed_s": time.perf_counter() - t0,
            },
        )
        return
    finally:
        faulthandler.cancel_dump_traceback_later()
    h.emit(
        channel,
        {
            "event": "result",
            "bench": bench.name,
            "metrics": out["metrics"],
            "details": out.get("details", {}),
            "elapsed_s": time.perf_counter() - t0,
        },
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--backend", required=True, help="module name, e.g. redray or ray")
    ap.add_argument("--only", default=None, help="comma-separated benchmark or group names")
    ap.add_argument("--quick", action="store_true", help="fewer iterations")
    ap.add_argument("--big", action="store_true", help="include the 1 GB object")
    ap.add_argument(
        "--timeout-scale",
        type=float,
        default=1.0,
        help="run.py's time-limit factor (only used to time stack dumps)",
    )
    args = ap.parse_args(argv)
    benches = cat.select(args.only)
    channel = h.open_result_channel()

    try:
        rt = h.load_backend(args.backend)
    except h.BackendUnavailable as exc:
        h.emit(channel, {"event": "backend_error", "error": str(exc)})
        return 3
    kwargs = h.init_kwargs(args.backend, rt)
    h.emit(
        channel,
        {
            "event": "hello",
            "backend": args.backend,
            "pid": os.getpid(),
            "version": h.backend_version(rt),
            "init_kwargs": kwargs,
            "module_file": getattr(rt, "__file__", None),
        },
    )
    ctx = h.Ctx(rt=rt, backend=args.backend, quick=args.quick, big=args.big)

    for bench in benches:
        if not bench.needs_cluster:
            run_bench(channel, bench, ctx, args.timeout_scale)

    in_cluster = [b for b in benches if b.needs_cluster]
    if in_cluster:
        h.emit(channel, {"event": "start", "bench": "__init__", "time": time.time()})
        arm_stack_dump(INIT_TIMEOUT_S * args.timeout_scale)
        t0 = time.perf_counter()
        try:
            rt.init(**kwargs)
        except Exception as exc:
            h.emit(
                channel,
                {
                    "event": "error",
                    "bench": "__init__",
                    "error": _short_error(exc),
                    "traceback": traceback.format_exc(limit=6),
                },
            )
            return 4
        try:
            try:  # warm-up: the first task also starts workers
                rt.get([rt.remote(_noop).remote() for _ in range(4)])
            except Exception as exc:
                h.emit(
                    channel,
                    {
                        "event": "error",
                        "bench": "__init__",
                        "error": "first task failed: " + _short_error(exc),
                        "traceback": traceback.format_exc(limit=6),
                    },
                )
                return 4
            faulthandler.cancel_dump_traceback_later()
            h.emit(
                channel,
                {
                    "event": "result",
                    "bench": "__init__",
                    "metrics": {},
                    "details": {},
                    "elapsed_s": time.perf_counter() - t0,
                },
            )
            for bench in in_cluster:
                run_bench(channel, bench, ctx, args.timeout_scale)
        finally:
            h.emit(channel, {"event": "start", "bench": "__shutdown__", "time": time.time()})
            arm_stack_dump(SHUTDOWN_TIMEOUT_S * args.timeout_scale)
            t0 = time.perf_counter()
            rt.shutdown()
            faulthandler.cancel_dump_traceback_later()
            h.emit(
                channel,
                {
                    "event": "result",
                    "bench": "__shutdown__",
                    "metrics": {},
                    "details": {},
                    "elapsed_s": time.perf_counter() - t0,
                },
            )
    h.emit(channel, {"event": "done"})
    return 0


def _noop() -> None:
    return None


if __name__ == "__main__":
    sys.exit(main())
