"""The local pipe between a node daemon and one of its workers (and between a caller and an
actor of its node, client/direct_calls.py): pickled tuples, framed."""

from __future__ import annotations

import pickle
import socket
import struct
import threading
from typing import Any

_LENGTH = struct.Struct("!I")


class Channel:
    """Messages over a connected Unix socket; send is safe from several threads."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._send_lock = threading.Lock()
        self._buffer = bytearray()

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, message: tuple[Any, ...]) -> None:
        data = pickle.dumps(message, protocol=5)
        with self._send_lock:
            self.sock.sendall(_LENGTH.pack(len(data)) + data)

    def recv(self) -> tuple[Any, ...]:
        """Block for one message; EOFError when the other side is gone."""
        while True:
            message = self._take()
            if message is not None:
                return message
            self._fill()

    def recv_ready(self) -> list[tuple[Any, ...]]:
        """Read what the socket has now (call when it is readable); EOFError on close."""
        self._fill()
        messages = []
        while (message := self._take()) is not None:
            messages.append(message)
        return messages

    def close(self) -> None:
        self.sock.close()

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise EOFError("channel closed")
        self._buffer += chunk

    def _take(self) -> tuple[Any, ...] | None:
        if len(self._buffer) < _LENGTH.size:
            return None
        (length,) = _LENGTH.unpack_from(self._buffer)
        end = _LENGTH.size + length
        if len(self._buffer) < end:
            return None
        message = pickle.loads(memoryview(self._buffer)[_LENGTH.size : end])
        del self._buffer[:end]
        return message
