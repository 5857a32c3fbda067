"""Utilities with Ray's names: scheduling strategies and placement groups."""

from redray.actor import list_named_actors
from redray.util import scheduling_strategies
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
    "PlacementGroup",
    "deregister_serializer",
    "get_node_ip_address",
    "get_current_placement_group",
    "get_placement_group",
    "list_named_actors",
    "placement_group",
    "placement_group_table",
    "register_serializer",
    "remove_placement_group",
    "scheduling_strategies",
]
