"""An in-order actor's socket for calls from processes of its node (client/direct_calls.py).

One thread accepts connections on an abstract Unix socket (no file to clean up; it goes
with the process) and serves the calls that arrive, one at a time under the actor's
execution lock, so they never overlap with calls from the mailbox. For each call it sends
the result entries to the caller, then commits them to Redis (for the processes the caller
shares the refs with). Only the last answered call can lack its commit if the actor dies;
the caller commits that one itself when it sees the socket close.

Before running a call it writes the call's task id into a small shared-memory marker file
that callers map when they connect: a caller that loses the socket reads it to tell the
call that was running when the actor died (retried only under max_task_retries) from
calls the actor never started (sent again through the mailbox). The node daemon deletes
the marker when the actor's process is gone.
"""

from __future__ import annotations

import logging
import mmap
import os
import selectors
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from redray.control.channel import Channel
from redray.control.direct_marker import MARKER_BYTES
from redray.control.raw import RawConnection
from redray.task_spec import TaskSpec

logger = logging.getLogger(__name__)

#: run(spec) -> (reply message, what makes the commit's commands).
RunCall = Callable[[TaskSpec], tuple[tuple[Any, ...], Callable[[], list[tuple[Any, ...]]]]]


class DirectCallServer(threading.Thread):
    """Listens from construction (callers may connect as soon as the actor registers);
    answers calls once `start_serving()` is called, after the actor recovered its mailbox."""

    def __init__(self, address: str, marker: Path) -> None:
        super().__init__(name="redray-direct-calls", daemon=True)
        fd = os.open(marker, os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o600)
        try:
            os.ftruncate(fd, MARKER_BYTES)
            self._marker = mmap.mmap(fd, MARKER_BYTES)
        finally:
            os.close(fd)
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind("\0" + address)
        self._listener.listen(128)
        self._listener.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._stop_reader, self._stop_writer = socket.socketpair()
        self._selector.register(self._stop_reader, selectors.EVENT_READ)
        self._run: RunCall | None = None
        self._cancel: Callable[[str], None] | None = None
        self._redis: RawConnection | None = None

    def start_serving(
        self, run: RunCall, cancel: Callable[[str], None], redis_connection: RawConnection
    ) -> None:
        self._run = run
        self._cancel = cancel
        self._redis = redis_connection
        self.start()

    def close(self) -> None:
        """Refuse calls: the actor never started (its callers see the socket close)."""
        self._listener.close()

    def finish(self) -> None:
        """Serve the calls already received, then stop (the actor is ending)."""
        self._stop_writer.send(b"x")
        self.join()

    def run(self) -> None:
        while True:
            for key, _ in self._selector.select():
                if key.fileobj is self._stop_reader:
                    self._drain()
                    return
                if key.fileobj is self._listener:
                    self._accept()
                else:
                    self._receive(key.data)

    def _accept(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except BlockingIOError:
            return
        conn.setblocking(True)
        self._selector.register(conn, selectors.EVENT_READ, Channel(conn))

    def _receive(self, channel: Channel) -> None:
        try:
            messages = channel.recv_ready()
        except (EOFError, OSError):  # the caller is gone
            self._selector.unregister(channel.sock)
            channel.close()
            return
        self._serve_all(channel, messages)

    def _serve_all(self, channel: Channel, messages: list[tuple[Any, ...]]) -> None:
        """Serve the calls received, after the cancels among them (a call they name is
        then skipped: it has not started)."""
        assert self._cancel is not None
        for kind, payload in messages:
            if kind == "cancel":
                self._cancel(payload)
        for kind, payload in messages:
            if kind == "call":
                self._serve_call(channel, payload)

    def _serve_call(self, channel: Channel, spec: TaskSpec) -> None:
        assert self._run is not None and self._redis is not None
        self._marker[:MARKER_BYTES] = spec.task_id.encode().ljust(MARKER_BYTES, b"\0")
        reply, make_commit = self._run(spec)
        try:
            channel.send(reply)
        except OSError:
            pass  # the caller is gone; its result is committed all the same
        commands = make_commit()
        if not commands:
            return
        self._redis.send(commands)
        for failed in [r for r in self._redis.read(len(commands)) if isinstance(r, Exception)]:
            logger.error("redray: committing the result of %s failed: %s", spec.name, failed)

    def _drain(self) -> None:
        """Serve what callers sent before the actor was told to end."""
        for key in list(self._selector.get_map().values()):
            if isinstance(key.data, Channel):
                self._serve_all(key.data, _received_now(key.data))


def _received_now(channel: Channel) -> list[tuple[Any, ...]]:
    """The messages a connection has received so far, without waiting for more."""
    messages: list[tuple[Any, ...]] = []
    channel.sock.setblocking(False)
    try:
        while True:
            messages += channel.recv_ready()
    except (BlockingIOError, EOFError, OSError):
        pass
    channel.sock.setblocking(True)
    return messages
