"""One process's access to stored objects: write into its node's store, read from anywhere.

Reading an object whose primary copy is on this node maps it from the store (zero copy),
restoring it from the spill directory if it was spilled. An object of another node is
pulled from that node's transfer server into this node's store first (once per node: the
object's lock file serializes concurrent pullers, and the later ones find it sealed), then
mapped; the node is recorded as one more location of the object. Stores of different nodes
are separate even when the nodes share a machine.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, Protocol

import redis

from redray.control import keys
from redray.control.scripts import Commands
from redray.exceptions import ObjectLostError
from redray.objectstore import spilling, transfer
from redray.objectstore.refcount import Freed
from redray.objectstore.serialization import SerializedObject
from redray.objectstore.shm_store import SharedMemoryStore, map_pinned, store_directory

logger = logging.getLogger(__name__)

_ATTEMPTS = 3


class NodeLookup(Protocol):
    """The node table as the client caches it (client/node_view.py:NodeView)."""

    def get(self, node_id: str) -> Any:
        """The node's NodeState (its record in `.extra`), or None."""


class LocalObjects:
    def __init__(
        self, client: redis.Redis, commands: Commands, node_id: str | None, nodes: NodeLookup
    ) -> None:
        self._redis = client
        self._commands = commands
        self.node_id = node_id
        self._nodes = nodes
        self.store = SharedMemoryStore(store_directory(node_id), recycle=True) if node_id else None

    def close(self) -> None:
        if self.store is not None:
            self.store.close()

    def release_freed_mappings(self) -> None:
        """Unmap cached objects that were freed meanwhile (a worker calls this after a task)."""
        if self.store is not None:
            self.store.prune_read_cache()

    # ---- writing -----------------------------------------------------------------------

    def write(self, object_id: str, serialized: SerializedObject) -> int:
        assert self.store is not None
        return self.store.write(object_id, serialized, self.make_room)

    def make_room(self, needed: int, incoming: int) -> None:
        assert self.store is not None and self.node_id is not None
        spilling.make_room(self.store, self._redis, self.node_id, needed, incoming)

    # ---- reading -----------------------------------------------------------------------

    def read(self, object_id: str, node: str, size: int) -> memoryview:
        """Map a stored object (pulling it to this node first if it lives elsewhere)."""
        unreachable: dict[str, str] = {}  # node -> why its transfer server could not be reached
        for _ in range(_ATTEMPTS):  # a fresh copy may be evicted before we map it: retry
            view = self._read_once(object_id, node, unreachable)
            if view is not None:
                return view
        if unreachable:
            raise ObjectLostError(
                f"Object {object_id} ({size} bytes) could not be fetched: "
                + "; ".join(f"cannot reach node {n} at {why}" for n, why in unreachable.items())
                + ". Check that the nodes' advertised addresses (REDRAY_NODE_IP, `redray start "
                "--node-ip-address`) are reachable from this host."
            )
        raise ObjectLostError(
            f"Object {object_id} ({size} bytes) is no longer in the object store of node "
            f"{node}, nor anywhere else; it was freed, or the node died."
        )

    def _read_once(
        self, object_id: str, node: str, unreachable: dict[str, str]
    ) -> memoryview | None:
        store = self.store
        if store is None:  # a driver without a node on this machine
            return self._read_without_store(object_id, node, unreachable)
        try:
            return store.read(object_id)
        except FileNotFoundError:
            pass
        restored = spilling.restore(store, object_id, self.make_room)
        if restored is not None:
            return restored
        for source in self._sources(object_id, node):
            view = self._pull_from(source, object_id, unreachable)
            if view is not None:
                return view
        return None

    def _sources(self, object_id: str, primary: str) -> list[str]:
        others = sorted(n.decode() for n in self._redis.smembers(keys.obj_locations(object_id)))
        return [n for n in [primary, *others] if n and n != self.node_id]

    def _pull_from(
        self, source: str, object_id: str, unreachable: dict[str, str]
    ) -> memoryview | None:
        assert self.store is not None
        address = self._transfer_address(source)
        if address is None:
            return None
        with self.store.object_lock(object_id):
            try:
                return self.store.read(object_id)  # another process pulled it meanwhile
            except FileNotFoundError:
                pass
            try:
                if not transfer.pull(address, object_id, self.store, self.make_room):
                    return None
            except OSError as error:
                logger.warning("redray: pulling %s from %s failed: %s", object_id, source, error)
                unreachable[source] = f"{_host_port(address)}: {_reason(error)}"
                return None
            self._commands.call("obj_add_location", object_id, self.node_id)
            try:
                return self.store.read(object_id)
            except FileNotFoundError:
                return None

    def _read_without_store(
        self, object_id: str, node: str, unreachable: dict[str, str]
    ) -> memoryview | None:
        local = store_directory(node)
        if local.is_dir():
            try:
                return map_pinned(local / object_id)
            except FileNotFoundError:
                pass
        for source in [node, *self._sources(object_id, node)]:
            address = self._transfer_address(source)
            try:
                view = transfer.fetch(address, object_id) if address else None
            except OSError as error:
                unreachable[source] = f"{_host_port(address or '')}: {_reason(error)}"
                continue
            if view is not None:
                return view
        return None

    def _transfer_address(self, node_id: str) -> str | None:
        state = self._nodes.get(node_id)
        if state is not None and state.extra.get("transfer"):
            return state.extra["transfer"]
        return recorded_transfer_address(self._redis, node_id)

    # ---- freeing -----------------------------------------------------------------------

    def delete_freed(self, freed: Freed) -> None:
        delete_files(freed, self.node_id, self.store, self._transfer_address)


def _host_port(address: str) -> str:
    """host:port of a transfer address ("token@host:port"), without its secret token."""
    return address.rpartition("@")[2]


def _reason(error: OSError) -> str:
    return (error.strerror or str(error) or type(error).__name__).lower()


def recorded_transfer_address(client: redis.Redis, node_id: str) -> str | None:
    """The transfer server of a node, from its node record."""
    record = client.hget(keys.NODES, node_id)
    return json.loads(record).get("transfer") if record else None


def delete_files(
    freed: Freed,
    node_id: str | None,
    store: SharedMemoryStore | None,
    transfer_address: Callable[[str], str | None],
) -> None:
    """Delete the files of freed objects on every node that holds a copy: directly in
    `store` (this node's), through their transfer servers elsewhere."""
    for object_id, nodes in freed:
        for node in nodes:
            if node == node_id and store is not None:
                store.delete(object_id)
                continue
            address = transfer_address(node)
            try:
                if address is None:
                    raise OSError("no transfer server")
                transfer.request_free(address, object_id)
            except OSError:
                # The node is gone (its store went with it), or shares this machine.
                SharedMemoryStore(store_directory(node)).delete(object_id)
