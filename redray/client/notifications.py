"""The one background reader of a process's readiness notifications.

Every result and watched object this process waits for is announced on its own stream
(`notify:<client_id>`), which commit_objects writes in the same atomic step as the object.
A stream rather than pub/sub, so that nothing is lost while the reader is busy; each read
also trims what the previous read consumed. The same blocking read follows node events,
so the node cache refreshes when nodes join or leave, and cached entries of borrowed
objects are dropped when some owner dies (the next get reads them again).
"""

from __future__ import annotations

import logging
import select
import threading
import time
from typing import TYPE_CHECKING

import redis

from redray.client.node_view import REFRESH_SECONDS
from redray.control import keys
from redray.control.entry import Entry
from redray.control.raw import RawConnection, stream_entries

if TYPE_CHECKING:
    from redray.client.core import CoreClient

logger = logging.getLogger(__name__)

_BLOCK_MS = 1000
_BATCH = 1000


class NotificationReader(threading.Thread):
    def __init__(self, client: CoreClient) -> None:
        super().__init__(name="redray-notifications", daemon=True)
        self._client = client
        self._redis = redis.Redis(**client.redis_kwargs)
        self._connection = RawConnection(self._redis)
        self._stream = keys.notify(client.client_id)
        self._stopping = False

    def stop(self) -> None:
        self._stopping = True
        try:
            self._client.redis.xadd(self._stream, {"stop": 1})
        except redis.RedisError:
            pass
        self.join(timeout=2)
        self._connection.close()
        self._redis.close()

    def run(self) -> None:
        try:
            self._loop()
        except redis.ConnectionError:
            if not self._stopping:
                logger.error("redray: lost the connection to Redis; notifications stopped")

    def _execute_serving_direct_calls(self, commands: list[tuple]) -> list:
        """Send, then read the replies; while Redis has not answered the last (blocking)
        command, read the answers of direct actor calls (client/direct_calls.py)."""
        self._connection.send(commands)
        replies = self._connection.read(len(commands) - 1)
        direct = self._client.direct
        redis_socket = self._connection.fileno()
        while not self._connection.reply_ready():
            ready, _, _ = select.select([redis_socket, *direct.sockets()], [], [])
            for sock in ready:
                if sock != redis_socket:
                    direct.on_readable(sock)
        replies += self._connection.read(1)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    def _loop(self) -> None:
        client = self._client
        last_seen = "0-0"
        newest_event = self._redis.xrevrange(keys.NODE_EVENTS, count=1)
        last_event = newest_event[0][0] if newest_event else "0-0"
        refreshed = time.monotonic()
        # The driver's job's worker output (client/worker_logs.py), read by the same XREAD.
        printer = client.worker_logs
        log_stream = keys.logs(client.job_id) if printer is not None else None
        last_log = "0-0"
        while not self._stopping:
            commands: list[tuple] = []
            if last_seen != "0-0":
                commands.append(("XTRIM", self._stream, "MINID", last_seen))
            names, ids = [self._stream, keys.NODE_EVENTS], [last_seen, last_event]
            if log_stream is not None:
                names.append(log_stream)
                ids.append(last_log)
            commands.append(("XREAD", "COUNT", _BATCH, "BLOCK", _BLOCK_MS, "STREAMS", *names, *ids))
            replies = self._execute_serving_direct_calls(commands)
            streams = stream_entries(replies[-1])
            # Output first: a task's lines are printed before its result wakes get().
            streams.sort(key=lambda stream: stream[0].decode() != log_stream)
            for name, entries in streams:
                if name.decode() == log_stream:
                    assert printer is not None
                    last_log = entries[-1][0]
                    printer.on_entries(entries)
                elif name.decode() == self._stream:
                    for entry_id, fields in entries:
                        last_seen = entry_id
                        if b"stop" in fields:
                            return
                        entry = Entry.from_fields(
                            fields[b"k"], fields[b"s"], fields[b"n"], fields[b"d"]
                        )
                        client.on_committed(fields[b"o"].decode(), entry)
                else:
                    last_event = entries[-1][0]
                    if any(fields.get(b"event") == b"owner_died" for _, fields in entries):
                        client.forget_borrowed_entries()
                    client.nodes.refresh()
                    refreshed = time.monotonic()
                    client.retry_infeasible()
            if printer is not None:
                printer.on_idle()
            if time.monotonic() - refreshed > REFRESH_SECONDS * 5:
                client.nodes.refresh()
                refreshed = time.monotonic()
                client.retry_infeasible()
