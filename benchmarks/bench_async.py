"""Awaitable refs: asyncio.gather over many task refs against get() on the same number.

Remote functions are defined inside the benchmark functions so that cloudpickle ships
them by value: workers never need to import this module.
"""

from __future__ import annotations

import asyncio
from typing import Any

import bench_harness as h


def gather_vs_get(ctx: h.Ctx) -> dict[str, Any]:
    rt = ctx.rt
    n = ctx.n(10_000, 2_000)

    def noop() -> None:
        return None

    f = rt.remote(noop)
    rt.get([f.remote() for _ in range(100)])

    def by_get() -> float:
        t0 = h.now()
        rt.get([f.remote() for _ in range(n)])
        return h.now() - t0

    async def gather_all() -> list[Any]:
        return await asyncio.gather(*[f.remote() for _ in range(n)])

    def by_gather() -> float:
        t0 = h.now()
        asyncio.run(gather_all())
        return h.now() - t0

    refs = [f.remote() for _ in range(n)]
    rt.get(refs)

    async def gather_ready() -> list[Any]:
        return await asyncio.gather(*refs)

    def ready_gather() -> float:
        t0 = h.now()
        asyncio.run(gather_ready())
        return h.now() - t0

    repeats = ctx.n(2, 1)
    best_get, get_times = h.best_of(by_get, repeats)
    best_gather, gather_times = h.best_of(by_gather, repeats)
    best_ready, ready_times = h.best_of(ready_gather, repeats)
    return {
        "metrics": {
            "gather_vs_get.get": n / best_get,
            "gather_vs_get.gather": n / best_gather,
            "gather_vs_get.ready": best_ready * 1e3,
        },
        "details": {
            "n": n,
            "get_times_s": get_times,
            "gather_times_s": gather_times,
            "ready_gather_times_s": ready_times,
        },
    }
