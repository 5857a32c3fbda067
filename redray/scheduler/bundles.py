"""Placement group bundles: choosing their nodes (pure).

`assign_bundles` maps each bundle of a placement group to a node, by the group's strategy,
from a snapshot of the node table (what the nodes' heartbeats say is free). The node's side
of reserving them is `redray/node/bundles.py`.

A task scheduled into a group carries `spec.extra["pg"] = {"id", "index", "capture",
"bundles"}`; the local scheduler runs it against that bundle's reservation (index -1: any
bundle of the group on the node with room), never against the node's general pool.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from redray.scheduler.resources import add, fits, subtract

if TYPE_CHECKING:
    from redray.scheduler.placement import NodeState
    from redray.task_spec import TaskSpec

STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


def pg_of(spec: TaskSpec) -> dict[str, Any] | None:
    """The placement group facts a task spec carries, or None."""
    return spec.extra.get("pg") if spec.extra else None


# ---- choosing nodes (pure) -------------------------------------------------------------------


def _total(bundles: Sequence[Mapping[str, float]]) -> dict[str, float]:
    total: dict[str, float] = {}
    for bundle in bundles:
        add(total, bundle)
    return total


def _ordered(nodes: list[NodeState], preferred: Sequence[str | None]) -> list[NodeState]:
    """Nodes with the preferred ones first, then by node id (deterministic)."""
    rank = {node_id: i for i, node_id in enumerate(preferred) if node_id}
    return sorted(nodes, key=lambda n: (rank.get(n.node_id, len(rank)), n.node_id))


def assign_bundles(
    bundles: Sequence[Mapping[str, float]],
    strategy: str,
    nodes: list[NodeState],
    *,
    use_total: bool = False,
    local_node: str | None = None,
    soft_target: str | None = None,
) -> list[str] | None:
    """The node of each bundle, or None when the nodes cannot hold the group now.

    `use_total` answers "could they ever" (capacity instead of what is free now).
    """
    free = {n.node_id: dict(n.total if use_total else n.available) for n in nodes}
    ordered = _ordered(nodes, [soft_target, local_node])
    indices = sorted(range(len(bundles)), key=lambda i: -sum(bundles[i].values()))
    if strategy in ("STRICT_PACK", "PACK"):
        whole = _total(bundles)
        for node in ordered:
            if fits(whole, free[node.node_id]):
                return [node.node_id] * len(bundles)
        if strategy == "STRICT_PACK":
            return None
        # PACK: as few nodes as possible, filling the nodes already used first.
        result: list[str | None] = [None] * len(bundles)
        used: list[str] = []
        for i in indices:
            candidates = [n for n in used] + [n.node_id for n in ordered if n.node_id not in used]
            chosen = next((n for n in candidates if fits(bundles[i], free[n])), None)
            if chosen is None:
                return None
            subtract(free[chosen], bundles[i])
            if chosen not in used:
                used.append(chosen)
            result[i] = chosen
        return result  # type: ignore[return-value]
    if strategy == "STRICT_SPREAD":
        if len(bundles) > len(nodes):
            return None
        return _distinct(bundles, indices, ordered, free)
    # SPREAD: distinct nodes while possible, then the least used node with room.
    result = [None] * len(bundles)
    count: dict[str, int] = {n.node_id: 0 for n in nodes}
    for i in indices:
        with_room = [n.node_id for n in ordered if fits(bundles[i], free[n.node_id])]
        if not with_room:
            return None
        chosen = min(with_room, key=lambda n: count[n])
        subtract(free[chosen], bundles[i])
        count[chosen] += 1
        result[i] = chosen
    return result  # type: ignore[return-value]


def _distinct(
    bundles: Sequence[Mapping[str, float]],
    indices: list[int],
    ordered: list[NodeState],
    free: dict[str, dict[str, float]],
) -> list[str] | None:
    """One distinct node per bundle (a small backtracking search)."""
    result: dict[int, str] = {}
    taken: set[str] = set()

    def place(position: int) -> bool:
        if position == len(indices):
            return True
        i = indices[position]
        for node in ordered:
            if node.node_id not in taken and fits(bundles[i], free[node.node_id]):
                taken.add(node.node_id)
                result[i] = node.node_id
                if place(position + 1):
                    return True
                taken.discard(node.node_id)
        return False

    if not place(0):
        return None
    return [result[i] for i in range(len(bundles))]
