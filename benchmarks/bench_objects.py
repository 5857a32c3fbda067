"""Object store benchmarks: put/get of small and large objects, passing refs to tasks,
and a memcpy baseline (the upper limit for any copy-based put/get)."""

from __future__ import annotations

import gc
import statistics
from typing import Any

import bench_harness as h
import numpy as np

KB = 1024
MB = 1024 * KB
GB = 1024 * MB


def _array(nbytes: int) -> np.ndarray:
    """A deterministic, non-constant uint8 array of ``nbytes``."""
    pattern = np.arange(251, dtype=np.uint8)
    return np.ascontiguousarray(np.tile(pattern, nbytes // 251 + 1)[:nbytes])


def put_get_small(ctx: h.Ctx) -> dict[str, Any]:
    rt = ctx.rt
    payload = b"x" * KB
    n = ctx.n(2000, 500)
    rt.get([rt.put(payload) for _ in range(50)])  # warm-up

    t0 = h.now()
    refs = [rt.put(payload) for _ in range(n)]
    t1 = h.now()
    for ref in refs:
        rt.get(ref)
    t2 = h.now()
    assert rt.get(refs[-1]) == payload
    return {
        "metrics": {"put_get_small.put": n / (t1 - t0), "put_get_small.get": n / (t2 - t1)},
        "details": {"n": n, "put_s": t1 - t0, "get_s": t2 - t1},
    }


def put_get_large(ctx: h.Ctx) -> dict[str, Any]:
    rt = ctx.rt
    arr = _array(100 * MB)
    put_s, get_s = [], []
    for _ in range(ctx.n(5, 1)):
        t0 = h.now()
        ref = rt.put(arr)
        t1 = h.now()
        out = rt.get(ref)
        t2 = h.now()
        assert out.shape == arr.shape and out[12345] == arr[12345]
        put_s.append(t1 - t0)
        get_s.append(t2 - t1)
        del out, ref
        gc.collect()
    put = statistics.median(put_s)
    return {
        "metrics": {
            "put_get_large.put": arr.nbytes / put / 1e9,
            "put_get_large.get": statistics.median(get_s) * 1e3,
        },
        "details": {"bytes": arr.nbytes, "put_s": put_s, "get_s": get_s},
    }


def objstore_put_get(ctx: h.Ctx) -> dict[str, Any]:
    """Median round trip ``get(put(x))`` for several sizes."""
    rt = ctx.rt
    # (metric key, payload factory, repetitions, scale from seconds to the metric's unit)
    cases: list[tuple[str, Any, int, float]] = [
        ("objstore.1KB", lambda: b"x" * KB, ctx.n(500, 100), 1e6),
        ("objstore.1MB", lambda: _array(MB), ctx.n(30, 10), 1e3),
        ("objstore.100MB", lambda: _array(100 * MB), ctx.n(5, 1), 1e3),
    ]
    if ctx.big:
        cases.append(("objstore.1GB", lambda: _array(GB), 1, 1.0))
    metrics, details = {}, {}
    for key, make, reps, scale in cases:
        payload = make()
        nbytes = len(payload) if isinstance(payload, bytes) else payload.nbytes
        rt.get(rt.put(payload))  # warm-up (and first-touch of the store's memory)
        times = []
        for _ in range(reps):
            t0 = h.now()
            out = rt.get(rt.put(payload))
            times.append(h.now() - t0)
            del out
        med = statistics.median(times)
        metrics[key] = med * scale
        details[key] = {
            "bytes": nbytes,
            "reps": reps,
            "median_s": med,
            "GB_per_s": nbytes / med / 1e9,
        }
        del payload
        gc.collect()
    return {"metrics": metrics, "details": details}


def objstore_to_tasks(ctx: h.Ctx) -> dict[str, Any]:
    rt = ctx.rt
    n_tasks = 10

    def total(a: np.ndarray) -> int:
        return int(a.sum(dtype=np.uint64))

    f = rt.remote(total)
    arr = _array(100 * MB)
    expected = int(arr.sum(dtype=np.uint64))
    rt.get(f.remote(rt.put(np.zeros(10, dtype=np.uint8))))  # warm-up: function exported

    def once() -> tuple[float, float]:
        t0 = h.now()
        ref = rt.put(arr)
        t1 = h.now()
        results = rt.get([f.remote(ref) for _ in range(n_tasks)])
        t2 = h.now()
        assert results == [expected] * n_tasks, results
        del ref
        gc.collect()
        return t2 - t0, t1 - t0

    runs = [once() for _ in range(ctx.n(2, 1))]
    best = min(runs)
    return {
        "metrics": {"objstore_to_tasks.time": best[0]},
        "details": {
            "tasks": n_tasks,
            "bytes": arr.nbytes,
            "total_s": [r[0] for r in runs],
            "put_s": [r[1] for r in runs],
        },
    }


def memcpy(ctx: h.Ctx) -> dict[str, Any]:
    src = _array(100 * MB)
    dst = np.empty_like(src)
    np.copyto(dst, src)  # first touch of dst's pages

    def once() -> float:
        t0 = h.now()
        np.copyto(dst, src)
        return h.now() - t0

    best, times = h.best_of(once, 5)
    return {"metrics": {"memcpy.rate": src.nbytes / best / 1e9}, "details": {"times_s": times}}
