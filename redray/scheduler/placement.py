"""Choosing the node a task is queued on, from a snapshot of the node table.

Pure functions over NodeState snapshots, so every strategy is testable without Redis.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from redray.exceptions import TaskUnschedulableError
from redray.scheduler.resources import EPSILON, add, fits, subtract
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
    #: Tasks waiting in the node's local queue at its last heartbeat.
    queued: int = 0


class Placement:
    """Applies a scheduling strategy for one submitting process.

    It keeps SPREAD's round-robin cursor and what this process has placed on each node and
    not yet seen finish: a burst of submissions sees its own placements, not only a node
    snapshot up to a second old.
    """

    def __init__(self) -> None:
        self._spread_cursor = 0
        self._placed: dict[str, dict[str, float]] = {}
        self._lock = threading.Lock()  # submitters place, the notification thread finishes

    def placed(self, node_id: str, demand: Mapping[str, float]) -> None:
        """A task with this demand was queued on this node."""
        with self._lock:
            add(self._placed.setdefault(node_id, {}), demand)

    def finished(self, node_id: str, demand: Mapping[str, float]) -> None:
        """A task placed on this node finished (or failed, or was cancelled)."""
        with self._lock:
            load = self._placed.get(node_id)
            if load is None:
                return
            subtract(load, demand)
            if all(amount <= EPSILON for amount in load.values()):
                del self._placed[node_id]

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

    def _default(
        self, demand: dict[str, float], feasible: list[NodeState], local_node: str | None
    ) -> str:
        """The local node while it has room for the task; else the node with room that the
        task leaves least loaded; when none has room, the one whose backlog is shortest for
        its size, so a burst is shared across nodes instead of queueing behind one."""
        local = next((n for n in feasible if n.node_id == local_node), None)
        with self._lock:
            # The common case first, without estimating every other node.
            if local is not None and _has_room(local, self._estimated_use(local), demand):
                return local.node_id
            used = {node.node_id: self._estimated_use(node) for node in feasible}

        def load_after(node: NodeState) -> tuple[float, bool, str]:
            busiest = 0.0
            for name, amount in demand.items():
                total = node.total.get(name, 0.0)
                if total > 0:
                    busiest = max(busiest, (used[node.node_id].get(name, 0.0) + amount) / total)
            return busiest, node.node_id != local_node, node.node_id

        with_room = [n for n in feasible if _has_room(n, used[n.node_id], demand)]
        return min(with_room or feasible, key=load_after).node_id

    def _estimated_use(self, node: NodeState) -> dict[str, float]:
        """What is in use or waiting on a node: its last heartbeat (tasks running, and its
        queue counted as one CPU each), or what this process placed there, if more."""
        mine = self._placed.get(node.node_id, {})
        use = {}
        for name, total in node.total.items():
            seen = total - node.available.get(name, 0.0)
            if name == "CPU":
                seen += node.queued
            use[name] = max(seen, mine.get(name, 0.0))
        return use


def _has_room(node: NodeState, used: Mapping[str, float], demand: Mapping[str, float]) -> bool:
    return all(
        used.get(name, 0.0) + amount <= node.total.get(name, 0.0) + EPSILON
        for name, amount in demand.items()
    )
