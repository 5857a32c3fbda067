"""A cached snapshot of the node table, refreshed on node events and periodically."""

from __future__ import annotations

import json
import threading
import time

import redis

from redray.control import keys
from redray.scheduler.placement import NodeState

#: How stale the cached available resources may get before a refresh.
REFRESH_SECONDS = 1.0


def read_nodes(client: redis.Redis, include_dead: bool = False) -> list[tuple[NodeState, bool]]:
    """Every registered node with whether its heartbeat is current."""
    records = client.hgetall(keys.NODES)
    if not records:
        return []
    node_ids = [node_id.decode() for node_id in records]
    alive = client.mget([keys.node_alive(node_id) for node_id in node_ids])
    result = []
    for node_id, heartbeat in zip(node_ids, alive):
        if heartbeat is None and not include_dead:
            continue
        record = json.loads(records[node_id.encode()])
        beat = json.loads(heartbeat) if heartbeat else {}
        state = NodeState(
            node_id=node_id,
            total=record["resources"],
            available=beat.get("available", {}),
            queued=beat.get("queued", 0),
            hostname=record.get("hostname", ""),
            address=record.get("address", ""),
            is_head=record.get("is_head", False),
            extra=record,
        )
        result.append((state, heartbeat is not None))
    return result


class NodeView:
    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._nodes: list[NodeState] = []
        self._refreshed_at = 0.0

    def refresh(self) -> list[NodeState]:
        nodes = [state for state, _ in read_nodes(self._client)]
        with self._lock:
            self._nodes = nodes
            self._refreshed_at = time.monotonic()
        return nodes

    def snapshot(self) -> list[NodeState]:
        if time.monotonic() - self._refreshed_at > REFRESH_SECONDS:
            return self.refresh()
        return self._nodes

    def get(self, node_id: str) -> NodeState | None:
        return next((n for n in self.snapshot() if n.node_id == node_id), None)
