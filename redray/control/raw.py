"""A dedicated Redis connection driven without redis-py's per-command machinery.

redis-py's client spends tens of microseconds of CPU per call (pool checkout, retries,
response callbacks, observability hooks). The hot paths (submitting tasks, reading
notifications, committing results) batch their own commands, so they send them packed on
one connection and read the raw replies. Every such connection (the write batcher, the
notification reader, a worker's result writer, an actor's mailbox loop, a daemon's queue
reader) is a RawConnection.
"""

from __future__ import annotations

import select
import socket
from typing import Any

import redis

Command = tuple[Any, ...]


class RawConnection:
    def __init__(self, client: redis.Redis) -> None:
        self._connection = client.connection_pool.make_connection()

    def send(self, commands: list[Command]) -> None:
        self._connection.send_packed_command(self._connection.pack_commands(commands))

    def drop_if_closed(self) -> bool:
        """If the server closed the connection (Redis died or restarted), drop it, so that
        the next write goes to a new connection rather than into a dead socket where it
        would be lost. True if it was dropped (with any replies still owed on it)."""
        sock = self._connection._sock
        if sock is None:
            return False
        # Poll first: a socket with a timeout waits up to that timeout inside recv() before
        # MSG_DONTWAIT is even looked at, so peeking an idle connection would stall.
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False  # open, nothing to read
        try:
            closed = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            closed = True  # reset
        if closed:
            self._connection.disconnect()
        return closed

    def read(self, count: int) -> list[Any]:
        """The next `count` replies; an error reply is returned, not raised."""
        replies: list[Any] = []
        for _ in range(count):
            try:
                replies.append(self._connection.read_response())
            except redis.ResponseError as error:
                replies.append(error)
        return replies

    def reply(self) -> Any:
        """The next reply; raises an error reply."""
        return self._connection.read_response()

    def execute(self, commands: list[Command]) -> list[Any]:
        """Send and read; raises the first error reply."""
        self.send(commands)
        replies = self.read(len(commands))
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    def fileno(self) -> int:
        """The socket's descriptor, to wait for a reply together with other sockets."""
        return self._connection._sock.fileno()

    def reply_ready(self) -> bool:
        """Whether the next reply can be read without waiting (it may already be buffered,
        where select() on the socket cannot see it)."""
        return self._connection.can_read(timeout=0)

    def close(self) -> None:
        self._connection.disconnect()

    def reconnect(self) -> None:
        """A new connection to the server, dropping the old one and any replies owed on it."""
        self._connection.disconnect()
        self._connection.connect()

    def socket(self) -> socket.socket:
        """The connected socket (a new object after each reconnect)."""
        return self._connection._sock


def stream_entries(reply: Any) -> list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]:
    """XREAD/XREADGROUP replies as [(stream, [(entry id, fields)])], whatever their shape."""
    if not reply:
        return []
    streams = reply.items() if isinstance(reply, dict) else reply
    result = []
    for name, entries in streams:
        parsed = []
        for entry_id, fields in entries:
            if not isinstance(fields, dict):
                pairs = iter(fields or [])
                fields = dict(zip(pairs, pairs))
            parsed.append((entry_id, fields))
        result.append((name, parsed))
    return result
