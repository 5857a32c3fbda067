"""Placement group bundles: choosing their nodes, and a node's side of reserving them.

* `assign_bundles` (pure) maps each bundle of a placement group to a node, by the group's
  strategy, from a snapshot of the node table (what the nodes' heartbeats say is free).
* `NodePlacementGroups` is the node daemon's handler of the requests the creator sends on
  the node's queue stream: `{pg, op: reserve, b: [[index, resources], ...], reply}` reserves
  bundles atomically in the LocalScheduler (all of them or none, answered on the `reply`
  list); `{pg, op: release}` gives a group's bundles back, failing the tasks queued in them
  and killing the tasks and actors running in them.

A task scheduled into a group carries `spec.extra["pg"] = {"id", "index", "capture",
"bundles"}`; the local scheduler runs it against that bundle's reservation (index -1: any
bundle of the group on the node with room), never against the node's general pool.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from redray.scheduler.resources import add, fits, subtract

if TYPE_CHECKING:
    from redray.node.daemon import NodeDaemon
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


# ---- the node's side -------------------------------------------------------------------------


class NodePlacementGroups:
    """What a node daemon does with placement group requests and tasks (see module doc)."""

    def __init__(self, daemon: NodeDaemon) -> None:
        self.daemon = daemon

    def on_request(self, fields: dict[bytes, bytes]) -> None:
        pg_id = fields[b"pg"].decode()
        op = fields.get(b"op", b"").decode()
        daemon = self.daemon
        if op == "reserve":
            wanted = [(int(i), dict(r)) for i, r in json.loads(fields[b"b"])]
            ok = daemon.scheduler.reserve_bundles(pg_id, wanted)
            reply = fields[b"reply"].decode()
            pipe = daemon.redis.pipeline(transaction=False)
            if ok:  # available_resources() shows the reservation once the group is ready
                daemon.publish_availability(pipe)
            pipe.rpush(reply, json.dumps({"node": daemon.node_id, "ok": ok}))
            pipe.expire(reply, 600)
            pipe.execute()
        elif op == "release":
            self._release(pg_id)

    def accept(self, spec: TaskSpec, entry_id: Any) -> bool:
        """False (and the task failed) when the task's bundle is not on this node: its
        group was removed. Tasks only arrive once their bundles are reserved."""
        pg = pg_of(spec)
        if pg is None or self.daemon.scheduler.has_bundle(pg["id"], pg["index"]):
            return True
        self.daemon._to_ack.append(entry_id)
        self._fail(spec)
        return False

    def _release(self, pg_id: str) -> None:
        daemon = self.daemon
        queued, running, actors, actions = daemon.scheduler.release_bundles(pg_id)
        for task in queued:
            daemon._to_ack.append(task.entry_id)
            self._fail(task.spec)
        for worker_id in running:
            task = daemon.scheduler.task_of(worker_id)
            if task is not None and not task.spec.extra.get("actor"):
                self._fail(task.spec)
                daemon._cancelled.add(task.spec.task_id)
            elif task is not None:
                self._fail(task.spec)  # an actor still being created
            daemon.pool.kill(worker_id, signal.SIGKILL)
        for worker_id in actors:
            actor_id, _ = daemon._actor_workers.get(worker_id, (None, None))
            if actor_id is not None:
                self._actor_dead(actor_id)
            daemon.pool.kill(worker_id, signal.SIGKILL)
        daemon._execute(actions)

    def _fail(self, spec: TaskSpec) -> None:
        """Fail a task of a removed group (an actor's creation task: the actor dies)."""
        from redray.client.object_table import Entry
        from redray.control import results
        from redray.exceptions import TaskPlacementGroupRemoved
        from redray.objectstore.serialization import dumps

        daemon = self.daemon
        actor_id = spec.extra.get("actor_id") if spec.extra.get("actor") else None
        if actor_id:
            self._actor_dead(actor_id)
        data = dumps(TaskPlacementGroupRemoved())
        pipe = daemon.redis.pipeline(transaction=False)
        results.commit_entries(
            daemon.commands, pipe, spec.task_id, spec.owner, spec.return_ids,
            [Entry("e", len(data), "", data)] * len(spec.return_ids), final_state="cancelled",
        )  # fmt: skip
        pipe.execute()

    def _actor_dead(self, actor_id: str) -> None:
        from redray.exceptions import ActorDiedError
        from redray.objectstore.serialization import dumps

        error = ActorDiedError(
            f"The actor {actor_id} died because its placement group was removed.",
            actor_id=actor_id,
        )
        self.daemon.commands.call("actor_dead", actor_id, dumps(error), "0")
