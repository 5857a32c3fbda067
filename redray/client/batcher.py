"""Write-behind batching: many small writes share one pipelined round trip.

Submissions, puts and exports are queued here and sent together when a reader needs them
(`flush()` before get/wait), when the queue is long, or a moment after the first write,
whichever comes first. Writes keep their order, so a put is always visible before the task
that uses it.
"""

from __future__ import annotations

import logging
import threading
import redis

from redray.control.raw import Command, RawConnection

logger = logging.getLogger(__name__)

_FLUSH_AT = 256
_LINGER_SECONDS = 0.0005


class WriteBatcher:
    def __init__(self, client: redis.Redis) -> None:
        self._connection = RawConnection(client)
        self._queue: list[Command] = []
        self._queue_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="redray-writer", daemon=True)
        self._thread.start()

    def add(self, *command: object) -> None:
        """Queue one Redis command, e.g. add("XADD", key, "*", "s", payload)."""
        with self._queue_lock:
            self._queue.append(command)
            length = len(self._queue)
        if length >= _FLUSH_AT:
            self.flush()
        elif length == 1:
            self._wake.set()

    def flush(self) -> None:
        with self._send_lock:
            with self._queue_lock:
                commands, self._queue = self._queue, []
            if commands:
                self._connection.execute(commands)

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self._thread.join(timeout=2)
        try:
            self.flush()
        except redis.RedisError:
            pass
        self._connection.close()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait()
            self._wake.clear()
            if self._closed:
                return
            threading.Event().wait(_LINGER_SECONDS)
            try:
                self.flush()
            except redis.RedisError as error:
                if not self._closed:
                    logger.error("redray: background write to Redis failed: %s", error)
