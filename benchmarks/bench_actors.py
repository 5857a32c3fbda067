"""Actor benchmarks: creation rate, sync call latency, async call throughput.

The actor class is built inside a function so cloudpickle ships it by value.
"""

from __future__ import annotations

import gc
import time
from typing import Any

import bench_harness as h


def _actor_class(rt: Any) -> Any:
    class Pinger:
        def __init__(self) -> None:
            self.calls = 0

        def ping(self) -> int:
            self.calls += 1
            return self.calls

    return rt.remote(Pinger)


def _release(handles: list[Any]) -> None:
    """Drop actor handles (which ends the actors) and give teardown a moment."""
    handles.clear()
    gc.collect()
    time.sleep(1.0)


def actor_creation(ctx: h.Ctx) -> dict[str, Any]:
    rt = ctx.rt
    cls = _actor_class(rt)
    warm = [cls.remote()]
    rt.get(warm[0].ping.remote())
    _release(warm)
    k = ctx.n(10, 4)
    t0 = h.now()
    handles = [cls.remote() for _ in range(k)]
    results = rt.get([a.ping.remote() for a in handles])
    elapsed = h.now() - t0
    assert results == [1] * k, results
    _release(handles)
    return {
        "metrics": {"actor_creation.rate": k / elapsed},
        "details": {"actors": k, "elapsed_s": elapsed},
    }


def actor_latency(ctx: h.Ctx) -> dict[str, Any]:
    rt = ctx.rt
    handles = [_actor_class(rt).remote()]

    def measure(a: Any) -> dict[str, float]:
        for _ in range(50):
            rt.get(a.ping.remote())
        return h.latency_stats(h.sample_us(lambda: rt.get(a.ping.remote()), ctx.n(1000, 200)))

    stats = measure(handles[0])
    _release(handles)
    return {
        "metrics": {
            "actor_latency.median": stats["median_us"],
            "actor_latency.mean": stats["mean_us"],
        },
        "details": stats,
    }


def actor_throughput(ctx: h.Ctx) -> dict[str, Any]:
    rt = ctx.rt
    handles = [_actor_class(rt).remote()]
    n = ctx.n(5000, 1000)

    def measure(a: Any) -> tuple[float, list[float]]:
        rt.get([a.ping.remote() for _ in range(100)])

        def once() -> float:
            t0 = h.now()
            rt.get([a.ping.remote() for _ in range(n)])
            return h.now() - t0

        return h.best_of(once, ctx.n(2, 1))

    best, times = measure(handles[0])
    _release(handles)
    return {"metrics": {"actor_throughput.rate": n / best}, "details": {"n": n, "times_s": times}}
