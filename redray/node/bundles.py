"""A node's side of placement group bundles: the I/O of the requests a group's creator
(redray/client/placement_groups.py) sends on the node's queue stream.

A ReserveMessage (control/messages.py) reserves bundles atomically in the node core (all
of them or none), answered on its `reply` list; a ReleaseMessage gives a group's bundles
back: the node core (scheduler/node_core.py) decides which queued tasks fail and which
tasks and actors are killed, and this module commits their failures.

A task scheduled into a group carries `spec.extra["pg"] = {"id", "index", "capture",
"bundles"}`; the local scheduler runs it against that bundle's reservation (index -1: any
bundle of the group on the node with room), never against the node's general pool.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from redray.control import results
from redray.control.messages import ReserveMessage
from redray.exceptions import ActorDiedError, TaskPlacementGroupRemoved
from redray.objectstore.serialization import dumps

if TYPE_CHECKING:
    from redray.node.daemon import NodeDaemon
    from redray.task_spec import TaskSpec


class NodePlacementGroups:
    """What a node daemon writes for placement group requests (see module doc)."""

    def __init__(self, daemon: NodeDaemon) -> None:
        self.daemon = daemon

    def reserve(self, request: ReserveMessage) -> None:
        """Reserve the bundles (all or none) and answer the creator."""
        daemon = self.daemon
        ok = daemon.core.reserve_bundles(request.pg_id, request.bundles)
        pipe = daemon.redis.pipeline(transaction=False)
        if ok:  # available_resources() shows the reservation once the group is ready
            daemon.publish_availability(pipe)
        pipe.rpush(request.reply, json.dumps({"node": daemon.node_id, "ok": ok}))
        pipe.expire(request.reply, 600)
        pipe.execute()

    def fail(self, spec: TaskSpec) -> None:
        """Fail a task of a removed group (an actor's creation task: the actor dies)."""
        daemon = self.daemon
        actor_id = spec.extra.get("actor_id") if spec.extra.get("actor") else None
        if actor_id:
            self.actor_dead(actor_id)
        pipe = daemon.redis.pipeline(transaction=False)
        error = dumps(TaskPlacementGroupRemoved())
        results.fail_returns(
            daemon.commands, pipe, spec.task_id, spec.owner, spec.return_ids, error, "cancelled"
        )
        pipe.execute()

    def actor_dead(self, actor_id: str) -> None:
        """An actor of a removed group is dead (its worker is killed by the daemon)."""
        error = ActorDiedError(
            f"The actor {actor_id} died because its placement group was removed.",
            actor_id=actor_id,
        )
        self.daemon.commands.call("actor_dead", actor_id, dumps(error), "0")
