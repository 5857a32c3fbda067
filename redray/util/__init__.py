"""Utilities with Ray's names: scheduling strategies, placement groups, progress bars."""

from typing import Any

from redray.actor import list_named_actors
from redray.util import scheduling_strategies
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
    "PlacementGroup",
    "deregister_serializer",
    "get_current_placement_group",
    "get_placement_group",
    "list_named_actors",
    "placement_group",
    "placement_group_table",
    "progress",
    "register_serializer",
    "remove_placement_group",
    "scheduling_strategies",
]


def __getattr__(name: str) -> Any:
    """`progress` is imported on first use: tqdm takes ~0.1 s to import."""
    if name == "progress":
        from redray.util.progress_bar import progress

        return progress
    raise AttributeError(f"module 'redray.util' has no attribute {name!r}")
