"""A burst of sleeping tasks on two nodes: does DEFAULT scheduling use the second node?

The benchmark's cluster (2 CPUs) plus a second 2-CPU node started for the run (see
bench_transfer.second_node). One driver submits TASKS tasks of TASK_S seconds at once;
on one node they take TASKS * TASK_S / 2 seconds, spread over both half that.
"""

from __future__ import annotations

import time
from typing import Any

import bench_harness as h
from bench_transfer import NODE_START_TIMEOUT_S, second_node

TASKS = 16
TASK_S = 0.5
NODE_CPUS = 2


def _burst(rt: Any, strategy: str) -> tuple[float, int]:
    def sleeper(seconds: float) -> str:
        time.sleep(seconds)
        return rt.get_runtime_context().get_node_id()

    remote = rt.remote(sleeper).options(scheduling_strategy=strategy)
    t0 = h.now()
    nodes = rt.get([remote.remote(TASK_S) for _ in range(TASKS)], timeout=120)
    return h.now() - t0, len(set(nodes))


def two_node_burst(ctx: h.Ctx) -> dict[str, Any]:
    """TASKS sleeping tasks submitted at once, DEFAULT then SPREAD."""
    rt = ctx.rt
    with second_node(ctx, num_cpus=NODE_CPUS) as node:
        # Warm-up: a worker on each node, the function exported, the node table fresh.
        rt.get(
            [rt.remote(lambda: 0).options(scheduling_strategy="SPREAD").remote() for _ in range(4)],
            timeout=NODE_START_TIMEOUT_S,
        )
        default_s, default_nodes = _burst(rt, "DEFAULT")
        spread_s, spread_nodes = _burst(rt, "SPREAD")
    return {
        "metrics": {"two_node_burst.default": default_s, "two_node_burst.spread": spread_s},
        "details": {
            "tasks": TASKS,
            "task_s": TASK_S,
            "one_node_s": TASKS * TASK_S / NODE_CPUS,
            "both_nodes_s": TASKS * TASK_S / (2 * NODE_CPUS),
            "nodes_used_default": default_nodes,
            "nodes_used_spread": spread_nodes,
            "second_node": node,
        },
    }
