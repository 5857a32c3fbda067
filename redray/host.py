"""This machine's address as other nodes see it (the one place redray decides it)."""

from __future__ import annotations

import os
import socket


def node_ip() -> str:
    """REDRAY_NODE_IP when set (a node of a multi-host cluster should set it), else what the
    host name resolves to, else loopback."""
    explicit = os.environ.get("REDRAY_NODE_IP")
    if explicit:
        return explicit
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"
