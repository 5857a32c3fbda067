"""Moving objects between nodes: each node runs a small transfer server next to its daemon.

The node daemon must stay free of threads (it forks workers), so the server is a process of
its own, forked by the daemon at boot (`fork_server`), dying with it (PR_SET_PDEATHSIG).
The daemon records "transfer": "<token>@host:port" in its node record: the server answers
only requests that carry its random token, which only processes that can read the
cluster's Redis (so already trusted with everything) know.

Protocol, one request per connection, a line of ASCII: a verb, an argument, the token.

    GET <object id>   ->  u64 size (2**64-1 if absent), then the sealed file, sent from the
                          store (or the node's spill directory) with sendfile: no copy in
                          user space on the sending side
    FREE <object id>  ->  "OK\\n" once the object's files on that node are deleted (a large
                          one goes to the node's pool of free files, segments.py)
    STATS 0           ->  how many objects it has sent, as a line (for tests)

A request without the right token gets the connection closed, unanswered.

The receiving side (`pull`) reserves the object's size in its own store (in a freed file
if one fits, whose pages need no allocating) and receives straight into a mapping of it,
so the object is never held twice in memory; the rename that seals it makes it visible.
"""

from __future__ import annotations

import hmac
import mmap
import os
import re
import secrets
import signal
import socket
import socketserver
import struct
import threading
from pathlib import Path

from redray.objectstore.shm_store import MakeRoom, SharedMemoryStore

_SIZE = struct.Struct("<Q")
_MISSING = 2**64 - 1
_CHUNK = 8 << 20
_OBJECT_ID = re.compile(r"[0-9a-f]{1,128}")
#: How long a pull may wait for the next chunk before the peer is considered gone.
_TIMEOUT_SECONDS = 60.0


# ---- the server ------------------------------------------------------------------------


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        request = _read_line(self.request).split()
        if len(request) != 3 or not _OBJECT_ID.fullmatch(request[1]):
            return
        verb, object_id, token = request
        if not hmac.compare_digest(token.encode(), self.server.token.encode()):
            return
        if verb == "GET":
            self._send(object_id)
        elif verb == "STATS":  # for tests: how many objects this server has sent
            self.request.sendall(f"{self.server.sent}\n".encode())
        elif verb == "FREE":
            self.server.store.delete(object_id)
            self.request.sendall(b"OK\n")

    def _send(self, object_id: str) -> None:
        store = self.server.store
        for path in (store.path(object_id), store.spill_path(object_id)):
            try:
                fd = os.open(path, os.O_RDONLY)
            except (FileNotFoundError, NotADirectoryError):
                continue
            try:
                size = os.fstat(fd).st_size
                self.request.sendall(_SIZE.pack(size))
                offset = 0
                while offset < size:
                    sent = os.sendfile(
                        self.request.fileno(), fd, offset, min(_CHUNK, size - offset)
                    )
                    if sent == 0:
                        return
                    offset += sent
                with self.server.lock:
                    self.server.sent += 1
            finally:
                os.close(fd)
            return
        self.request.sendall(_SIZE.pack(_MISSING))


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True

    def __init__(self, listening: socket.socket, store: SharedMemoryStore, token: str) -> None:
        super().__init__(listening.getsockname(), _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = listening
        self.store = store
        self.token = token
        self.sent = 0
        self.lock = threading.Lock()


def fork_server(store_dir: str, host: str) -> tuple[int, str]:
    """Fork a node's transfer server; returns its pid and its address, "token@host:port".

    Called by the node daemon at boot, while it has no threads (forking is then safe, and
    takes milliseconds where a fresh interpreter would take a few hundred). The socket is
    bound before the fork, so the address is known at once.
    """
    listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listening.bind((host, 0))
    except OSError:  # the node's address is not bindable here: listen everywhere
        listening.bind(("0.0.0.0", 0))
    listening.listen(128)
    port = listening.getsockname()[1]
    token = secrets.token_hex(16)
    pid = os.fork()
    if pid == 0:  # the server: never returns into the daemon's code
        code = 0
        try:
            keep = listening.fileno()
            os.closerange(3, keep)  # the daemon's sockets, pipes and selector are not ours
            os.closerange(keep + 1, os.sysconf("SC_OPEN_MAX"))
            _die_with_parent()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            store = SharedMemoryStore(Path(store_dir), pool=True)
            _Server(listening, store, token).serve_forever()
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    listening.close()
    return pid, f"{token}@{host}:{port}"


def stop_server(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def _die_with_parent() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:
        os._exit(0)


# ---- clients ---------------------------------------------------------------------------


def pull(address: str, object_id: str, store: SharedMemoryStore, make_room: MakeRoom) -> bool:
    """Copy one object from the node at `address` into `store`; False if it has none.

    The caller holds the object's lock (see SharedMemoryStore.object_lock).
    """
    with _request(address, "GET", object_id) as sock:
        (size,) = _SIZE.unpack(_recv_exact(sock, _SIZE.size))
        if size == _MISSING:
            return False
        with store.recycled_file(object_id, size) as view:
            if view is not None:
                _receive_into(sock, view, address)
                return True
        reservation = store.reserve(object_id, size, make_room)
        try:
            if size:
                with mmap.mmap(reservation.fd, size) as mapping:
                    view = memoryview(mapping)
                    try:
                        _receive_into(sock, view, address)
                    finally:
                        view.release()
        except BaseException:
            reservation.abort()
            raise
        reservation.seal()
        return True


def fetch(address: str, object_id: str) -> memoryview | None:
    """Read one object from the node at `address` into this process's memory (for a
    process that has no store of its own); None if that node has no copy."""
    with _request(address, "GET", object_id) as sock:
        (size,) = _SIZE.unpack(_recv_exact(sock, _SIZE.size))
        if size == _MISSING:
            return None
        view = memoryview(bytearray(size))
        _receive_into(sock, view, address)
        return view.toreadonly()


def _receive_into(sock: socket.socket, view: memoryview, address: str) -> None:
    """Fill `view` from the socket in chunks, straight into its memory."""
    received, size = 0, view.nbytes
    while received < size:
        count = sock.recv_into(view[received:], min(_CHUNK, size - received))
        if count == 0:
            raise ConnectionError(f"{address} closed during a transfer")
        received += count


def objects_sent(address: str) -> int:
    """How many objects the server at `address` has sent (STATS; used by tests)."""
    with _request(address, "STATS", "0") as sock:
        return int(_read_line(sock))


def request_free(address: str, object_id: str) -> None:
    """Ask a node to delete its copies of a freed object (and wait until it has)."""
    with _request(address, "FREE", object_id) as sock:
        _read_line(sock)


def _request(address: str, verb: str, argument: str) -> socket.socket:
    """A connection to the server at "token@host:port" that has sent one request."""
    token, _, host_port = address.rpartition("@")
    host, _, port = host_port.rpartition(":")
    sock = socket.create_connection((host, int(port)), timeout=_TIMEOUT_SECONDS)
    sock.sendall(f"{verb} {argument} {token}\n".encode())
    return sock


def _recv_exact(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("transfer connection closed")
        data += chunk
    return data


def _read_line(sock: socket.socket) -> str:
    data = b""
    while not data.endswith(b"\n") and len(data) < 300:
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip()
