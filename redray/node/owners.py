"""Releasing the objects of client processes of this node that died.

Every client process (driver or worker) registers itself in the clients table with its pid
and node, and in its node's set of clients (CoreClient), so a daemon reads only its own. A
process that exits cleanly unregisters; one that crashed, or was killed (an actor by
`kill()`), stays registered with a pid that no longer exists. The node daemon looks for
those (among the processes of its node that share its pid namespace: a pid means nothing
across containers) when one of its workers exits and on each heartbeat, and runs
`owner_died` for each: their objects are freed, or turned into OwnerDiedError for the
processes that borrowed them (see commands.lua).
"""

from __future__ import annotations

import json
import logging

import psutil
import redis

from redray.control import keys
from redray.control.scripts import Commands
from redray.ids import pid_namespace
from redray.objectstore.local_objects import delete_files, recorded_transfer_address
from redray.objectstore.refcount import parse_freed
from redray.objectstore.shm_store import SharedMemoryStore

logger = logging.getLogger(__name__)


class OwnerReaper:
    def __init__(
        self, client: redis.Redis, commands: Commands, node_id: str, store: SharedMemoryStore
    ) -> None:
        self._redis = client
        self._commands = commands
        self._node_id = node_id
        self._store = store

    def release_dead(self) -> None:
        """Run owner_died for each registered client of this node whose process is gone."""
        members = sorted(self._redis.smembers(keys.node_clients(self._node_id)))
        records = self._redis.hmget(keys.CLIENTS, members) if members else []
        for client_id, record in zip(members, records):
            if record is None:  # unregistered meanwhile
                continue
            try:
                client = json.loads(record)
            except ValueError:
                continue
            mine = client.get("node") == self._node_id and client.get("pidns") == pid_namespace()
            if mine and not psutil.pid_exists(client["pid"]):
                self.release(client_id.decode())

    def release(self, client_id: str) -> None:
        freed = parse_freed(self._commands.call("owner_died", client_id) or [])
        if freed:
            logger.info("redray: freed %d objects of dead process %s", len(freed), client_id)
        delete_files(
            freed,
            self._node_id,
            self._store,
            lambda node: recorded_transfer_address(self._redis, node),
        )
