"""Node failure: detecting dead nodes and re-running the tasks left in their queues.

Every node daemon runs this on its heartbeat tick (no threads). The Lua command
`node_tick` refreshes the daemon's own heartbeat and, in the same atomic step, declares
dead every other node whose heartbeat key expired: its record in the node table gets
`"dead": true` (so `nodes()` keeps listing it, with Alive=False) and a "left" node event is
published, once, by whichever daemon saw it first.

A dead node's queue stream still holds every task it had not finished: entries it had read
but not acknowledged (queued or running there when it died) and entries it never read
(including ones sent by drivers whose node cache had not noticed the death yet). One live
daemon at a time (a short lease, SET NX) takes them off that stream and re-places each on a
live node that can fit it (by the DEFAULT strategy: the original one stays with the
owner). A task that was delivered to the dead node counts that delivery
as an attempt, like a worker crash; a task with no retries left, or that no live node can
run, or that ran in a placement group bundle (bundles are not rescheduled), fails with
NodeDiedError instead. `requeue_task` refuses tasks that already finished
(the node died after committing their results), so a finished task never runs again.

Actors that ran on the dead node (its set node:<id>:actors) restart on a live node that
fits them while max_restarts allows, from the creation task kept at registration; the
others are marked dead (their pending and later calls fail with ActorDiedError).

A node that was only slow (its heartbeat expired while it lived) learns on its next tick
that it was declared dead and exits, as Ray's raylets do: its tasks are re-run elsewhere.
"""

from __future__ import annotations

import logging
import pickle
import time
from typing import Any

import redis

from redray.client.node_view import read_nodes
from redray.control import keys, results
from redray.control.messages import TaskMessage, decode_node_message, xadd
from redray.control.scripts import Commands
from redray.exceptions import ActorDiedError, NodeDiedError
from redray.objectstore.serialization import dumps
from redray.scheduler.placement import NodeState, Placement
from redray.task_spec import TaskSpec

logger = logging.getLogger(__name__)

#: How long one daemon may take to recover a dead node's queue before another may try.
LEASE_SECONDS = 30
#: Queue entries recovered per tick, so that the daemon's loop stays responsive.
_BATCH = 512


class NodeRecovery:
    """The failure detector and queue recovery of one node daemon."""

    def __init__(self, client: redis.Redis, commands: Commands, node_id: str) -> None:
        self._redis = client
        self._commands = commands
        self._node_id = node_id
        self._placement = Placement()
        #: Set once this node learns it was declared dead: it must not touch the cluster.
        self.declared_dead = False

    def tick(self, heartbeat: str, ttl: int) -> bool:
        """Heartbeat, detect dead nodes, recover their queues; False if this node is dead."""
        reply = self._commands.call("node_tick", self._node_id, heartbeat, ttl, time.time())
        status, dead_nodes = _text(reply[0]), [_text(node) for node in reply[1:]]
        if status == "dead":
            self.declared_dead = True
            return False
        for node_id in dead_nodes:
            self._recover(node_id)
        return True

    def _recover(self, dead: str) -> None:
        lease = keys.node_recovering(dead)
        if not self._redis.set(lease, self._node_id, nx=True, ex=LEASE_SECONDS):
            return  # another daemon is at it
        queue = keys.node_queue(dead)
        try:
            entries = self._redis.xrange(queue, count=_BATCH)
            delivered = _last_delivered(self._redis, queue) if entries else (0, 0)
            live = [state for state, _ in read_nodes(self._redis)]
            pipe = self._redis.pipeline(transaction=False)
            for entry_id, fields in entries:
                try:
                    message = decode_node_message(fields)
                except ValueError:  # another node's bad entry must not stop this one
                    message = None
                if isinstance(message, TaskMessage):  # other requests died with the node
                    try:
                        spec: TaskSpec = pickle.loads(message.payload)
                    except Exception:  # another node's bad entry must not stop this one
                        logger.exception("dropping an unreadable task of dead node %s", dead)
                    else:
                        self._replace(pipe, spec, dead, _id(entry_id) <= delivered, live)
                pipe.xdel(queue, entry_id)
            pipe.execute()
            if len(entries) < _BATCH:
                self._recover_actors(dead, live)
        finally:
            self._redis.delete(lease)

    def _recover_actors(self, dead: str, live: list[NodeState]) -> None:
        for raw_id in self._redis.smembers(keys.node_actors(dead)):
            actor_id = _text(raw_id)
            creation, max_restarts = self._redis.hmget(
                keys.actor(actor_id), "creation", "max_restarts"
            )
            cause = f"its node {dead} died"
            status = self._commands.call("actor_restart", actor_id, max_restarts or 0, cause)
            spec: TaskSpec | None = pickle.loads(creation) if creation else None
            target = None
            if status == 1 and spec is not None and not spec.extra.get("pg"):
                target = self._placement.choose(spec.demand, "DEFAULT", live, self._node_id)
            if target is not None and spec is not None:
                spec.attempt += 1
                message = TaskMessage(pickle.dumps(spec, protocol=5))
                self._redis.execute_command(*xadd(keys.node_queue(target), message))
            elif status != 0:
                reason = "it has no restarts left" if status == -1 else "no live node can run it"
                error = ActorDiedError(
                    f"The actor {actor_id} died: {cause}, and {reason}.", actor_id=actor_id
                )
                self._commands.call("actor_dead", actor_id, dumps(error), "0")
            self._redis.srem(keys.node_actors(dead), actor_id)

    def _replace(
        self,
        pipe: redis.client.Pipeline,
        spec: TaskSpec,
        dead: str,
        delivered: bool,
        live: list[NodeState],
    ) -> None:
        """Queue one task of the dead node on a live node, or fail it."""
        if delivered and spec.max_retries != -1 and spec.attempt >= spec.max_retries:
            reason = "and the task has no retries left (max_retries)"
        elif spec.extra.get("pg"):
            reason = "and its placement group bundle was reserved there"
        else:
            target = self._placement.choose(spec.demand, "DEFAULT", live, self._node_id)
            if target is not None:
                if delivered:
                    spec.attempt += 1
                payload = pickle.dumps(spec, protocol=5)
                self._commands.call("requeue_task", spec.task_id, target, payload, pipe=pipe)
                return
            reason = f"and no live node can run it (it requires {spec.demand})"
        error = NodeDiedError(
            f"The node {dead} running or queueing task {spec.name} (task {spec.task_id}, "
            f"attempt {spec.attempt + 1}) died, {reason}."
        )
        data = dumps(error)
        results.record_failure(
            pipe, spec, results.error_entries(data, 1)[0], dead, cause="node died"
        )
        results.fail_returns(self._commands, pipe, spec.task_id, spec.owner, spec.return_ids, data)


def _last_delivered(client: redis.Redis, queue: str) -> tuple[int, int]:
    """The id of the last entry the dead node read (entries after it it never saw)."""
    for group in client.xinfo_groups(queue):
        if _text(group["name"]) == keys.QUEUE_GROUP:
            return _id(group["last-delivered-id"])
    return (0, 0)


def _id(entry_id: Any) -> tuple[int, int]:
    milliseconds, sequence = _text(entry_id).split("-")
    return int(milliseconds), int(sequence)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
