"""Pipelined writes: every write goes out at once, and its reply is read later.

Submissions, puts, exports and actor calls are written to one dedicated connection the
moment they are made, without waiting for Redis's reply; the replies are read in bulk when
a reader needs the writes to have landed (`flush()`, before get/wait and before a result
that refers to them is committed), or when many are outstanding. So a task starts as soon
as it is submitted, a burst of submissions costs one syscall each and no round trips, and
no background thread has to be woken to send anything. Writes keep their order, so a put
is always visible before the task that uses it.
"""

from __future__ import annotations

import threading

import redis

from redray.control.raw import RawConnection

#: Outstanding replies are read once there are this many (bounds memory on both sides).
_READ_AT = 1024


class WriteBatcher:
    def __init__(self, client: redis.Redis) -> None:
        self._connection = RawConnection(client)
        self._lock = threading.Lock()
        self._unread = 0

    def add(self, *command: object) -> None:
        """Send one Redis command now, e.g. add("XADD", key, "*", "s", payload)."""
        with self._lock:
            self._connection.send([command])
            self._unread += 1
            if self._unread >= _READ_AT:
                self._read_replies()

    def flush(self) -> None:
        """Wait until every write so far has been applied; raises the first error."""
        if not self._unread:
            return
        with self._lock:
            self._read_replies()

    def close(self) -> None:
        try:
            self.flush()
        except redis.RedisError:
            pass
        self._connection.close()

    def _read_replies(self) -> None:
        count, self._unread = self._unread, 0
        for reply in self._connection.read(count):
            if isinstance(reply, Exception):
                raise reply
