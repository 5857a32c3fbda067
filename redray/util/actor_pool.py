"""ActorPool: run work over a fixed set of actors, as Ray's `ray.util.ActorPool`.

Each actor runs one submitted item at a time: an item waits in the pool until an actor is
idle, and an actor becomes idle again when its result is taken with get_next() or
get_next_unordered() (not merely when it finishes), as in Ray.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from redray import api
from redray.exceptions import ActorDiedError

#: fn(actor, value) -> an ObjectRef (or a list of them) computing the result.
Work = Callable[[Any, Any], Any]

_TIMEOUT_MESSAGE = "Timed out waiting for result"


class ActorPool:
    """A pool of actor handles that results are computed on.

    Example::

        pool = ActorPool([Doubler.remote(), Doubler.remote()])
        list(pool.map(lambda actor, v: actor.double.remote(v), [1, 2, 3]))  # [2, 4, 6]
    """

    def __init__(self, actors: Iterable[Any]) -> None:
        self._idle_actors: list[Any] = list(actors)
        #: Submitted and not yet returned: result key -> (submission index, actor).
        self._future_to_actor: dict[Any, tuple[int, Any]] = {}
        self._index_to_future: dict[int, Any] = {}
        self._next_task_index = 0
        self._next_return_index = 0
        #: Items waiting for an idle actor, in submission order.
        self._pending_submits: list[tuple[Work, Any]] = []

    def map(self, fn: Work, values: Iterable[Any]) -> Iterator[Any]:
        """Results of fn(actor, value) for every value, in the order of `values`.

        Results still pending from earlier submissions are discarded first."""
        self._discard_pending(self.get_next)
        for value in values:
            self.submit(fn, value)
        return self._results(self.get_next)

    def map_unordered(self, fn: Work, values: Iterable[Any]) -> Iterator[Any]:
        """Like map(), but each result as soon as it is ready."""
        self._discard_pending(self.get_next_unordered)
        for value in values:
            self.submit(fn, value)
        return self._results(self.get_next_unordered)

    def _discard_pending(self, take: Callable[..., Any]) -> None:
        while self.has_next():
            try:
                take(timeout=0, ignore_if_timedout=True)
            except TimeoutError:
                pass

    def _results(self, take: Callable[[], Any]) -> Iterator[Any]:
        while self.has_next():
            yield take()

    def submit(self, fn: Work, value: Any) -> None:
        """Run fn(actor, value) on an idle actor, or once one is free."""
        if not self._idle_actors:
            self._pending_submits.append((fn, value))
            return
        actor = self._idle_actors.pop()
        future = fn(actor, value)
        self._future_to_actor[_key(future)] = (self._next_task_index, actor)
        self._index_to_future[self._next_task_index] = future
        self._next_task_index += 1

    def has_next(self) -> bool:
        """Whether some submitted result has not been returned yet."""
        return bool(self._future_to_actor)

    def get_next(self, timeout: float | None = None, ignore_if_timedout: bool = False) -> Any:
        """The next result in submission order, waiting up to `timeout` seconds.

        On timeout, TimeoutError; with `ignore_if_timedout=True` the timed-out item is also
        skipped (its actor is returned to the pool)."""
        if not self.has_next():
            raise StopIteration("No more results to get")
        if self._next_return_index >= self._next_task_index:
            raise ValueError("It is not allowed to call get_next() after get_next_unordered().")
        future = self._index_to_future[self._next_return_index]
        timed_out = False
        if timeout is not None:
            ready, _ = api.wait(_refs(future), num_returns=len(_refs(future)), timeout=timeout)
            if len(ready) < len(_refs(future)):
                if not ignore_if_timedout:
                    raise TimeoutError(_TIMEOUT_MESSAGE)
                timed_out = True
        del self._index_to_future[self._next_return_index]
        self._next_return_index += 1
        _, actor = self._future_to_actor.pop(_key(future))
        if timed_out:
            self._return_actor(actor)
            raise TimeoutError(f"{_TIMEOUT_MESSAGE}. The task {future} has been ignored.")
        return self._get_result(future, actor)

    def get_next_unordered(
        self, timeout: float | None = None, ignore_if_timedout: bool = False
    ) -> Any:
        """Whichever pending result is ready first, waiting up to `timeout` seconds.

        On timeout, TimeoutError; with `ignore_if_timedout=True` the oldest pending item is
        also skipped (its actor is returned to the pool)."""
        if not self.has_next():
            raise StopIteration("No more results to get")
        by_ref = {ref: key for key in self._future_to_actor for ref in _refs(key)}
        ready, _ = api.wait(list(by_ref), num_returns=1, timeout=timeout)
        if ready:
            key = by_ref[ready[0]]
        elif ignore_if_timedout:
            key = min(self._future_to_actor, key=lambda k: self._future_to_actor[k][0])
        else:
            raise TimeoutError(_TIMEOUT_MESSAGE)
        index, actor = self._future_to_actor.pop(key)
        future = self._index_to_future.pop(index)
        self._next_return_index = max(self._next_return_index, index + 1)
        if not ready:
            self._return_actor(actor)
            raise TimeoutError(f"{_TIMEOUT_MESSAGE}. The task {future} has been ignored.")
        return self._get_result(future, actor)

    def _get_result(self, future: Any, actor: Any) -> Any:
        alive = True
        try:
            return api.get(future)
        except ActorDiedError:
            alive = False  # a dead actor leaves the pool
            raise
        finally:
            self._return_actor(actor, alive)

    def _return_actor(self, actor: Any, alive: bool = True) -> None:
        if alive:
            self._idle_actors.append(actor)
        if self._pending_submits and self._idle_actors:
            self.submit(*self._pending_submits.pop(0))

    def has_free(self) -> bool:
        """Whether an actor is idle and no item is waiting for one."""
        return bool(self._idle_actors) and not self._pending_submits

    def pop_idle(self) -> Any | None:
        """Take an idle actor out of the pool (None if no actor is free)."""
        return self._idle_actors.pop() if self.has_free() else None

    def push(self, actor: Any) -> None:
        """Add an actor to the pool (it takes a waiting item at once, if any)."""
        busy = [entry[1] for entry in self._future_to_actor.values()]
        if actor in self._idle_actors or actor in busy:
            raise ValueError("Actor already belongs to current ActorPool")
        self._return_actor(actor)


def _key(future: Any) -> Any:
    """A hashable key for what fn returned: a ref, or a list of refs."""
    return tuple(future) if isinstance(future, list) else future


def _refs(future: Any) -> list[Any]:
    return list(future) if isinstance(future, (list, tuple)) else [future]
