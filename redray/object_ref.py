"""ObjectRef: a future for a value in the object store."""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any

from redray import ids, session
from redray.objectstore.serialization import note_contained_ref


class ObjectRef:
    """A reference to an object (a task's return value or a `put`).

    Any process holding the ref can `redray.get` it. Refs count as uses of the object: the
    process that created it tracks how many ObjectRef instances are alive.
    """

    __slots__ = ("_id", "_owner", "__weakref__")

    def __init__(self, object_id: str, owner: str = "", *, _track: bool = True) -> None:
        self._id = object_id
        self._owner = owner
        if _track:
            _tracker.incref(self)

    def hex(self) -> str:
        return self._id

    def binary(self) -> bytes:
        return bytes.fromhex(self._id)

    def task_id(self) -> str:
        return ids.task_id_of(self._id)

    def owner_id(self) -> str:
        return self._owner

    def __repr__(self) -> str:
        return f"ObjectRef({self._id})"

    def __hash__(self) -> int:
        return hash(self._id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectRef) and other._id == self._id

    def __reduce__(self) -> tuple:
        note_contained_ref(self)
        return (ObjectRef, (self._id, self._owner))

    def __del__(self) -> None:
        try:
            _tracker.decref(self._id)
        except Exception:  # interpreter shutdown: module globals may be gone
            pass

    def future(self) -> concurrent.futures.Future:
        """A concurrent.futures.Future resolved with the value (or the error get() raises).

        Completed by the process's notification reader and one resolver thread, never a
        thread per ref (client/ref_futures.py)."""
        return session.current_client().futures.value_future(self)

    def as_future(self) -> asyncio.Future:
        """An asyncio future of the value, on the running event loop."""
        return session.current_client().futures.asyncio_future(self)

    def __await__(self) -> Any:
        return self.as_future().__await__()


class _RefTracker:
    """Counts live ObjectRef instances per object id in this process.

    The client installs hooks: it learns when the first ref to an id appears in this
    process (a borrow, unless the process owns it) and when the last one is gone (to report
    an error nobody fetched, and to release the object).
    """

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.on_first = None  # Callable[[str], None] | None
        self.on_zero = None  # Callable[[str], None] | None

    def incref(self, ref: ObjectRef) -> None:
        count = self.counts.get(ref._id, 0)
        self.counts[ref._id] = count + 1
        if count == 0 and self.on_first is not None:
            self.on_first(ref._id)

    def decref(self, object_id: str) -> None:
        count = self.counts.get(object_id)
        if count is None:  # untracked, or counted by a client that has closed since
            return
        if count > 1:
            self.counts[object_id] = count - 1
            return
        self.counts.pop(object_id, None)
        if self.on_zero is not None:
            self.on_zero(object_id)


_tracker = _RefTracker()
