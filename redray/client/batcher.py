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

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import redis

from redray.control import reconnect
from redray.control.raw import Command, RawConnection

logger = logging.getLogger(__name__)

#: Outstanding replies are read once there are this many (bounds memory on both sides).
_READ_AT = 1024
#: A connection idle this long is checked (one poll, ~4 us) before a write: Redis may have
#: closed it meanwhile, and a write into it would be lost.
_IDLE_CHECK = 0.05


class WriteBatcher:
    def __init__(self, client: redis.Redis) -> None:
        self._connection = RawConnection(client)
        self._where = client.connection_pool.connection_kwargs
        self._lock = threading.RLock()
        self._unread = 0
        self._busy = False
        #: Writes made re-entrantly (by a __del__ that garbage collection ran in the middle
        #: of our own send or read); they go out right after it.
        self._deferred: list[Command] = []
        #: Callbacks for the replies of some outstanding writes, by their position.
        self._callbacks: deque[tuple[int, Callable[[Any], None]]] = deque()
        self._sent = 0
        self._replied = time.monotonic()  # when replies were last read
        #: Counts the connections replaced: writes made in an older generation went to a
        #: connection that broke (to a Redis that may have restarted empty since).
        self.generation = 0

    def add(self, *command: object, on_reply: Callable[[Any], None] | None = None) -> None:
        """Send one Redis command now, e.g. add("XADD", key, "*", "s", payload); `on_reply`
        gets its reply when replies are read."""
        with self._lock:
            if on_reply is not None:
                self._callbacks.append((self._sent + len(self._deferred) + 1, on_reply))
            if self._busy:
                self._deferred.append(command)
                return
            self._busy = True
            try:
                self._send([command])
                if self._unread >= _READ_AT:
                    self._read_replies()
            finally:
                self._busy = False

    def flush(self) -> None:
        """Wait until every write so far has been applied; raises the first error."""
        if not self._unread and not self._deferred:
            return
        with self._lock:
            if self._busy:
                return  # re-entered: the outer call finishes the work
            self._busy = True
            try:
                self._send([])
                self._read_replies()
            finally:
                self._busy = False

    def close(self) -> None:
        try:
            self.flush()
        except redis.RedisError:
            pass
        self._connection.close()

    def _send(self, commands: list[Command]) -> None:
        if commands and time.monotonic() - self._replied > _IDLE_CHECK:
            if self._connection.drop_if_closed():
                self.generation += 1
                if self._unread:
                    self._lost_replies(self._unread, self._sent - self._unread + 1, "closed")
                    self._unread = 0
        while True:
            if commands:
                self._send_now(commands)
                self._unread += len(commands)
                self._sent += len(commands)
            if not self._deferred:
                return
            commands, self._deferred = self._deferred, []

    def _send_now(self, commands: list[Command]) -> None:
        try:
            self._connection.send(commands)
        except reconnect.CONNECTION_ERRORS as error:
            # The replies still owed on the broken connection will never come; these
            # commands were not (all) written: send them on a new connection, which the
            # client's retry policy makes (control/reconnect.py), or raise its error.
            if self._unread:
                self._lost_replies(self._unread, self._sent - self._unread + 1, error)
                self._unread = 0
            self._send_on_new_connection(commands, error)

    def _send_on_new_connection(self, commands: list[Command], error: BaseException) -> None:
        """Retry on new connections with backoff, for the grace period at most."""
        outage = reconnect.Outage(reconnect.describe(self._where))
        while True:
            self._connection.close()
            self.generation += 1
            if outage.failed():
                raise outage.error(error) from error
            try:
                self._connection.send(commands)
                return
            except reconnect.CONNECTION_ERRORS as again:
                error = again
                time.sleep(outage.backoff.next_delay())

    def _lost_replies(self, count: int, first: int, error: BaseException | str) -> None:
        """The connection broke before `count` replies came: those writes may or may not
        have landed. The next write reconnects (retrying for the grace period); their
        readers wait for results as usual, and fail clearly if Redis stays unreachable."""
        self._connection.close()
        self.generation += 1
        while self._callbacks and self._callbacks[0][0] < first + count:
            self._callbacks.popleft()
        logger.warning(
            "redray: lost the connection to Redis with %d write(s) unconfirmed: %s", count, error
        )

    def _read_replies(self) -> None:
        while self._unread:
            count, self._unread = self._unread, 0
            first = self._sent - count + 1  # the position of the first reply read now
            try:
                replies = self._connection.read(count)
            except reconnect.CONNECTION_ERRORS as error:
                self._lost_replies(count, first, error)
                return
            self._replied = time.monotonic()
            while self._callbacks and self._callbacks[0][0] < first + count:
                position, callback = self._callbacks.popleft()
                callback(replies[position - first])
            self._send([])  # anything deferred while reading
            failures = [reply for reply in replies if isinstance(reply, Exception)]
            if failures:
                raise failures[0]
