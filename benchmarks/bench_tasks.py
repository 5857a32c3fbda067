"""Task benchmarks: latency, throughput, chains, nesting and wait().

Remote functions are defined inside the benchmark functions so that cloudpickle ships
them by value: workers never need to import this module.
"""

from __future__ import annotations

from typing import Any

import bench_harness as h


def task_latency(ctx: h.Ctx) -> dict[str, Any]:
    rt = ctx.rt

    def noop() -> None:
        return None

    f = rt.remote(noop)
    for _ in range(50):  # warm-up: workers started, function exported
        rt.get(f.remote())
    stats = h.latency_stats(h.sample_us(lambda: rt.get(f.remote()), ctx.n(1000, 200)))
    return {
        "metrics": {
            "task_latency.median": stats["median_us"],
            "task_latency.mean": stats["mean_us"],
        },
        "details": stats,
    }


def task_throughput(ctx: h.Ctx) -> dict[str, Any]:
    rt = ctx.rt

    def noop() -> None:
        return None

    f = rt.remote(noop)
    rt.get([f.remote() for _ in range(100)])
    n = ctx.n(5000, 1000)

    def once() -> float:
        t0 = h.now()
        rt.get([f.remote() for _ in range(n)])
        return h.now() - t0

    best, times = h.best_of(once, ctx.n(2, 1))
    return {"metrics": {"task_throughput.rate": n / best}, "details": {"n": n, "times_s": times}}


def task_chain(ctx: h.Ctx) -> dict[str, Any]:
    rt = ctx.rt
    depth = 100

    def inc(x: int) -> int:
        return x + 1

    f = rt.remote(inc)
    rt.get(f.remote(f.remote(0)))

    def once() -> float:
        t0 = h.now()
        ref = f.remote(0)
        for _ in range(depth - 1):
            ref = f.remote(ref)
        result = rt.get(ref)
        elapsed = h.now() - t0
        assert result == depth, result
        return elapsed

    best, times = h.best_of(once, ctx.n(3, 1))
    return {
        "metrics": {"task_chain.per_hop": best / depth * 1e3},
        "details": {"depth": depth, "times_s": times},
    }


def nested_tasks(ctx: h.Ctx) -> dict[str, Any]:
    rt = ctx.rt
    fanout = 10

    def leaf() -> int:
        return 1

    inner = rt.remote(leaf)

    def parent() -> int:
        return sum(rt.get([inner.remote() for _ in range(fanout)]))

    outer = rt.remote(parent)
    n_outer = ctx.n(10, 4)
    # Warm-up with a full batch: blocked parents make the framework grow its worker pool.
    assert rt.get([outer.remote() for _ in range(n_outer)]) == [fanout] * n_outer

    def once() -> float:
        t0 = h.now()
        results = rt.get([outer.remote() for _ in range(n_outer)])
        elapsed = h.now() - t0
        assert results == [fanout] * n_outer, results
        return elapsed

    best, times = h.best_of(once, ctx.n(2, 1))
    total = n_outer * (1 + fanout)
    return {
        "metrics": {"nested_tasks.rate": total / best},
        "details": {
            "outer_tasks": n_outer,
            "fanout": fanout,
            "total_tasks": total,
            "times_s": times,
        },
    }


def wait_1000(ctx: h.Ctx) -> dict[str, Any]:
    rt = ctx.rt
    n = 1000

    def noop() -> None:
        return None

    f = rt.remote(noop)
    refs = [f.remote() for _ in range(n)]
    rt.get(refs)  # all ready now

    def once() -> float:
        t0 = h.now()
        ready, not_ready = rt.wait(refs, num_returns=n)
        elapsed = h.now() - t0
        assert len(ready) == n and not not_ready
        return elapsed

    samples = sorted(once() for _ in range(ctx.n(5, 2)))
    median = samples[len(samples) // 2]
    return {"metrics": {"wait_1000.time": median * 1e3}, "details": {"times_s": samples}}
