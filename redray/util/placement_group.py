"""Placement groups, with Ray's API (`ray.util.placement_group`).

    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_SPREAD")
    redray.get(pg.ready())
    f.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, 0)).remote()
    remove_placement_group(pg)

How it works (there is no central scheduler, so the creating process does Ray's GCS part):

* `placement_group()` writes the group's record (`pg:<id>`, state "pending") and hands it
  to this process's group scheduler (`redray/client/placement_groups.py`), which reserves
  its bundles on nodes chosen by the strategy and then commits the group's ready object.
  A group no node set could ever hold stays pending with a warning, as in Ray.
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
import time
import warnings
from typing import Any

from redray import runtime_context, session
from redray.client import placement_groups as groups
from redray.control import keys
from redray.object_ref import ObjectRef
from redray.objectstore.serialization import serialize
from redray.scheduler.bundles import STRATEGIES, assign_bundles
from redray.scheduler.resources import fits
from redray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

logger = logging.getLogger(__name__)


class PlacementGroupID(str):
    """A placement group id: a hex string that also has Ray's id methods."""

    def hex(self) -> str:  # type: ignore[override]
        return str(self)

    def binary(self) -> bytes:
        return bytes.fromhex(self)

    def is_nil(self) -> bool:
        return not self


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
        return ObjectRef(groups.ready_object_id(self.id), "")

    def wait(self, timeout_seconds: float | int = 30) -> bool:
        """Wait until the group is created; False if it is not within `timeout_seconds`."""
        client = _client()
        object_id = groups.ready_object_id(self.id)
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
    return session.current_client()


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
    handle = PlacementGroup(pg_id, bundles)
    ready_value = serialize(handle).to_bytes()
    groups.schedule(client, pg_id, ready_value, detached=lifetime == "detached")
    return handle


def remove_placement_group(placement_group: PlacementGroup) -> None:
    """Release the group's reservations; kills the actors and tasks running in it."""
    assert placement_group is not None
    groups.remove(_client(), str(placement_group.id))


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
        actors = keys.placement_group_actors(str(pg.id))
        _client().batcher.add("SADD", actors, spec.extra["actor_id"])
    return PlacementGroupSchedulingStrategy(pg, index, capture)
