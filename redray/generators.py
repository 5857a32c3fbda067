"""Generator tasks: refs to items that arrive while the task is still running.

A streaming generator task commits its i-th item as object `<task id><i>` (i >= 1) the
moment it is yielded, and at the end an end-of-stream object (index 0) holding the item
count, or the error that stopped it. The caller's ObjectRefGenerator hands out the i-th ref
as soon as item i, or the end, is committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

from redray import ids, session
from redray.object_ref import ObjectRef

STREAM_END_INDEX = 0


def item_id(task_id: str, index: int) -> str:
    return ids.object_id_for(task_id, index)


class ObjectRefGenerator:
    """What a streaming generator task returns: iterate it (or `async for`) to get refs."""

    def __init__(self, task_id: str, owner: str) -> None:
        self._task_id = task_id
        self._owner = owner
        self._next_index = 1
        self._end = ObjectRef(item_id(task_id, STREAM_END_INDEX), owner)
        self._length: int | None = None
        #: `async for`: one future of the end of the stream, shared by every __anext__.
        self._end_waiter: asyncio.Future | None = None

    def __iter__(self) -> ObjectRefGenerator:
        return self

    def __next__(self) -> ObjectRef:
        return self._next(timeout=None)

    def _next(self, timeout: float | None) -> ObjectRef:
        from redray.exceptions import RayError

        index = self._next_index
        if self._length is not None and index > self._length:
            raise StopIteration
        # The caller owns the items: dropping its ref to one frees it (refcount.py).
        client = session.current_client()
        candidate_id = item_id(self._task_id, index)
        client.refs.own(candidate_id)
        candidate = ObjectRef(candidate_id, self._owner)
        ready = client.wait([candidate_id, self._end.hex()], 1, timeout)
        if not any(ready):
            raise TimeoutError(f"item {index} of generator task {self._task_id} not ready yet")
        if not ready[0]:
            try:
                self._length = int(client.get([self._end.hex()], None)[0])
            except RayError:
                # Cancelled or crashed before its last item: the next item is that error
                # (as in Ray), and the stream ends after it.
                self._length = index
                self._next_index += 1
                return self._end
            if index > self._length:
                raise StopIteration
        self._next_index += 1
        return candidate

    def __aiter__(self) -> ObjectRefGenerator:
        return self

    async def __anext__(self) -> ObjectRef:
        # Wait for "item i or the end" on the event loop, completed from the notification
        # reader (client/ref_futures.py): no thread per generator or per item.
        client = session.current_client()
        client.refs.own(item_id(self._task_id, self._next_index))  # as _next() does
        candidate = ObjectRef(item_id(self._task_id, self._next_index), self._owner)
        end = self._end_waiter
        if end is None or end.get_loop() is not asyncio.get_running_loop():
            end = self._end_waiter = client.futures.ready_future(self._end)
        item = client.futures.ready_future(candidate)
        try:
            await asyncio.wait([item, end], return_when=asyncio.FIRST_COMPLETED)
        finally:
            item.cancel()
        try:
            return self._next(timeout=0)
        except StopIteration:
            raise StopAsyncIteration from None

    def end_ref(self) -> ObjectRef:
        """The object committed when the stream ends (its count, or the task's failure)."""
        return self._end

    def ready_ids(self) -> list[str]:
        """The objects of which any one being committed makes the next next() return at
        once: the next item, or the end of the stream (what wait() on a generator uses)."""
        return [item_id(self._task_id, self._next_index), self._end.hex()]

    def completed(self) -> ObjectRef:
        """A ref that is ready when the task has finished."""
        return self._end

    def task_id(self) -> str:
        return self._task_id

    def __repr__(self) -> str:
        return f"ObjectRefGenerator(task {self._task_id})"


class DynamicObjectRefGenerator:
    """The value of a `num_returns="dynamic"` task: a list of refs, one per yielded item."""

    def __init__(self, refs: list[ObjectRef]) -> None:
        self._refs = refs

    def __iter__(self) -> Iterator[ObjectRef]:
        return iter(self._refs)

    def __len__(self) -> int:
        return len(self._refs)

    def __reduce__(self) -> tuple[Any, ...]:
        return (DynamicObjectRefGenerator, (self._refs,))
