"""Placement groups, with Ray's API (`ray.util.placement_group`).

    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_SPREAD")
    redray.get(pg.ready())
    f.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, 0)).remote()
    remove_placement_group(pg)

How it works (there is no central scheduler, so the creating process does Ray's GCS part):

* `placement_group()` writes the group's record (`pg:<id>`, state "pending") and hands it
  to this process's `_GroupScheduler` thread. That thread assigns each bundle to a node with
  `redray/scheduler/bundles.py:assign_bundles` (the strategy, over the node table), asks
  each chosen node to reserve its bundles (an entry `{pg, op: reserve, ...}` on the node's
  queue stream), and waits for every node's answer. If all reserved, it marks the group
  "created" (atomically, unless it was removed meanwhile) and commits the group's ready
  object, with the same commit command as task results; otherwise it releases what was
  reserved and tries again a little later (nodes join, resources free). A group no node
  set could ever hold stays pending with a warning, as in Ray.
* A task or actor scheduled into the group (`PlacementGroupSchedulingStrategy`, or the
  deprecated `placement_group=` options, or captured from its parent) carries
  `spec.extra["pg"]`; its submitter holds it until the group is created (like an argument
  dependency: it waits on the ready object), then queues it on the node of its bundle,
  whose local scheduler runs it against the bundle's reservation.
* `remove_placement_group()` marks the group removed and asks its nodes to release the
  bundles; they fail the group's queued tasks, kill its running tasks
  (TaskPlacementGroupRemoved) and its actors (ActorDiedError).
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
import warnings
from typing import Any

from redray import ids, runtime_context
from redray.control import keys, reconnect
from redray.scheduler.bundles import STRATEGIES, assign_bundles
from redray.scheduler.resources import fits
from redray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

logger = logging.getLogger(__name__)

#: How long the scheduler waits for the nodes' answers to one reservation attempt.
_REPLY_TIMEOUT_SECONDS = 30.0
#: How often pending groups are tried again.
_RETRY_SECONDS = 0.2


class PlacementGroupID(str):
    """A placement group id: a hex string that also has Ray's id methods."""

    def hex(self) -> str:  # type: ignore[override]
        return str(self)

    def binary(self) -> bytes:
        return bytes.fromhex(self)

    def is_nil(self) -> bool:
        return not self


def _ready_object_id(pg_id: str) -> str:
    return ids.object_id_for(_ready_task_id(pg_id), 1)


def _ready_task_id(pg_id: str) -> str:
    return pg_id[: ids.TASK_ID_BYTES * 2]


class PlacementGroup:
    """A handle to a placement group: its id and bundles."""

    def __init__(self, id: Any, bundle_specs: list[dict[str, float]] | None = None) -> None:
        self.id = PlacementGroupID(
            id.hex() if hasattr(id, "hex") and not isinstance(id, str) else id
        )
        self._bundle_specs = bundle_specs

    @staticmethod
    def empty() -> PlacementGroup:
        return PlacementGroup("", [])

    @property
    def is_empty(self) -> bool:
        return not self.id

    @property
    def bundle_specs(self) -> list[dict[str, float]]:
        if self._bundle_specs is None:
            record = _client().redis.hget(keys.placement_group(self.id), "bundles")
            self._bundle_specs = json.loads(record) if record else []
        return [dict(bundle) for bundle in self._bundle_specs]

    @property
    def bundle_count(self) -> int:
        return len(self.bundle_specs)

    def ready(self) -> Any:
        """An ObjectRef that becomes ready (with this group as its value) once every bundle
        is reserved; use it with get() or wait()."""
        from redray.object_ref import ObjectRef

        return ObjectRef(_ready_object_id(self.id), "")

    def wait(self, timeout_seconds: float | int = 30) -> bool:
        """Wait until the group is created; False if it is not within `timeout_seconds`."""
        client = _client()
        object_id = _ready_object_id(self.id)
        if not client.wait([object_id], 1, timeout_seconds)[0]:
            return False
        entry = client.objects.get(object_id)
        return entry is not None and entry.kind != "e"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PlacementGroup) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"PlacementGroup(id={self.id}, bundles={self._bundle_specs})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (PlacementGroup, (str(self.id), self._bundle_specs))


def _client() -> Any:
    from redray import api

    return api.current_client()


# ---- validation --------------------------------------------------------------------------------


def _validate_bundles(bundles: Any) -> None:
    if not isinstance(bundles, list):
        raise ValueError(f"Placement group bundles must be a list, got {type(bundles)}.")
    if len(bundles) == 0:
        raise ValueError(
            "Bundles must be a non-empty list of resource dictionaries. For example: "
            '`[{"CPU": 1.0}, {"GPU": 1.0}]`. Got empty list instead.'
        )
    for bundle in bundles:
        if (
            not isinstance(bundle, dict)
            or not all(isinstance(k, str) for k in bundle)
            or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in bundle.values()
            )
        ):
            raise ValueError(
                "Bundles must be a non-empty list of resource dictionaries. For example: "
                '`[{"CPU": 1.0}, {"GPU": 1.0}]`.'
            )
        if any(v < 0 or not math.isfinite(v) for v in bundle.values()):
            raise ValueError(
                f"Bundle resources must be non-negative finite numbers. Bundles: {bundles}"
            )
        if len(bundle) == 0 or all(v == 0 for v in bundle.values()):
            raise ValueError(
                "Bundles cannot be an empty dictionary or resources with only 0 values. "
                f"Bundles: {bundles}"
            )
        if "object_store_memory" in bundle:
            warnings.warn(
                "Setting 'object_store_memory' for bundles is deprecated since it doesn't "
                "actually reserve the required object store memory.",
                DeprecationWarning,
                stacklevel=3,
            )


def _validate(bundles: Any, strategy: Any, lifetime: Any, soft_target: Any, name: Any) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(
            f"Invalid placement group strategy {strategy}. Supported strategies are: "
            f"{list(STRATEGIES)}."
        )
    if soft_target and strategy != "STRICT_PACK":
        raise ValueError(
            f"_soft_target_node_id currently only works with STRICT_PACK but got {strategy}"
        )
    if soft_target:
        try:
            bytes.fromhex(soft_target)
        except (TypeError, ValueError):
            raise ValueError(f"Invalid hex ID of _soft_target_node_id, got {soft_target}") from None
    _validate_bundles(bundles)
    if lifetime not in (None, "detached"):
        raise ValueError(
            "Placement group `lifetime` argument must be either `None` or 'detached'. "
            f"Got {lifetime}."
        )
    if not isinstance(name, str):
        raise TypeError(f"The placement group name must be a str, got {type(name).__name__}.")


# ---- the API -------------------------------------------------------------------------------------


def placement_group(
    bundles: list[dict[str, float]],
    strategy: str = "PACK",
    name: str = "",
    lifetime: str | None = None,
    _soft_target_node_id: str | None = None,
    bundle_label_selector: Any = None,
) -> PlacementGroup:
    """Reserve `bundles` of resources on nodes chosen by `strategy` (PACK, SPREAD,
    STRICT_PACK, STRICT_SPREAD); returns at once, use `.ready()` / `.wait()` to know when."""
    _validate(bundles, strategy, lifetime, _soft_target_node_id, name)
    bundles = [{k: float(v) for k, v in bundle.items() if v} for bundle in bundles]
    client = _client()
    pg_id = os.urandom(18).hex()
    namespace = _namespace(client)
    record = {
        "state": "pending",
        "name": name,
        "namespace": namespace,
        "name_key": f"{namespace}\x00{name}" if name else "",
        "strategy": strategy,
        "bundles": json.dumps(bundles),
        "nodes": "",
        "creator": client.client_id,
        "job": client.job_id,
        "lifetime": lifetime or "",
        "soft_target": _soft_target_node_id or "",
        "created": time.time(),
    }
    pipe = client.redis.pipeline()
    pipe.hset(keys.placement_group(pg_id), mapping=record)
    pipe.sadd(keys.PLACEMENT_GROUPS, pg_id)
    if name:
        pipe.hset(keys.NAMED_PLACEMENT_GROUPS, record["name_key"], pg_id)
    pipe.execute()
    nodes = client.nodes.refresh()
    if assign_bundles(bundles, strategy, nodes, use_total=True) is None:
        message = (
            f"The placement group {pg_id} ({strategy}, bundles {bundles}) cannot be created: "
            "no set of nodes in the cluster can ever hold it. It stays pending until nodes "
            "with these resources join."
        )
        warnings.warn(message, stacklevel=2)
        logger.warning(message)
    if lifetime != "detached":
        with _owned_lock:
            _owned.setdefault(client.client_id, []).append(pg_id)
    _scheduler_for(client).add(pg_id)
    return PlacementGroup(pg_id, bundles)


def remove_placement_group(placement_group: PlacementGroup) -> None:
    """Release the group's reservations; kills the actors and tasks running in it."""
    assert placement_group is not None
    _remove(_client(), str(placement_group.id))


def get_placement_group(placement_group_name: str) -> PlacementGroup:
    """The live placement group called `placement_group_name` in the current namespace."""
    if not placement_group_name:
        raise ValueError("Please supply a non-empty value to get_placement_group")
    client = _client()
    name_key = f"{_namespace(client)}\x00{placement_group_name}"
    pg_id = client.redis.hget(keys.NAMED_PLACEMENT_GROUPS, name_key)
    if pg_id is not None:
        pg_id = pg_id.decode()
        state, bundles = client.redis.hmget(keys.placement_group(pg_id), "state", "bundles")
        if state is not None and state != b"removed":
            return PlacementGroup(pg_id, json.loads(bundles))
    raise ValueError(f"Failed to look up placement group with name: {placement_group_name}")


def placement_group_table(placement_group: PlacementGroup | None = None) -> dict[str, Any]:
    """The state of one group, or of every group (id -> state) when none is given."""
    client = _client()
    if placement_group is not None:
        record = client.redis.hgetall(keys.placement_group(placement_group.id))
        return _table_entry(str(placement_group.id), record) if record else {}
    table = {}
    for raw_id in client.redis.smembers(keys.PLACEMENT_GROUPS):
        pg_id = raw_id.decode()
        record = client.redis.hgetall(keys.placement_group(pg_id))
        if record:
            table[pg_id] = _table_entry(pg_id, record)
        else:
            client.redis.srem(keys.PLACEMENT_GROUPS, pg_id)
    return table


def get_current_placement_group() -> PlacementGroup | None:
    """The group the current task or actor runs in (None in the driver or outside groups)."""
    current = getattr(runtime_context.current, "placement_group", None)
    if not current:
        return None
    return PlacementGroup(current["id"], current.get("bundles"))


def _table_entry(pg_id: str, record: dict[bytes, bytes]) -> dict[str, Any]:
    field = {k.decode(): v.decode() for k, v in record.items()}
    bundles = json.loads(field["bundles"])
    nodes = json.loads(field["nodes"]) if field.get("nodes") else []
    return {
        "placement_group_id": pg_id,
        "name": field.get("name", ""),
        "bundles": dict(enumerate(bundles)),
        "bundles_to_node_id": dict(enumerate(nodes)),
        "strategy": field["strategy"],
        "state": field["state"].upper(),
        "stats": {"scheduling_state": field["state"].upper()},
    }


def _namespace(client: Any) -> str:
    return runtime_context.current.namespace or client.namespace or client.job_id


# ---- creation: the scheduler thread -------------------------------------------------------

_MARK_CREATED = """
if redis.call('HGET', KEYS[1], 'state') ~= 'pending' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'created', 'nodes', ARGV[1])
return 1
"""

_MARK_REMOVED = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state or state == 'removed' then return {state or '', ''} end
redis.call('HSET', KEYS[1], 'state', 'removed')
redis.call('EXPIRE', KEYS[1], 3600)
local name_key = redis.call('HGET', KEYS[1], 'name_key')
if name_key and name_key ~= '' and redis.call('HGET', KEYS[2], name_key) == ARGV[1] then
  redis.call('HDEL', KEYS[2], name_key)
end
return {state, redis.call('HGET', KEYS[1], 'nodes') or ''}
"""

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
        self.mark_created = self.redis.register_script(_MARK_CREATED)
        self.pending: list[str] = []
        self.condition = threading.Condition()
        self.stopping = False
        self.attempt = 0

    def add(self, pg_id: str) -> None:
        with self.condition:
            self.pending.append(pg_id)
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
            with self.condition:
                if self.pending and not self.stopping:
                    self.condition.wait(_RETRY_SECONDS)

    def _try(self, pg_id: str) -> bool:
        """One attempt to reserve a group; True when it needs no more attempts."""
        from redray.client.node_view import read_nodes

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
            request = {"pg": pg_id, "op": "reserve", "b": json.dumps(items), "reply": reply}
            pipe.xadd(keys.node_queue(node_id), request)
        pipe.execute()
        reserved = self._answers(reply, len(by_node))
        if len(reserved) == len(by_node) and all(reserved.values()):
            if self.mark_created(keys=[key], args=[json.dumps(assignment)]):
                _created_nodes[pg_id] = assignment
                self._commit_ready(pg_id, bundles)
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

    def _commit_ready(self, pg_id: str, bundles: list[dict[str, float]]) -> None:
        from redray.objectstore.serialization import serialize

        data = serialize(PlacementGroup(pg_id, bundles)).to_bytes()
        _commit_ready_entry(self.client, self.redis, pg_id, "v", data)


def _commit_ready_entry(client: Any, connection: Any, pg_id: str, kind: str, data: bytes) -> None:
    from redray.client.object_table import Entry
    from redray.control import results

    pipe = connection.pipeline(transaction=False)
    results.commit_entries(
        client.commands, pipe, _ready_task_id(pg_id), "", [_ready_object_id(pg_id)],
        [Entry(kind, len(data), "", data)],
    )  # fmt: skip
    pipe.execute()


def _release(connection: Any, pg_id: str, node_ids: list[str]) -> None:
    pipe = connection.pipeline(transaction=False)
    for node_id in dict.fromkeys(node_ids):
        pipe.xadd(keys.node_queue(node_id), {"pg": pg_id, "op": "release"})
    pipe.execute()


def _actors_key(pg_id: str) -> str:
    return keys.placement_group(pg_id) + ":actors"


def _remove(client: Any, pg_id: str) -> None:
    from redray.exceptions import ActorDiedError, TaskPlacementGroupRemoved
    from redray.objectstore.serialization import dumps

    client.batcher.flush()
    script = client.redis.register_script(_MARK_REMOVED)
    state, nodes = script(
        keys=[keys.placement_group(pg_id), keys.NAMED_PLACEMENT_GROUPS], args=[pg_id]
    )
    _created_nodes.pop(pg_id, None)
    # Its actors are dead from now on (their calls fail at once); their nodes kill them.
    actors = client.redis.smembers(_actors_key(pg_id))
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
        pipe.delete(_actors_key(pg_id))
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
                _remove(client, pg_id)
            except Exception:  # Redis gone: the reservations went with the cluster
                return


# ---- scheduling tasks and actors into groups ---------------------------------------------------


def scheduling_strategy_for(spec: Any, options: dict[str, Any], what: str) -> Any:
    """The strategy a task or actor is submitted with, as Ray derives it from its options:
    a PlacementGroupSchedulingStrategy (also from the deprecated placement_group options, or
    captured from the parent task) marks `spec.extra["pg"]`. Raises ValueError for a bundle
    index out of range or a demand no bundle (or not the chosen one) can hold."""
    strategy = options.get("scheduling_strategy")
    if strategy is not None and not isinstance(strategy, PlacementGroupSchedulingStrategy):
        return strategy
    pg = options.get("placement_group", "default")
    index = options.get("placement_group_bundle_index", -1)
    capture = options.get("placement_group_capture_child_tasks")
    if isinstance(strategy, PlacementGroupSchedulingStrategy):
        pg = strategy.placement_group
        index = strategy.placement_group_bundle_index
        capture = strategy.placement_group_capture_child_tasks
    current = getattr(runtime_context.current, "placement_group", None)
    if capture is None:
        capture = bool(current and current.get("capture"))
    if pg == "default":
        pg = get_current_placement_group() if capture else None
    if pg is None or getattr(pg, "is_empty", False):
        if index != -1:
            raise ValueError("If placement group is not set, the value of bundle index must be -1.")
        return "DEFAULT"
    bundles = pg.bundle_specs
    if index >= len(bundles) or index < -1:
        raise ValueError(
            f"placement group bundle index {index} is invalid. Valid placement group "
            f"indexes: 0-{len(bundles)}"
        )
    demand = spec.demand
    candidates = bundles if index == -1 else [bundles[index]]
    if not any(fits(demand, bundle) for bundle in candidates):
        where = "any bundles" if index == -1 else f"bundle {index}"
        raise ValueError(
            f"Cannot schedule {what} with the placement group because the resource request "
            f"{demand} cannot fit into {where} for the placement group, {bundles}."
        )
    spec.extra["pg"] = {"id": str(pg.id), "index": index, "capture": bool(capture),
                        "bundles": bundles}  # fmt: skip
    if spec.extra.get("actor"):  # removing the group kills it (see _remove)
        _client().batcher.add("SADD", _actors_key(str(pg.id)), spec.extra["actor_id"])
    return PlacementGroupSchedulingStrategy(pg, index, capture)


def dispatch(client: Any, spec: Any, strategy: PlacementGroupSchedulingStrategy) -> None:
    """Queue a task of a group on its bundle's node; hold it while the group is pending;
    fail it if the group is gone. Called by CoreClient._dispatch."""
    pg_id = spec.extra["pg"]["id"]
    nodes = _created_nodes.get(pg_id)
    if nodes is None:
        state, raw_nodes = client.redis.hmget(keys.placement_group(pg_id), "state", "nodes")
        if state == b"created":
            nodes = _created_nodes[pg_id] = json.loads(raw_nodes)
        elif state == b"pending" and _hold(client, spec, strategy, pg_id):
            return
        elif state == b"pending":  # its ready object arrived meanwhile: look again
            return dispatch(client, spec, strategy)
        else:
            _fail_removed(client, spec)
            return
    client.enqueue(_node_for(client, spec, nodes), spec)


def _hold(client: Any, spec: Any, strategy: Any, pg_id: str) -> bool:
    """Wait for the group's ready object as for an argument; False if it is already here."""
    from redray.client.core import _WaitingSubmission

    object_id = _ready_object_id(pg_id)
    with client.objects.lock:
        if object_id in client.objects:
            return False
        waiting = _WaitingSubmission(spec, strategy, {object_id})
        client._waiting_on.setdefault(object_id, []).append(waiting)
    client._watch([object_id])
    return True


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
    from redray.exceptions import ActorDiedError, TaskPlacementGroupRemoved
    from redray.objectstore.serialization import dumps

    if spec.extra.get("actor"):
        actor_id = spec.extra["actor_id"]
        error = ActorDiedError(
            f"The actor {actor_id} died because its placement group was removed.",
            actor_id=actor_id,
        )
        client.commands.call("actor_dead", actor_id, dumps(error), "0")
    client.fail_task(spec, TaskPlacementGroupRemoved())
