"""An owner's side of node failure when no live node is left to handle it.

While some node lives, its daemon re-places or fails what a dead node held
(node/recovery.py). When none does, nobody would: the owner itself fails the tasks it sent
to nodes that are gone, and a new task that only a dead node could have run fails at once
with NodeDiedError instead of waiting for resources that "never existed".
"""

from __future__ import annotations

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


def fail_tasks_of_dead_nodes(client: CoreClient) -> None:
    """With no live node left, fail every task this process sent to a node (all dead)."""
    if client.nodes.snapshot():
        return  # a live daemon recovers the dead nodes' queues
    for task_id, node_id, return_ids in client.in_flight_tasks():
        client.commit_error(
            task_id, return_ids, died_error(f"task {task_id}", node_id), final_state="finished"
        )
