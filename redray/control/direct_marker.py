"""Where an in-order actor takes direct calls from its node (worker/direct_server.py), and
the marker through which a caller (client/direct_calls.py) learns which call it had
started when it died: its socket's name, and a small shared-memory file holding the task id
of the call it started last. The node daemon deletes the marker when the actor is gone."""

from __future__ import annotations

import mmap
from pathlib import Path


def direct_address(actor_id: str, pid: int) -> str:
    """The abstract socket name of one incarnation of an actor."""
    return f"redray-actor-{actor_id}-{pid}"


def started_marker(store: Path, actor_id: str, pid: int) -> Path:
    """Where one incarnation of an actor writes the id of the direct call it started last."""
    return store / f"actor.{actor_id}.{pid}"


MARKER_BYTES = 64


def read_marker(mapping: mmap.mmap) -> str:
    return bytes(mapping[:MARKER_BYTES]).rstrip(b"\0").decode()
