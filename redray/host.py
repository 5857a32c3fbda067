"""This machine's address as other nodes see it (the one place redray decides it)."""

from __future__ import annotations

import os
import socket
from typing import Any


def node_ip(redis_kwargs: dict[str, Any] | None = None) -> str:
    """REDRAY_NODE_IP when set (`redray start --node-ip-address`; a node daemon sets it for
    its workers); else, for a Redis reached over TCP, the local address of the route to it
    (the interface the other hosts of the cluster share with this one); else what the host
    name resolves to, else loopback."""
    explicit = os.environ.get("REDRAY_NODE_IP")
    if explicit:
        return explicit
    kwargs = redis_kwargs or {}
    if kwargs.get("host") and not kwargs.get("unix_socket_path"):
        try:  # a UDP connect only picks the route: nothing is sent
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.connect((kwargs["host"], int(kwargs.get("port") or 6379)))
                return probe.getsockname()[0]
        except OSError:
            pass
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"
