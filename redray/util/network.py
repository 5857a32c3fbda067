"""Ray's `ray.util.get_node_ip_address`."""

from __future__ import annotations


def get_node_ip_address() -> str:
    """The address other nodes reach this process's machine by (REDRAY_NODE_IP when set)."""
    from redray.host import node_ip  # the daemon's own rule, so both always agree

    return node_ip()
