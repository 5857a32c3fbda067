"""The list of benchmarks, their metrics, and how to select them.

Pure metadata (no framework imports), shared by ``run.py`` and ``bench_worker.py``.
The order here is the order benchmarks run in and are reported in.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """One figure a benchmark reports (one row of the table)."""

    key: str
    label: str
    unit: str
    higher_is_better: bool
    compare: bool = True  # False for baselines that do not depend on the backend
    big_only: bool = False  # reported only with --big


@dataclass(frozen=True)
class Bench:
    """A benchmark: ``func`` in ``module`` takes a ``Ctx`` and returns its metrics."""

    name: str
    group: str
    module: str
    func: str
    metrics: tuple[Metric, ...]
    timeout_s: float  # per-benchmark limit enforced by run.py (whole worker is restarted)
    needs_cluster: bool = True  # False: runs without the worker's own init()
    doc: str = ""


M = Metric

CATALOG: tuple[Bench, ...] = (
    # ---------------------------------------------------------------- fresh process probes
    Bench(
        "cold_start",
        "startup",
        "bench_probe",
        "cold_start",
        (
            M("cold_start.import", "import framework", "ms", False),
            M("cold_start.init_to_first", "init() -> first task result", "ms", False),
        ),
        timeout_s=120,
        needs_cluster=False,
        doc="fresh subprocess: import time, then init() until the first task's result",
    ),
    Bench(
        "idle_memory",
        "startup",
        "bench_probe",
        "idle_memory",
        (
            M("idle_memory.rss", "idle cluster memory (sum RSS)", "MB", False),
            M("idle_memory.driver", "driver process RSS (idle)", "MB", False),
        ),
        timeout_s=120,
        needs_cluster=False,
        doc="RSS of every process the framework started, after ~2 s idle",
    ),
    # ---------------------------------------------------------------- tasks
    Bench(
        "task_latency",
        "tasks",
        "bench_tasks",
        "task_latency",
        (
            M("task_latency.median", "sync task latency (median)", "us", False),
            M("task_latency.mean", "sync task latency (mean)", "us", False),
        ),
        timeout_s=90,
        doc="get(f.remote()) of a no-op task, in a loop",
    ),
    Bench(
        "task_throughput",
        "tasks",
        "bench_tasks",
        "task_throughput",
        (M("task_throughput.rate", "async task throughput", "tasks/s", True),),
        timeout_s=120,
        doc="submit N no-op tasks, then get them all",
    ),
    Bench(
        "task_chain",
        "tasks",
        "bench_tasks",
        "task_chain",
        (M("task_chain.per_hop", "task chain (depth 100)", "ms/hop", False),),
        timeout_s=90,
        doc="f.remote(f.remote(...)) 100 deep",
    ),
    Bench(
        "nested_tasks",
        "tasks",
        "bench_tasks",
        "nested_tasks",
        (M("nested_tasks.rate", "nested tasks (1 + 10 sub-tasks)", "tasks/s", True),),
        timeout_s=120,
        doc="tasks that each submit and get 10 sub-tasks",
    ),
    Bench(
        "wait_1000",
        "tasks",
        "bench_tasks",
        "wait_1000",
        (M("wait_1000.time", "wait() on 1000 ready refs", "ms", False),),
        timeout_s=90,
        doc="wait(refs, num_returns=1000) when all are ready",
    ),
    Bench(
        "gather_vs_get",
        "tasks",
        "bench_async",
        "gather_vs_get",
        (
            M("gather_vs_get.get", "get() on 10,000 task refs", "tasks/s", True),
            M("gather_vs_get.gather", "asyncio.gather on 10,000 task refs", "tasks/s", True),
            M("gather_vs_get.ready", "asyncio.gather on 10,000 ready refs", "ms", False),
        ),
        timeout_s=180,
        doc="submit 10,000 no-op tasks, then get() them, or await asyncio.gather(*refs)",
    ),
    # ---------------------------------------------------------------- objects
    Bench(
        "put_get_small",
        "objects",
        "bench_objects",
        "put_get_small",
        (
            M("put_get_small.put", "put 1 KB", "ops/s", True),
            M("put_get_small.get", "get 1 KB", "ops/s", True),
        ),
        timeout_s=90,
        doc="put() then get() of distinct 1 KB bytes objects",
    ),
    Bench(
        "put_get_large",
        "objects",
        "bench_objects",
        "put_get_large",
        (
            M("put_get_large.put", "put 100 MB array", "GB/s", True),
            M("put_get_large.get", "get 100 MB array", "ms", False),
        ),
        timeout_s=120,
        doc="put() and get() of a 100 MB numpy array",
    ),
    Bench(
        "objstore_put_get",
        "objects",
        "bench_objects",
        "objstore_put_get",
        (
            M("objstore.1KB", "put+get 1 KB", "us", False),
            M("objstore.1MB", "put+get 1 MB", "ms", False),
            M("objstore.100MB", "put+get 100 MB", "ms", False),
            M("objstore.1GB", "put+get 1 GB", "s", False, big_only=True),
        ),
        timeout_s=150,
        doc="round trip get(put(x)) of bytes / numpy arrays of several sizes",
    ),
    Bench(
        "objstore_to_tasks",
        "objects",
        "bench_objects",
        "objstore_to_tasks",
        (M("objstore_to_tasks.time", "100 MB array -> 10 tasks (sum)", "s", False),),
        timeout_s=120,
        doc="put a 100 MB array once, pass the ref to 10 tasks returning its sum",
    ),
    Bench(
        "cross_node_transfer",
        "objects",
        "bench_transfer",
        "cross_node_transfer",
        (M("cross_node_transfer.rate", "100 MB array -> task on 2nd node", "GB/s", True),),
        timeout_s=150,
        doc="put 100 MB on the head, get a task on a second node (same machine) reading it",
    ),
    Bench(
        "two_node_burst",
        "tasks",
        "bench_spread",
        "two_node_burst",
        (
            M("two_node_burst.default", "16 x 0.5 s tasks, 2 nodes, DEFAULT", "s", False),
            M("two_node_burst.spread", "16 x 0.5 s tasks, 2 nodes, SPREAD", "s", False),
        ),
        timeout_s=180,
        doc="a burst of sleeping tasks with a second 2-CPU node started for the run "
        "(one node: 4 s, both: 2 s)",
    ),
    Bench(
        "memcpy",
        "objects",
        "bench_objects",
        "memcpy",
        (M("memcpy.rate", "memcpy baseline 100 MB (upper limit)", "GB/s", True, compare=False),),
        timeout_s=30,
        needs_cluster=False,
        doc="numpy copy of 100 MB in the driver",
    ),
    Bench(
        "loopback_tcp",
        "objects",
        "bench_transfer",
        "loopback_tcp",
        (
            M(
                "loopback_tcp.rate",
                "loopback TCP baseline 100 MB (upper limit)",
                "GB/s",
                True,
                compare=False,
            ),
        ),
        timeout_s=60,
        needs_cluster=False,
        doc="100 MB over a loopback TCP socket between two processes",
    ),
    # ---------------------------------------------------------------- actors
    Bench(
        "actor_creation",
        "actors",
        "bench_actors",
        "actor_creation",
        (M("actor_creation.rate", "actor creation (+1 call)", "actors/s", True),),
        timeout_s=120,
        doc="create K actors and get one method result from each",
    ),
    Bench(
        "actor_latency",
        "actors",
        "bench_actors",
        "actor_latency",
        (
            M("actor_latency.median", "sync actor call latency (median)", "us", False),
            M("actor_latency.mean", "sync actor call latency (mean)", "us", False),
        ),
        timeout_s=90,
        doc="get(a.ping.remote()) in a loop",
    ),
    Bench(
        "actor_throughput",
        "actors",
        "bench_actors",
        "actor_throughput",
        (M("actor_throughput.rate", "async actor call throughput", "calls/s", True),),
        timeout_s=120,
        doc="submit N calls to one actor, then get them all",
    ),
)

BY_NAME: dict[str, Bench] = {b.name: b for b in CATALOG}
GROUPS: tuple[str, ...] = tuple(dict.fromkeys(b.group for b in CATALOG))


def select(only: str | None) -> list[Bench]:
    """Benchmarks named in ``only`` (comma-separated names or group names), in catalog order."""
    if not only:
        return list(CATALOG)
    wanted: set[str] = set()
    for item in (s.strip() for s in only.split(",")):
        if not item:
            continue
        if item in BY_NAME:
            wanted.add(item)
        elif item in GROUPS:
            wanted.update(b.name for b in CATALOG if b.group == item)
        else:
            raise ValueError(
                f"unknown benchmark {item!r}; choose from: {', '.join(BY_NAME)} "
                f"or groups: {', '.join(GROUPS)}"
            )
    return [b for b in CATALOG if b.name in wanted]


def timeout_for(bench: Bench, big: bool) -> float:
    """Time limit for ``bench``; ``--big`` adds a 1 GB case to objstore_put_get."""
    return bench.timeout_s * (3 if big and bench.name == "objstore_put_get" else 1)


def metrics_for(bench: Bench, big: bool) -> list[Metric]:
    return [m for m in bench.metrics if big or not m.big_only]
