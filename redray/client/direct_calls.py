"""Calls to an actor on this process's node go over a Unix socket, not through Redis.

Why: a call through the actor's mailbox crosses Redis twice (the caller's XADD, the actor's
commit and its notification), each a wake-up of another process on a busy machine. An
in-order actor also listens on an abstract Unix socket (worker/direct_server.py) and
publishes its address in the actor table; a caller on the same node sends it the call
spec, and the actor answers on the same socket with the result entries. The actor also
commits every result to Redis (just after answering), so other processes that borrow the refs
see them as usual; only the caller's own notification is skipped.

Order: a caller's calls to one actor run in the order it submitted them as long as they
travel one path, so a caller moves to the socket only when none of its mailbox calls to
that actor is pending, and never goes back while the socket is up.

Failure: when the socket closes (the actor died or was killed), the caller commits the
last answer it got (the actor commits each call just after answering it, so only that one
can be missing), and looks up in Redis the calls it had no answer for. Those not committed
are sent again through the mailbox (which waits for the restarted actor, or fails them if
the actor is dead), except the one the actor's marker says was running when it died: that
one is sent again only if the actor has max_task_retries, else it fails with
ActorDiedError, as a call taken from the mailbox would.

Replies are read by the process's notification reader thread (client/notifications.py),
which waits on these sockets together with Redis.
"""

from __future__ import annotations

import json
import logging
import mmap
import os
import pickle
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import redis

from redray.control import keys, results
from redray.control.channel import Channel
from redray.control.direct_marker import MARKER_BYTES, read_marker
from redray.control.entry import Entry
from redray.exceptions import ActorDiedError
from redray.task_spec import TaskSpec

if TYPE_CHECKING:
    from redray.client.core import CoreClient

logger = logging.getLogger(__name__)

#: How often a caller looks again for the address of a live actor it cannot reach directly
#: (on another node, or threaded or async): its node and kind only change if it restarts.
_LOOKUP_SECONDS = 1.0


@dataclass
class _Pending:
    spec: TaskSpec
    dead_error: bytes


@dataclass
class ActorLink:
    """This process's socket to one actor, and the calls sent on it not answered yet."""

    actor_id: str
    channel: Channel
    max_task_retries: int
    #: The actor's marker of the call it started last (worker/direct_server.py).
    started: mmap.mmap
    pending: dict[str, _Pending] = field(default_factory=dict)
    closed: bool = False
    #: The last call answered: the actor commits it after answering (see _lost).
    last_answered: tuple[TaskSpec, list[tuple[str, Entry]]] | None = None


def _map_marker(path: str) -> mmap.mmap:
    fd = os.open(path, os.O_RDONLY)
    try:
        return mmap.mmap(fd, MARKER_BYTES, access=mmap.ACCESS_READ)
    finally:
        os.close(fd)


class DirectCalls:
    def __init__(self, client: CoreClient) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._links: dict[str, ActorLink] = {}
        self._by_socket: dict[int, ActorLink] = {}
        self._next_lookup: dict[str, float] = {}
        #: Per actor, the return ids of this process's last call through the mailbox.
        self._last_mailbox_call: dict[str, list[str]] = {}
        #: The reader thread waits on this too, to start watching a new link.
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)

    # ---- submitting (any thread) --------------------------------------------------------

    def send(self, actor_id: str, spec: TaskSpec, dead_error: bytes) -> bool:
        """Send a call directly if this process can; False means: use the mailbox."""
        link = self._link_for(actor_id)
        if link is None:
            self._last_mailbox_call[actor_id] = list(spec.return_ids)
            return False
        with self._lock:
            if link.closed:  # lost meanwhile: the mailbox path handles the actor's state
                self._last_mailbox_call[actor_id] = list(spec.return_ids)
                return False
            link.pending[spec.task_id] = _Pending(spec, dead_error)
        try:
            link.channel.send(("call", spec))
        except OSError:
            pass  # the reader sees the socket close and settles the call
        return True

    def _link_for(self, actor_id: str) -> ActorLink | None:
        link = self._links.get(actor_id)
        if link is not None:
            return link
        client = self._client
        if client.node_id is None or self._mailbox_busy(actor_id):
            return None
        now = time.monotonic()
        if now < self._next_lookup.get(actor_id, 0.0):
            return None
        state, node, address = client.redis.hmget(keys.actor(actor_id), "state", "node", "direct")
        if state != b"alive":  # not started yet (or restarting): look again at the next call
            return None
        if not address or node is None or node.decode() != client.node_id:
            self._next_lookup[actor_id] = now + _LOOKUP_SECONDS
            return None
        record = json.loads(address)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            started = _map_marker(record["marker"])
            sock.connect("\0" + record["address"])
        except OSError:
            sock.close()
            return None
        link = ActorLink(actor_id, Channel(sock), record["max_task_retries"], started)
        with self._lock:
            self._links[actor_id] = link
            self._by_socket[sock.fileno()] = link
        self._wake_writer.send(b"x")
        return link

    def _mailbox_busy(self, actor_id: str) -> bool:
        last = self._last_mailbox_call.get(actor_id)
        if last is None:
            return False
        if not last:  # a call without results: no way to see it finish, stay on the mailbox
            return True
        return any(object_id in self._client.owned_pending for object_id in last)

    def send_cancel(self, actor_id: str, task_id: str) -> None:
        """Tell the actor (if this process talks to it directly) not to start a call."""
        link = self._links.get(actor_id)
        if link is not None:
            try:
                link.channel.send(("cancel", task_id))
            except OSError:
                pass

    def unlink(self, actor_id: str) -> None:
        """Stop sending calls over the socket of an actor this process just had killed, so
        that the next ones meet its death in the mailbox rather than a process about to be
        killed. Calls already sent are still answered or settled as usual."""
        with self._lock:
            link = self._links.pop(actor_id, None)
            if link is not None:
                link.closed = True

    def is_linked(self, actor_id: str) -> bool:
        """Whether this process's calls to the actor go over its socket now."""
        return actor_id in self._links

    # ---- the reader thread --------------------------------------------------------------

    def sockets(self) -> list[socket.socket]:
        with self._lock:  # unlinked sockets too: their calls are still answered
            return [self._wake_reader, *(link.channel.sock for link in self._by_socket.values())]

    def on_readable(self, sock: socket.socket) -> None:
        if sock is self._wake_reader:
            try:
                self._wake_reader.recv(4096)
            except BlockingIOError:
                pass
            return
        link = self._by_socket.get(sock.fileno())
        if link is None:
            return
        try:
            messages = link.channel.recv_ready()
        except (EOFError, OSError):
            self._lost(link)
            return
        for _, task_id, committed in messages:
            with self._lock:
                call = link.pending.pop(task_id, None)
            entries = [(object_id, Entry(*entry)) for object_id, entry in committed]
            if call is not None:
                link.last_answered = (call.spec, entries)
            for object_id, entry in entries:
                self._client.on_committed(object_id, entry)

    def _lost(self, link: ActorLink) -> None:
        """The actor's socket closed: settle every call it had not answered."""
        with self._lock:
            link.closed = True
            if self._links.get(link.actor_id) is link:
                del self._links[link.actor_id]
            self._by_socket.pop(link.channel.sock.fileno(), None)
            unanswered = list(link.pending.values())
            link.pending.clear()
        link.channel.close()
        running = read_marker(link.started)
        link.started.close()
        if link.last_answered is not None:
            self._commit_answered(*link.last_answered)
        for call in unanswered:
            try:
                self._settle(link, call, was_running=call.spec.task_id == running)
            except redis.RedisError as error:
                logger.error("redray: settling call %s failed: %s", call.spec.task_id, error)

    def _settle(self, link: ActorLink, call: _Pending, was_running: bool) -> None:
        """An unanswered call: committed after all, sent again through the mailbox (never
        started, or retries allowed), or failed with ActorDiedError."""
        client, spec = self._client, call.spec
        committed = client.fetch_committed(list(spec.return_ids))
        missing = [o for o in spec.return_ids if o not in committed]
        if not missing and spec.return_ids:
            return  # the actor committed it before it died
        if not was_running or link.max_task_retries != 0:
            payload = pickle.dumps(spec, protocol=5)
            args = (link.actor_id, spec.task_id, client.client_id, payload, call.dead_error)
            client.commands.call("actor_call", *args, *spec.return_ids)
            return
        error = ActorDiedError(
            f"The actor {link.actor_id} died while running {spec.name}, and its calls are not "
            "retried (max_task_retries=0).",
            actor_id=link.actor_id,
        )
        client.commit_error(spec.task_id, list(spec.return_ids), error, final_state="finished")

    def _commit_answered(self, spec: TaskSpec, answered: list[tuple[str, Entry]]) -> None:
        """Commit a call's answer in case the actor died before it did (once per task)."""
        client = self._client
        pipe = client.redis.pipeline(transaction=False)
        results.commit_entries(
            client.commands, pipe, spec.task_id, client.client_id,
            [object_id for object_id, _ in answered], [entry for _, entry in answered],
            notify_owner=False,
        )  # fmt: skip
        pipe.execute()

    def close(self) -> None:
        with self._lock:
            links = list(self._by_socket.values())
            self._links.clear()
            self._by_socket.clear()
        for link in links:
            link.channel.close()
        self._wake_reader.close()
        self._wake_writer.close()
