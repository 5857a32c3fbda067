"""The one background reader of a process's readiness notifications.

Every result and watched object this process waits for is announced on its own stream
(`notify:<client_id>`), which commit_objects writes in the same atomic step as the object.
A stream rather than pub/sub, so that nothing is lost while the reader is busy; each read
also trims what the previous read consumed. The same blocking read follows node events,
so the node cache refreshes when nodes join or leave, and cached entries of borrowed
objects are dropped when some owner dies (the next get reads them again).

A lost connection is retried with backoff (control/reconnect.py) for as long as it takes;
once it has lasted the grace period, every waiter of the process raises
RedisUnreachableError, until a read succeeds again.
"""

from __future__ import annotations

import logging
import select
import threading
import time
from typing import TYPE_CHECKING

import redis

from redray.client.node_loss import LastNodeWatch
from redray.client.node_view import REFRESH_SECONDS
from redray.client.store_reset import check_after_reconnect, current_epoch
from redray.control import keys, reconnect
from redray.control.entry import Entry
from redray.control.raw import RawConnection, stream_entries
from redray.exceptions import RaySystemError

if TYPE_CHECKING:
    from redray.client.core import CoreClient

logger = logging.getLogger(__name__)

_BLOCK_MS = 1000
_BATCH = 1000
#: How long a blocking read's reply may take before the connection counts as lost.
_REPLY_TIMEOUT = _BLOCK_MS / 1000 + reconnect.SOCKET_TIMEOUT


class NotificationReader(threading.Thread):
    def __init__(self, client: CoreClient) -> None:
        super().__init__(name="redray-notifications", daemon=True)
        self._client = client
        self._redis = reconnect.client(client.redis_kwargs, retry=False)
        self._connection = RawConnection(self._redis)
        self._stream = keys.notify(client.client_id)
        self._stopping = False
        self._outage = reconnect.Outage(reconnect.describe(client.redis_kwargs))
        self._last_seen = "0-0"
        self._last_event: str | None = None
        self._last_node = LastNodeWatch(client)
        self._last_reply = time.monotonic()

    def stop(self) -> None:
        self._stopping = True
        try:
            self._client.redis.xadd(self._stream, {"stop": 1})
        except redis.RedisError:
            pass
        self.join(timeout=2)
        self._connection.close()
        self._redis.close()

    def abandon(self) -> None:
        """Stop trying to reconnect (the process is done with an unreachable Redis)."""
        self._stopping = True

    def run(self) -> None:
        while not self._stopping:
            try:
                self._loop()
                return
            except reconnect.CONNECTION_ERRORS as error:
                if not self._stopping:
                    self._on_lost_connection(error)
            except Exception as error:  # a bug here must not leave every waiter hanging
                self._client.objects.fail(
                    RaySystemError(f"redray's notification reader failed: {error!r}")
                )
                raise

    def _on_lost_connection(self, error: BaseException) -> None:
        """Wait a backoff delay before the next attempt; past the grace period, wake every
        waiter of this process with the error."""
        self._connection.close()
        if self._outage.since is None:
            self._outage.since = self._last_reply  # the outage began after the last reply
            logger.warning("redray: lost the connection to %s (%s); reconnecting",
                           self._outage.where, error)  # fmt: skip
        if self._outage.failed() and self._client.objects.failure is None:
            logger.error("redray: %s", self._outage.error(error))
            self._client.objects.fail(self._outage.error(error))
        time.sleep(self._outage.backoff.next_delay())

    def _on_reconnected(self) -> None:
        self._last_reply = time.monotonic()
        if self._outage.since is not None:
            logger.warning("redray: reconnected to %s", self._outage.where)
            check_after_reconnect(self._client, current_epoch(self._redis))
            self._outage.recovered()
            self._client.objects.fail(None)

    def _execute_serving_direct_calls(self, commands: list[tuple]) -> list:
        """Send, then read the replies; while Redis has not answered the last (blocking)
        command, read the answers of direct actor calls (client/direct_calls.py)."""
        self._connection.send(commands)
        replies = self._connection.read(len(commands) - 1)
        direct = self._client.direct
        redis_socket = self._connection.fileno()
        deadline = time.monotonic() + _REPLY_TIMEOUT
        while not self._connection.reply_ready():
            left = deadline - time.monotonic()
            if left <= 0:
                raise redis.TimeoutError(f"no reply from Redis in {_REPLY_TIMEOUT:g} s")
            ready, _, _ = select.select([redis_socket, *direct.sockets()], [], [], left)
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
        if self._last_event is None:
            newest_event = self._redis.xrevrange(keys.NODE_EVENTS, count=1)
            self._last_event = newest_event[0][0] if newest_event else "0-0"
        last_seen, last_event = self._last_seen, self._last_event
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
            self._on_reconnected()
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
                        last_seen = self._last_seen = entry_id
                        if b"stop" in fields:
                            return
                        entry = Entry.from_fields(
                            fields[b"k"], fields[b"s"], fields[b"n"], fields[b"d"]
                        )
                        client.on_committed(fields[b"o"].decode(), entry)
                else:
                    last_event = self._last_event = entries[-1][0]
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
            self._last_node.check()
