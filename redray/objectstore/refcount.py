"""Distributed reference counting: free an object once no ObjectRef to it exists anywhere.

Owner-based, as in Ray, kept simple:

* Each process counts its live ObjectRef instances per object (object_ref._RefTracker).
* The owner (the process that created the ref: `put`, or submitting the task) releases the
  object when its local count drops to 0 (operation 'o').
* Any other process holding a ref is a borrower: its first local ref registers a borrow
  ('+', field b of the object's entry), its last drop releases it ('-').
* A ref serialized into a stored object (a `put` value, a task's return value) is borrowed
  by that object ('c'); freeing the outer object releases it.
* A ref passed to a task (directly, or inside an inline argument) is kept alive by the
  submitter until the task's result is committed (CoreClient._task_refs), and the worker
  registers its own borrows before it commits, so nothing a task uses is freed under it.
* An owner's release of a result that is not committed yet waits for the commit.

The Lua command `obj_refs` applies a batch of these operations atomically and returns the
stored objects it freed; the process that freed them deletes their files (directly on its
own node, through the node's transfer server elsewhere).

`__del__` may run at any point of any thread, so dropping a ref only appends to a deque. A
releaser thread sends the queued operations every few milliseconds while drops keep coming
(and sleeps when they stop), through the client's pipelined writer: in order after the
writes they follow, with no round trip to wait for. `flush(wait=True)` runs synchronously
where freeing must be prompt (before storing a large object).
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis

from redray.control.scripts import Commands

if TYPE_CHECKING:
    from redray.client.batcher import WriteBatcher

logger = logging.getLogger(__name__)

#: How often queued releases are sent while refs keep being dropped.
_TICK_SECONDS = 0.02

#: Freed stored objects: (object id, [nodes holding a copy, primary first]).
Freed = list[tuple[str, list[str]]]


class ReferenceCounter:
    def __init__(
        self,
        commands: Commands,
        is_pending: Callable[[str], bool],
        writer: WriteBatcher,
        delete_freed: Callable[[Freed], None],
    ) -> None:
        self._commands = commands
        self._writer = writer
        #: Pairs "is the result still pending?" with its commit (see committed()).
        self._defer_lock = threading.Lock()
        self._is_pending = is_pending
        self._delete_freed = delete_freed
        self._ops: collections.deque[tuple[Any, ...]] = collections.deque()
        self._owned: set[str] = set()
        self._release_on_commit: set[str] = set()
        self._send_lock = threading.Lock()
        self._wake: queue.SimpleQueue[bool] = queue.SimpleQueue()  # reentrant: safe in __del__
        self._awake = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="redray-refs", daemon=True)
        self._thread.start()

    # ---- events (cheap, callable from __del__) -------------------------------------------

    def own(self, object_id: str) -> None:
        """This process creates `object_id` and its first ref: it is the owner."""
        self._owned.add(object_id)

    def owned_ids(self) -> set[str]:
        return set(self._owned)

    def on_first_ref(self, object_id: str) -> None:
        if object_id not in self._owned:
            self._push(("+", object_id))

    def on_last_ref(self, object_id: str) -> None:
        if object_id in self._owned:
            self._owned.discard(object_id)
            self._push(("o", object_id))
        else:
            self._push(("-", object_id))

    def contain(self, object_id: str, inner_ids: list[str]) -> None:
        """The stored object `object_id` holds refs to `inner_ids`: they stay alive with it."""
        self._push(("c", object_id, len(inner_ids), *inner_ids))

    def committed(self, object_id: str) -> None:
        """Called once an owned result is committed (after is_pending turned False)."""
        with self._defer_lock:
            if object_id not in self._release_on_commit:
                return
            self._release_on_commit.discard(object_id)
        self._push(("o", object_id))

    def _push(self, op: tuple[Any, ...]) -> None:
        self._ops.append(op)
        if not self._awake:
            self._awake = True
            self._wake.put(True)

    # ---- sending -----------------------------------------------------------------------

    @property
    def pending(self) -> bool:
        return bool(self._ops)

    def flush(self, wait: bool = False) -> None:
        """Send the queued operations (in order); with `wait`, also delete what they freed
        before returning, including what another thread's flush in progress frees."""
        with self._send_lock:
            flat: list[Any] = []
            while self._ops:
                op = self._ops.popleft()
                if op[0] == "o":
                    with self._defer_lock:
                        if self._is_pending(op[1]):
                            self._release_on_commit.add(op[1])
                            continue
                flat.extend(op)
            if flat:
                command = self._commands.raw("obj_refs", *flat)
                self._writer.add(*command, on_reply=self._on_freed)
            if wait:
                self._writer.flush()

    def _on_freed(self, freed: Any) -> None:
        if freed and not isinstance(freed, Exception):
            self._delete_freed(parse_freed(freed))
        elif isinstance(freed, Exception):
            logger.error("redray: releasing object references failed: %s", freed)

    def _run(self) -> None:
        while not self._closed:
            self._wake.get()
            # While drops keep coming, send them in batches every few milliseconds; after a
            # whole tick without any, sleep until the next drop wakes us.
            while not self._closed:
                threading.Event().wait(_TICK_SECONDS)
                had_ops = bool(self._ops)
                try:
                    self.flush(wait=True)
                except redis.RedisError as error:
                    if not self._closed:
                        logger.error("redray: releasing object references failed: %s", error)
                except Exception:  # never let the releaser die
                    logger.exception("redray: releasing object references failed")
                if not had_ops:
                    break
            self._awake = False
            if self._ops and not self._awake:  # a drop raced with going to sleep
                self._awake = True
                self._wake.put(True)

    def close(self) -> None:
        self._closed = True
        self._wake.put(True)
        self._thread.join(timeout=2)
        try:
            self.flush(wait=True)
        except redis.RedisError:
            pass


def parse_freed(reply: list[list[bytes]]) -> Freed:
    """The freed objects a Lua command (obj_refs, owner_died) returned."""
    return [(_text(f[0]), [_text(n) for n in f[1:]]) for f in reply]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
