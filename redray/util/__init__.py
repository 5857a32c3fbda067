"""Utilities with Ray's names: scheduling strategies, placement groups, ActorPool, queue,
multiprocessing, joblib and progress bars."""

import importlib
from typing import Any

from redray.actor import list_named_actors
from redray.util import scheduling_strategies
from redray.util.actor_pool import ActorPool
from redray.util.check_serialize import inspect_serializability
from redray.util.helpers import as_completed, map_unordered
from redray.util.network import get_node_ip_address
from redray.util.placement_group import (
    PlacementGroup,
    get_current_placement_group,
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)
from redray.util.serialization import deregister_serializer, register_serializer

__all__ = [
    "ActorPool",
    "PlacementGroup",
    "as_completed",
    "deregister_serializer",
    "get_node_ip_address",
    "get_current_placement_group",
    "get_placement_group",
    "inspect_serializability",
    "list_named_actors",
    "map_unordered",
    "placement_group",
    "placement_group_table",
    "progress",
    "register_serializer",
    "remove_placement_group",
    "scheduling_strategies",
]

#: Submodules loaded on first use (`redray.util.queue`, ...), as in Ray, where they are not
#: imported by `import ray`: `import redray` does not pay for stdlib multiprocessing.
_LAZY_SUBMODULES = ("joblib", "multiprocessing", "queue")


def __getattr__(name: str) -> Any:
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name == "progress":  # imported on first use: tqdm takes ~0.1 s to import
        from redray.util.progress_bar import progress

        return progress
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
