"""A node's side of placement group bundles: the daemon's handler of the requests a
group's creator (redray/client/placement_groups.py) sends on the node's queue stream.

A ReserveMessage (control/messages.py) reserves bundles atomically in the LocalScheduler
(all of them or none, answered on its `reply` list); a ReleaseMessage gives a group's
bundles back, failing the tasks queued in them and killing the tasks and
actors running in them.

A task scheduled into a group carries `spec.extra["pg"] = {"id", "index", "capture",
"bundles"}`; the local scheduler runs it against that bundle's reservation (index -1: any
bundle of the group on the node with room), never against the node's general pool.
"""

from __future__ import annotations

import json
import signal
from typing import TYPE_CHECKING, Any

from redray.control import results
from redray.control.messages import ReleaseMessage, ReserveMessage
from redray.exceptions import ActorDiedError, TaskPlacementGroupRemoved
from redray.objectstore.serialization import dumps
from redray.scheduler.bundles import pg_of
from redray.scheduler.local_scheduler import Action

if TYPE_CHECKING:
    from redray.node.daemon import NodeDaemon
    from redray.task_spec import TaskSpec


class NodePlacementGroups:
    """What a node daemon does with placement group requests and tasks (see module doc)."""

    def __init__(self, daemon: NodeDaemon) -> None:
        self.daemon = daemon

    def on_request(self, request: ReserveMessage | ReleaseMessage) -> list[Action]:
        """Handle a reserve or release request; the scheduler actions it leads to."""
        if isinstance(request, ReleaseMessage):
            return self._release(request.pg_id)
        daemon = self.daemon
        ok = daemon.scheduler.reserve_bundles(request.pg_id, request.bundles)
        pipe = daemon.redis.pipeline(transaction=False)
        if ok:  # available_resources() shows the reservation once the group is ready
            daemon.publish_availability(pipe)
        pipe.rpush(request.reply, json.dumps({"node": daemon.node_id, "ok": ok}))
        pipe.expire(request.reply, 600)
        pipe.execute()
        return []

    def accept(self, spec: TaskSpec, entry_id: Any) -> bool:
        """False (and the task failed) when the task's bundle is not on this node: its
        group was removed. Tasks only arrive once their bundles are reserved."""
        pg = pg_of(spec)
        if pg is None or self.daemon.scheduler.has_bundle(pg["id"], pg["index"]):
            return True
        self.daemon.ack(entry_id)
        self._fail(spec)
        return False

    def _release(self, pg_id: str) -> list[Action]:
        daemon = self.daemon
        queued, running, actors, actions = daemon.scheduler.release_bundles(pg_id)
        for task in queued:
            daemon.ack(task.entry_id)
            self._fail(task.spec)
        for worker_id in running:
            task = daemon.scheduler.task_of(worker_id)
            if task is not None and not task.spec.extra.get("actor"):
                self._fail(task.spec)
                daemon.mark_cancelled(task.spec.task_id)
            elif task is not None:
                self._fail(task.spec)  # an actor still being created
            daemon.pool.kill(worker_id, signal.SIGKILL)
        for worker_id in actors:
            actor_id = daemon.actor_of_worker(worker_id)
            if actor_id is not None:
                self._actor_dead(actor_id)
            daemon.pool.kill(worker_id, signal.SIGKILL)
        return actions

    def _fail(self, spec: TaskSpec) -> None:
        """Fail a task of a removed group (an actor's creation task: the actor dies)."""
        daemon = self.daemon
        actor_id = spec.extra.get("actor_id") if spec.extra.get("actor") else None
        if actor_id:
            self._actor_dead(actor_id)
        pipe = daemon.redis.pipeline(transaction=False)
        error = dumps(TaskPlacementGroupRemoved())
        results.fail_returns(
            daemon.commands, pipe, spec.task_id, spec.owner, spec.return_ids, error, "cancelled"
        )
        pipe.execute()

    def _actor_dead(self, actor_id: str) -> None:
        error = ActorDiedError(
            f"The actor {actor_id} died because its placement group was removed.",
            actor_id=actor_id,
        )
        self.daemon.commands.call("actor_dead", actor_id, dumps(error), "0")
