"""An owner's side of node failure when no live node is left to handle it.

While some node lives, its daemon re-places or fails what a dead node held
(node/recovery.py). When none does, nobody would: the owner itself fails the tasks it sent
to nodes that are gone, and a new task that only a dead node could have run fails with
NodeDiedError (after NO_NODE_SECONDS, in case the node was only paused) instead of waiting
for resources that "never existed".
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from redray.client.node_view import read_nodes
from redray.exceptions import NodeDiedError
from redray.scheduler.resources import fits

if TYPE_CHECKING:
    from redray.client.core import CoreClient


def dead_node_that_fits(client: CoreClient, demand: dict[str, float]) -> tuple[str | None, bool]:
    """A registered node whose heartbeat stopped and that could have run `demand` (or
    None), and whether any node is registered at all."""
    nodes = read_nodes(client.redis, include_dead=True)
    for state, alive in nodes:
        if not alive and fits(demand, state.total):
            return state.node_id, True
    return None, bool(nodes)


def died_error(task: str, node_id: str) -> NodeDiedError:
    return NodeDiedError(
        f"The node {node_id} that ran or could run {task} died, and no live node can run "
        "it. Start a node with its resources and submit it again."
    )


#: How long no node may be alive before the owner gives up on the tasks it sent: longer
#: than a live daemon takes to heartbeat again after a pause (Redis resumed, say).
NO_NODE_SECONDS = 2.0


class LastNodeWatch:
    """Fails the tasks this process sent to nodes once no node has been alive for
    NO_NODE_SECONDS (checked by the notification reader on each read: no I/O while the
    cached node table lists a live node)."""

    def __init__(self, client: CoreClient) -> None:
        self._client = client
        self._empty_since: float | None = None

    def check(self) -> None:
        client = self._client
        client.fail_parked_for_dead_nodes(time.monotonic() - NO_NODE_SECONDS)
        if client.nodes.cached() or not client.in_flight_tasks():
            self._empty_since = None
            return
        if client.nodes.snapshot():  # a live daemon recovers the dead nodes' queues
            self._empty_since = None
            return
        now = time.monotonic()
        if self._empty_since is None:
            self._empty_since = now
        if now - self._empty_since < NO_NODE_SECONDS:
            return
        for task_id, node_id, return_ids in client.in_flight_tasks():
            error = died_error(f"task {task_id}", node_id)
            client.commit_error(task_id, return_ids, error, final_state="finished")
