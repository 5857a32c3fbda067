"""Futures of ObjectRefs (`ref.future()`, `await ref`) without a thread per ref.

A future registers a callback on the process's ObjectTable; the callback runs in whichever
thread commits the entry (normally the one NotificationReader) and only hands the future
to the `FutureResolver` thread, which turns entries into values (deserializing, mapping
or pulling large objects) and completes the futures: asyncio futures in one
`call_soon_threadsafe` per event loop and batch, not one per ref. So `asyncio.gather`
over 10,000 refs costs a callback and a future per ref, and two threads in all: the
reader and the resolver. Objects this process does not own are watched in batches by the
resolver too, so creating a future never waits for Redis in the caller's (event loop)
thread. An object already here with its value inline is completed at once by the caller.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from redray.object_ref import ObjectRef

if TYPE_CHECKING:
    from redray.client.core import CoreClient

logger = logging.getLogger(__name__)

#: How many borrowed objects one watch_objects call registers at most.
_WATCH_BATCH = 1000
#: How many waiters the resolver takes from its inbox at once.
_RESOLVE_BATCH = 10_000

AnyFuture = concurrent.futures.Future | asyncio.Future


class _Waiter:
    """One future of one ref: `loop` is set for asyncio futures, `want_value` is False for
    futures that only say the object is committed (streaming generators use those)."""

    __slots__ = ("ref", "future", "loop", "want_value")

    def __init__(self, ref: ObjectRef, future: AnyFuture, loop: Any, want_value: bool) -> None:
        self.ref = ref
        self.future = future
        self.loop = loop
        self.want_value = want_value


class FutureResolver:
    """Completes the futures of this process's refs once their objects are committed."""

    def __init__(self, client: CoreClient) -> None:
        self._client = client
        #: Waiters whose objects are committed, and borrowed object ids to watch (str).
        self._inbox: queue.SimpleQueue[_Waiter | str | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()

    def value_future(self, ref: ObjectRef) -> concurrent.futures.Future:
        """A concurrent future resolved with the ref's value, or the error get() raises."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._register(_Waiter(ref, future, None, True))
        return future

    def asyncio_future(self, ref: ObjectRef) -> asyncio.Future:
        """An asyncio future of the ref's value on the running loop (what `await ref` uses)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._register(_Waiter(ref, future, loop, True))
        return future

    def ready_future(self, ref: ObjectRef) -> asyncio.Future:
        """An asyncio future resolved with None once the ref's object is committed.

        Cancelling it also forgets its callback: a streaming generator cancels the one of
        an item that never comes when its stream ends."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        callback = self._register(_Waiter(ref, future, loop, False))
        if callback is not None:
            objects, object_id = self._client.objects, ref.hex()
            future.add_done_callback(
                lambda done: done.cancelled() and objects.remove_callback(object_id, callback)
            )
        return future

    def _register(self, waiter: _Waiter) -> Callable[[], None] | None:
        """Complete the waiter now, or when its object is committed (then returns the
        callback that will)."""
        client = self._client
        object_id = waiter.ref.hex()
        objects = client.objects
        with objects.lock:
            entry = objects.get(object_id)
            if entry is None:
                callback = _hand_over(self._inbox, waiter)
                objects.add_callback(object_id, callback)
                borrowed = object_id not in client.owned_pending
        if entry is not None:
            if entry.kind == "s":  # may need a pull from another node: not in this thread
                self._inbox.put(waiter)
                self._ensure_thread()
            else:
                _complete(waiter, *self._outcome(waiter))
            return None
        if borrowed:
            self._inbox.put(object_id)
        client.ensure_reader()
        self._ensure_thread()
        return callback

    def _ensure_thread(self) -> None:
        if self._thread is None:
            with self._thread_lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="redray-futures", daemon=True
                    )
                    self._thread.start()

    def close(self) -> None:
        if self._thread is not None:
            self._inbox.put(None)
            self._thread.join(timeout=2)

    def _run(self) -> None:
        while True:
            batch = [self._inbox.get()]
            try:
                while len(batch) < _RESOLVE_BATCH:
                    batch.append(self._inbox.get_nowait())
            except queue.Empty:
                pass
            to_watch = [item for item in batch if isinstance(item, str)]
            if to_watch:
                self._watch(to_watch)
            by_loop: dict[Any, list[tuple[_Waiter, Any, BaseException | None]]] = {}
            for item in batch:
                if item is None:
                    return
                if not isinstance(item, _Waiter):
                    continue
                try:
                    if item.loop is None:
                        _complete(item, *self._outcome(item))
                    elif not item.future.done():  # not cancelled meanwhile
                        by_loop.setdefault(item.loop, []).append((item, *self._outcome(item)))
                except Exception:  # one broken waiter must not stop the others' futures
                    logger.exception("redray: could not complete the future of %s", item.ref)
            for loop, outcomes in by_loop.items():
                try:
                    loop.call_soon_threadsafe(_complete_all, outcomes)
                except RuntimeError:  # that event loop is closed: nobody is waiting
                    pass

    def _outcome(self, waiter: _Waiter) -> tuple[Any, BaseException | None]:
        """(value, None), or (None, the error get() would raise)."""
        if not waiter.want_value:
            return None, None
        try:
            return self._client.materialize(waiter.ref.hex()), None
        except BaseException as error:  # the future carries whatever get() would raise
            return None, error

    def _watch(self, object_ids: list[str]) -> None:
        """Register for borrowed objects; those already committed call back at once."""
        try:
            self._client.batcher.flush()
            for start in range(0, len(object_ids), _WATCH_BATCH):
                self._client.fetch_committed(object_ids[start : start + _WATCH_BATCH])
        except Exception:  # the futures stay pending, as get() would (it raises instead)
            logger.exception("redray: could not watch objects for their futures")


def _hand_over(inbox: queue.SimpleQueue, waiter: _Waiter) -> Callable[[], None]:
    # Runs in the committing thread, under the object table's lock: only a hand-over.
    return lambda: inbox.put(waiter)


def _complete(waiter: _Waiter, value: Any, error: BaseException | None) -> None:
    future = waiter.future
    if isinstance(future, concurrent.futures.Future):
        if not future.set_running_or_notify_cancel():
            return  # cancelled
    elif future.done():
        return  # an asyncio future cancelled (asyncio.wait_for timed out, for one)
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


def _complete_all(outcomes: list[tuple[_Waiter, Any, BaseException | None]]) -> None:
    """Runs in an event loop's thread: complete that loop's futures of one batch."""
    for waiter, value, error in outcomes:
        _complete(waiter, value, error)
