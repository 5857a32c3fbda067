"""The client's side of placement groups: Ray's GCS part, done by the creating process.

`util/placement_group.py` is the public API; this module does the work behind it:

* `schedule()` hands a new group to this process's `_GroupScheduler` thread. It assigns
  each bundle to a node with `scheduler/bundles.py:assign_bundles` (the strategy, over the
  node table), asks each chosen node to reserve its bundles (an entry `{pg, op: reserve,
  ...}` on the node's queue stream) and waits for every node's answer. If all reserved, it
  marks the group "created" (atomically, unless it was removed meanwhile) and commits the
  group's ready object with the same command as task results; otherwise it releases what
  was reserved and tries again a little later (nodes join, resources free).
* `dispatch()` queues a task of a group on its bundle's node (CoreClient._dispatch calls
  it), holds it while the group is pending, fails it if the group is gone.
* `remove()` marks the group removed and asks its nodes to release the bundles; they fail
  the group's queued tasks, kill its running tasks (TaskPlacementGroupRemoved) and its
  actors (ActorDiedError).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from redray import ids
from redray.client.node_view import read_nodes
from redray.control import keys, reconnect, results
from redray.control.entry import Entry
from redray.control.messages import ReleaseMessage, ReserveMessage, xadd
from redray.control.scripts import Commands
from redray.exceptions import ActorDiedError, TaskPlacementGroupRemoved
from redray.objectstore.serialization import dumps
from redray.scheduler.bundles import assign_bundles
from redray.scheduler.resources import fits
from redray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

logger = logging.getLogger(__name__)

#: How long the scheduler waits for the nodes' answers to one reservation attempt.
_REPLY_TIMEOUT_SECONDS = 30.0
#: How often pending groups are tried again.
_RETRY_SECONDS = 0.2


def ready_object_id(pg_id: str) -> str:
    """The object that becomes ready (with the group's handle) once the group is created."""
    return ids.object_id_for(ready_task_id(pg_id), 1)


def ready_task_id(pg_id: str) -> str:
    return pg_id[: ids.TASK_ID_BYTES * 2]


def schedule(client: Any, pg_id: str, ready_value: bytes, *, detached: bool) -> None:
    """Start reserving a new group (its record is written); a group that is not detached
    is removed when its creator, a driver of a cluster that lives on, shuts down."""
    if not detached:
        with _owned_lock:
            _owned.setdefault(client.client_id, []).append(pg_id)
    _scheduler_for(client).add(pg_id, ready_value)


_schedulers: dict[str, _GroupScheduler] = {}
_schedulers_lock = threading.Lock()
#: Groups (not detached) created by each client: removed when a driver shuts down.
_owned: dict[str, list[str]] = {}
_owned_lock = threading.Lock()
#: Where the bundles of created groups are: group id -> node of each bundle.
_created_nodes: dict[str, list[str]] = {}
_cursor: dict[str, int] = {}


def _scheduler_for(client: Any) -> _GroupScheduler:
    with _schedulers_lock:
        scheduler = _schedulers.get(client.client_id)
        if scheduler is None:
            scheduler = _schedulers[client.client_id] = _GroupScheduler(client)
            scheduler.start()
        return scheduler


class _GroupScheduler(threading.Thread):
    """Reserves this process's pending groups, oldest first, retrying until they fit."""

    def __init__(self, client: Any) -> None:
        super().__init__(name="redray-placement-groups", daemon=True)
        self.client = client
        self.redis = reconnect.client(client.redis_kwargs)
        self.commands = Commands(self.redis)
        self.pending: list[str] = []
        self.ready_values: dict[str, bytes] = {}
        self.condition = threading.Condition()
        self.stopping = False
        self.attempt = 0

    def add(self, pg_id: str, ready_value: bytes) -> None:
        """Reserve a group; `ready_value` (its serialized PlacementGroup handle) becomes the
        value of its ready object once it is created."""
        with self.condition:
            self.pending.append(pg_id)
            self.ready_values[pg_id] = ready_value
            self.condition.notify()

    def stop(self) -> None:
        with self.condition:
            self.stopping = True
            self.condition.notify()
        self.join(timeout=5)
        self.redis.close()

    def run(self) -> None:
        while True:
            with self.condition:
                while not self.pending and not self.stopping:
                    self.condition.wait()
                if self.stopping:
                    return
                batch = list(self.pending)
            for pg_id in batch:
                try:
                    done = self._try(pg_id)
                except Exception as error:  # Redis gone at shutdown, or a bad record
                    if self.stopping:
                        return
                    logger.debug("placement group %s: %s", pg_id, error)
                    done = False
                if done:
                    with self.condition:
                        self.pending.remove(pg_id)
                        self.ready_values.pop(pg_id, None)
            with self.condition:
                if self.pending and not self.stopping:
                    self.condition.wait(_RETRY_SECONDS)

    def _try(self, pg_id: str) -> bool:
        """One attempt to reserve a group; True when it needs no more attempts."""
        key = keys.placement_group(pg_id)
        state, bundles, strategy, soft = self.redis.hmget(
            key, "state", "bundles", "strategy", "soft_target"
        )
        if state != b"pending":
            return True
        bundles = json.loads(bundles)
        nodes = [node for node, _ in read_nodes(self.redis)]
        assignment = assign_bundles(
            bundles, strategy.decode(), nodes,
            local_node=self.client.node_id, soft_target=(soft or b"").decode() or None,
        )  # fmt: skip
        if assignment is None:
            return False
        by_node: dict[str, list[tuple[int, dict[str, float]]]] = {}
        for index, node_id in enumerate(assignment):
            by_node.setdefault(node_id, []).append((index, bundles[index]))
        self.attempt += 1
        reply = keys.placement_group_reply(pg_id, self.attempt)
        pipe = self.redis.pipeline(transaction=False)
        for node_id, items in by_node.items():
            request = ReserveMessage(pg_id, items, reply)
            pipe.execute_command(*xadd(keys.node_queue(node_id), request))
        pipe.execute()
        reserved = self._answers(reply, len(by_node))
        if len(reserved) == len(by_node) and all(reserved.values()):
            if self.commands.call("pg_mark_created", pg_id, json.dumps(assignment)):
                _created_nodes[pg_id] = assignment
                data = self.ready_values[pg_id]
                _commit_ready_entry(self.client, self.redis, pg_id, "v", data)
            else:  # removed meanwhile
                _release(self.redis, pg_id, list(by_node))
            return True
        _release(self.redis, pg_id, list(by_node))
        return False

    def _answers(self, reply: str, count: int) -> dict[str, bool]:
        answers: dict[str, bool] = {}
        deadline = time.monotonic() + _REPLY_TIMEOUT_SECONDS
        try:
            while len(answers) < count and not self.stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                got = self.redis.blpop([reply], timeout=min(left, 1.0))
                if got is not None:
                    answer = json.loads(got[1])
                    answers[answer["node"]] = answer["ok"]
        finally:
            self.redis.delete(reply)
        return answers


def _commit_ready_entry(client: Any, connection: Any, pg_id: str, kind: str, data: bytes) -> None:
    pipe = connection.pipeline(transaction=False)
    results.commit_entries(
        client.commands, pipe, ready_task_id(pg_id), "", [ready_object_id(pg_id)],
        [Entry(kind, len(data), "", data)],
    )  # fmt: skip
    pipe.execute()


def _release(connection: Any, pg_id: str, node_ids: list[str]) -> None:
    pipe = connection.pipeline(transaction=False)
    for node_id in dict.fromkeys(node_ids):
        pipe.execute_command(*xadd(keys.node_queue(node_id), ReleaseMessage(pg_id)))
    pipe.execute()


def remove(client: Any, pg_id: str) -> None:
    """Mark a group removed; its actors die, its reservations are released (or, pending,
    the tasks held for it fail)."""
    client.batcher.flush()
    state, nodes = client.commands.call("pg_mark_removed", pg_id)
    _created_nodes.pop(pg_id, None)
    # Its actors are dead from now on (their calls fail at once); their nodes kill them.
    actors = client.redis.smembers(keys.placement_group_actors(pg_id))
    if actors:
        pipe = client.redis.pipeline(transaction=False)
        for raw in actors:
            actor_id = raw.decode()
            client.direct.unlink(actor_id)  # calls to it must meet its death from now on
            error = ActorDiedError(
                f"The actor {actor_id} died because its placement group was removed.",
                actor_id=actor_id,
            )
            client.commands.call("actor_dead", actor_id, dumps(error), "1", pipe=pipe)
        pipe.delete(keys.placement_group_actors(pg_id))
        pipe.execute()
    if state == b"pending":
        # Tasks held for the group (and ready() waiters) learn that it is gone.
        _commit_ready_entry(client, client.redis, pg_id, "e", dumps(TaskPlacementGroupRemoved()))
    elif state == b"created" and nodes:
        _release(client.redis, pg_id, json.loads(nodes))


def shutdown_client(client: Any, *, remove_owned: bool) -> None:
    """Called at shutdown: stop the scheduler thread; a driver of a cluster that lives on
    removes the groups it created (not detached), as Ray removes a job's groups."""
    with _schedulers_lock:
        scheduler = _schedulers.pop(client.client_id, None)
    if scheduler is not None:
        scheduler.stop()
    with _owned_lock:
        owned = _owned.pop(client.client_id, [])
    if remove_owned:
        for pg_id in owned:
            try:
                remove(client, pg_id)
            except Exception:  # Redis gone: the reservations went with the cluster
                return


# ---- tasks of groups ------------------------------------------------------------------------


def dispatch(client: Any, spec: Any, strategy: PlacementGroupSchedulingStrategy) -> None:
    """Queue a task of a group on its bundle's node; hold it while the group is pending;
    fail it if the group is gone. Called by CoreClient._dispatch."""
    pg_id = spec.extra["pg"]["id"]
    nodes = _created_nodes.get(pg_id)
    if nodes is None:
        state, raw_nodes = client.redis.hmget(keys.placement_group(pg_id), "state", "nodes")
        if state == b"created":
            nodes = _created_nodes[pg_id] = json.loads(raw_nodes)
        elif state == b"pending" and client.hold_until(ready_object_id(pg_id), spec, strategy):
            return
        elif state == b"pending":  # its ready object arrived meanwhile: look again
            return dispatch(client, spec, strategy)
        else:
            _fail_removed(client, spec)
            return
    client.enqueue(_node_for(client, spec, nodes), spec)


def _node_for(client: Any, spec: Any, nodes: list[str]) -> str:
    pg = spec.extra["pg"]
    if pg["index"] != -1:
        return nodes[pg["index"]]
    fitting = [i for i, bundle in enumerate(pg["bundles"]) if fits(spec.demand, bundle)]
    local = [i for i in fitting if nodes[i] == client.node_id]
    if local and len(set(nodes[i] for i in fitting)) == 1:
        return client.node_id
    cursor = _cursor.get(pg["id"], 0)
    _cursor[pg["id"]] = cursor + 1
    return nodes[fitting[cursor % len(fitting)]]


def _fail_removed(client: Any, spec: Any) -> None:
    if spec.extra.get("actor"):
        actor_id = spec.extra["actor_id"]
        error = ActorDiedError(
            f"The actor {actor_id} died because its placement group was removed.",
            actor_id=actor_id,
        )
        client.commands.call("actor_dead", actor_id, dumps(error), "0")
    client.fail_task(spec, TaskPlacementGroupRemoved())
