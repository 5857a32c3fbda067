"""Choosing the node a task is queued on, from a snapshot of the node table.

Pure functions over NodeState snapshots, so every strategy is testable without Redis.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from redray.exceptions import TaskUnschedulableError
from redray.scheduler.resources import fits, utilization
from redray.util.scheduling_strategies import NodeAffinitySchedulingStrategy


@dataclass
class NodeState:
    node_id: str
    total: dict[str, float]
    available: dict[str, float]
    hostname: str = ""
    address: str = ""
    is_head: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class Placement:
    """Applies a scheduling strategy; keeps the round-robin cursor SPREAD needs."""

    def __init__(self) -> None:
        self._spread_cursor = 0

    def choose(
        self,
        demand: dict[str, float],
        strategy: Any,
        nodes: list[NodeState],
        local_node: str | None,
    ) -> str | None:
        """The node to queue on, or None when no live node could ever run the task."""
        feasible = [node for node in nodes if fits(demand, node.total)]
        if isinstance(strategy, NodeAffinitySchedulingStrategy):
            pinned = next((n for n in nodes if n.node_id == strategy.node_id), None)
            if pinned is not None and fits(demand, pinned.total):
                return pinned.node_id
            if not strategy.soft:
                where = "is not alive" if pinned is None else "can never fit the task"
                raise TaskUnschedulableError(
                    f"NodeAffinitySchedulingStrategy(soft=False): node {strategy.node_id} "
                    f"{where}; demand {demand}."
                )
            strategy = "DEFAULT"
        if not feasible:
            return None
        if strategy == "SPREAD":
            ordered = sorted(feasible, key=lambda n: n.node_id)
            choice = ordered[self._spread_cursor % len(ordered)]
            self._spread_cursor += 1
            return choice.node_id
        return self._default(demand, feasible, local_node)

    @staticmethod
    def _default(
        demand: dict[str, float], feasible: list[NodeState], local_node: str | None
    ) -> str:
        """Prefer the local node while it has room; else the least-loaded node with room."""
        local = next((n for n in feasible if n.node_id == local_node), None)
        if local is not None and fits(demand, local.available):
            return local.node_id
        with_room = [n for n in feasible if fits(demand, n.available)]
        if with_room:
            return min(with_room, key=lambda n: utilization(n.total, n.available)).node_id
        if local is not None:
            return local.node_id
        return min(feasible, key=lambda n: utilization(n.total, n.available)).node_id
