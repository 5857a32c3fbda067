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

`__del__` may run at any point of any thread, so dropping a ref only appends to a deque and
wakes a thread; the Redis calls happen in `flush()`, which also runs synchronously where
freeing must be prompt (before storing a large object, before committing task results).
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

import redis

from redray.control.scripts import Commands

logger = logging.getLogger(__name__)

#: Freed stored objects: (object id, [nodes holding a copy, primary first]).
Freed = list[tuple[str, list[str]]]


class ReferenceCounter:
    def __init__(
        self,
        commands: Commands,
        is_pending: Callable[[str], bool],
        before_send: Callable[[], None],
        delete_freed: Callable[[Freed], None],
    ) -> None:
        self._commands = commands
        #: Pairs "is the result still pending?" with its commit (see committed()).
        self._defer_lock = threading.Lock()
        self._is_pending = is_pending
        self._before_send = before_send
        self._delete_freed = delete_freed
        self._ops: collections.deque[tuple[Any, ...]] = collections.deque()
        self._owned: set[str] = set()
        self._release_on_commit: set[str] = set()
        self._send_lock = threading.Lock()
        self._wake: queue.SimpleQueue[bool] = queue.SimpleQueue()  # reentrant: safe in __del__
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="redray-refs", daemon=True)
        self._thread.start()

    # ---- events (cheap, callable from __del__) -------------------------------------------

    def own(self, object_id: str) -> None:
        """This process creates `object_id` and its first ref: it is the owner."""
        self._owned.add(object_id)

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
        if len(self._ops) == 1:
            self._wake.put(True)

    # ---- sending -----------------------------------------------------------------------

    @property
    def pending(self) -> bool:
        return bool(self._ops)

    def flush(self) -> None:
        """Send the queued operations (in order) and delete what they freed."""
        if not self._ops:
            return
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
            if not flat:
                return
            self._before_send()  # the writes these operations follow (puts) go first
            freed = self._commands.call("obj_refs", *flat)
        if freed:
            self._delete_freed([(_text(f[0]), [_text(n) for n in f[1:]]) for f in freed])

    def _run(self) -> None:
        while True:
            self._wake.get()
            if self._closed:
                return
            threading.Event().wait(0.001)  # let a burst of drops share one round trip
            try:
                self.flush()
            except redis.RedisError as error:
                if not self._closed:
                    logger.error("redray: releasing object references failed: %s", error)
            except Exception:  # never let the releaser die
                logger.exception("redray: releasing object references failed")

    def close(self) -> None:
        self._closed = True
        self._wake.put(True)
        self._thread.join(timeout=2)
        try:
            self.flush()
        except redis.RedisError:
            pass


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
