"""A node's side of placement group bundles: the daemon's handler of the requests a
group's creator (redray/client/placement_groups.py) sends on the node's queue stream.

`{pg, op: reserve, b: [[index, resources], ...], reply}` reserves bundles atomically in the
LocalScheduler (all of them or none, answered on the `reply` list); `{pg, op: release}`
gives a group's bundles back, failing the tasks queued in them and killing the tasks and
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
from redray.control.entry import Entry
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

    def on_request(self, fields: dict[bytes, bytes]) -> list[Action]:
        """Handle a reserve or release request; the scheduler actions it leads to."""
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
            return self._release(pg_id)
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
        data = dumps(TaskPlacementGroupRemoved())
        pipe = daemon.redis.pipeline(transaction=False)
        results.commit_entries(
            daemon.commands, pipe, spec.task_id, spec.owner, spec.return_ids,
            [Entry("e", len(data), "", data)] * len(spec.return_ids), final_state="cancelled",
        )  # fmt: skip
        pipe.execute()

    def _actor_dead(self, actor_id: str) -> None:
        error = ActorDiedError(
            f"The actor {actor_id} died because its placement group was removed.",
            actor_id=actor_id,
        )
        self.daemon.commands.call("actor_dead", actor_id, dumps(error), "0")
