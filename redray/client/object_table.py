"""The committed objects this process knows about, and waiting for more of them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from redray.control.entry import Entry


class ObjectTable:
    """A cache of entries plus one condition that every waiter in the process shares.

    `lock` is also what the client holds while it pairs "is it here?" with "tell me when it
    is", so a commit cannot slip between the two.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._changed = threading.Condition(self.lock)
        self._entries: dict[str, Entry] = {}
        #: The ids of the entries that are errors (wait() marks those it returns as seen).
        self._errors: set[str] = set()
        #: Set while this process cannot reach Redis past the grace period: every waiter
        #: raises it instead of waiting for commits that cannot arrive.
        self.failure: BaseException | None = None
        #: Called once when the object is committed (ref futures, client/ref_futures.py).
        self._callbacks: dict[str, list[Callable[[], None]]] = {}

    def get(self, object_id: str) -> Entry | None:
        return self._entries.get(object_id)

    def __contains__(self, object_id: str) -> bool:
        return object_id in self._entries

    def commit(self, object_id: str, entry: Entry) -> None:
        with self.lock:
            self._entries[object_id] = entry
            if entry.kind == "e":
                self._errors.add(object_id)
            self._changed.notify_all()
            for callback in self._callbacks.pop(object_id, ()):
                callback()

    def add_callback(self, object_id: str, callback: Callable[[], None]) -> None:
        """Call `callback` once the object is committed. The caller holds `lock` and saw
        that the object is not here; the callback runs under the lock, so it must be cheap."""
        self._callbacks.setdefault(object_id, []).append(callback)

    def remove_callback(self, object_id: str, callback: Callable[[], None]) -> None:
        """Forget a callback added for an object not committed yet (its waiter gave up)."""
        with self.lock:
            callbacks = self._callbacks.get(object_id)
            if callbacks and callback in callbacks:
                callbacks.remove(callback)
                if not callbacks:
                    del self._callbacks[object_id]

    def ready_and_errors(self, object_ids: list[str]) -> tuple[list[bool], set[str]]:
        """Whether each object is here, and which of them are errors."""
        return list(map(self._entries.__contains__, object_ids)), self.errors_among(object_ids)

    def errors_among(self, object_ids: Iterable[str]) -> set[str]:
        return self._errors.intersection(object_ids)

    def keep_only(self, keep: set[str]) -> None:
        with self.lock:
            for object_id in [o for o in self._entries if o not in keep]:
                del self._entries[object_id]
            self._errors &= keep

    def discard(self, object_id: str) -> None:
        self._entries.pop(object_id, None)
        self._errors.discard(object_id)

    def count_present(self, object_ids: list[str]) -> int:
        return sum(map(self._entries.__contains__, object_ids))

    def wait_until(self, condition: Callable[[], bool], deadline: float | None) -> bool:
        """Block until `condition()` holds (checked on every commit); False on deadline.
        Raises `failure` if it is set (or gets set) while the condition does not hold."""
        with self.lock:
            while not condition():
                if self.failure is not None:
                    raise self.failure
                if deadline is None:
                    self._changed.wait()
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True

    def fail(self, error: BaseException | None) -> None:
        """Make every waiter raise `error` (None: wait normally again)."""
        with self.lock:
            self.failure = error
            self._changed.notify_all()
