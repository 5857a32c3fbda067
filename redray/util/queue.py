"""A first-in, first-out queue shared by tasks and actors, as Ray's `ray.util.queue`.

The items live in an async actor holding an `asyncio.Queue`: a blocked `get` is a
suspended call in that actor, woken by the next `put`, so waiting costs no polling. A
`Queue` pickles as its actor handle, so passing it to tasks and actors shares the queue.

Example::

    from redray.util.queue import Queue, Empty

    q = Queue(maxsize=100)
    q.put(1)
    q.get(timeout=5)
"""

from __future__ import annotations

import asyncio
import queue
from collections.abc import Iterable
from typing import Any

from redray import api
from redray.decorators import remote

__all__ = ["Empty", "Full", "Queue"]


class Empty(queue.Empty):
    """Raised by get() on an empty queue (at once, or after its timeout)."""


class Full(queue.Full):
    """Raised by put() on a full queue (at once, or after its timeout)."""


class Queue:
    """A FIFO queue backed by an actor; `maxsize=0` means unbounded.

    `actor_options` go to the queue actor's `.options()` (resources, name, ...)."""

    def __init__(self, maxsize: int = 0, actor_options: dict[str, Any] | None = None) -> None:
        self.maxsize = maxsize
        self.actor: Any = remote(_QueueActor).options(**(actor_options or {})).remote(maxsize)

    def __len__(self) -> int:
        return self.size()

    def size(self) -> int:
        """How many items the queue holds."""
        return api.get(self.actor.qsize.remote())

    def qsize(self) -> int:
        """How many items the queue holds."""
        return self.size()

    def empty(self) -> bool:
        return api.get(self.actor.empty.remote())

    def full(self) -> bool:
        return api.get(self.actor.full.remote())

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Add `item`, waiting up to `timeout` seconds (None: forever) for room when
        `block`; raises Full when there is none."""
        if not block:
            try:
                api.get(self.actor.put_nowait.remote(item))
            except asyncio.QueueFull:
                raise Full from None
            return
        _check_timeout(timeout)
        api.get(self.actor.put.remote(item, timeout))

    async def put_async(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """put() for coroutines: waits without blocking the event loop."""
        if not block:
            try:
                await self.actor.put_nowait.remote(item)
            except asyncio.QueueFull:
                raise Full from None
            return
        _check_timeout(timeout)
        await self.actor.put.remote(item, timeout)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Remove and return the oldest item, waiting up to `timeout` seconds (None:
        forever) for one when `block`; raises Empty when there is none."""
        if not block:
            try:
                return api.get(self.actor.get_nowait.remote())
            except asyncio.QueueEmpty:
                raise Empty from None
        _check_timeout(timeout)
        return api.get(self.actor.get.remote(timeout))

    async def get_async(self, block: bool = True, timeout: float | None = None) -> Any:
        """get() for coroutines: waits without blocking the event loop."""
        if not block:
            try:
                return await self.actor.get_nowait.remote()
            except asyncio.QueueEmpty:
                raise Empty from None
        _check_timeout(timeout)
        return await self.actor.get.remote(timeout)

    def put_nowait(self, item: Any) -> None:
        """put(item, block=False)."""
        return self.put(item, block=False)

    def put_nowait_batch(self, items: Iterable[Any]) -> None:
        """Add all `items` in order, or none of them (Full) if they do not all fit."""
        if not isinstance(items, Iterable):
            raise TypeError("Argument 'items' must be an Iterable")
        api.get(self.actor.put_nowait_batch.remote(list(items)))

    def get_nowait(self) -> Any:
        """get(block=False)."""
        return self.get(block=False)

    def get_nowait_batch(self, num_items: int) -> list[Any]:
        """The `num_items` oldest items in order, or Empty if there are fewer."""
        if not isinstance(num_items, int):
            raise TypeError("Argument 'num_items' must be an int")
        if num_items < 0:
            raise ValueError("'num_items' must be nonnegative")
        return api.get(self.actor.get_nowait_batch.remote(num_items))

    def shutdown(self, force: bool = False, grace_period_s: int = 5) -> None:
        """End the queue's actor: gracefully (killed after `grace_period_s` seconds if it
        has not exited), or at once with `force=True`."""
        if self.actor:
            if force:
                api.kill(self.actor, no_restart=True)
            else:
                done = self.actor.__ray_terminate__.remote()
                _, not_done = api.wait([done], timeout=grace_period_s)
                if not_done:
                    api.kill(self.actor, no_restart=True)
        self.actor = None


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and timeout < 0:
        raise ValueError("'timeout' must be a non-negative number")


class _QueueActor:
    """Holds the items. Its methods raise asyncio.QueueFull/QueueEmpty, Full or Empty, which
    reach the caller as instances of the same class."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.queue: asyncio.Queue = asyncio.Queue(maxsize)

    def qsize(self) -> int:
        return self.queue.qsize()

    def empty(self) -> bool:
        return self.queue.empty()

    def full(self) -> bool:
        return self.queue.full()

    async def put(self, item: Any, timeout: float | None = None) -> None:
        try:
            await asyncio.wait_for(self.queue.put(item), timeout)
        except asyncio.TimeoutError:
            raise Full from None

    async def get(self, timeout: float | None = None) -> Any:
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except asyncio.TimeoutError:
            raise Empty from None

    def put_nowait(self, item: Any) -> None:
        self.queue.put_nowait(item)

    def put_nowait_batch(self, items: list[Any]) -> None:
        if self.maxsize > 0 and len(items) + self.qsize() > self.maxsize:
            raise Full(
                f"Cannot add {len(items)} items to queue of size {self.qsize()} "
                f"and maxsize {self.maxsize}."
            )
        for item in items:
            self.queue.put_nowait(item)

    def get_nowait(self) -> Any:
        return self.queue.get_nowait()

    def get_nowait_batch(self, num_items: int) -> list[Any]:
        if num_items > self.qsize():
            raise Empty(f"Cannot get {num_items} items from queue of size {self.qsize()}.")
        return [self.queue.get_nowait() for _ in range(num_items)]
