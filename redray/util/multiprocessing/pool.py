"""Pool: the `multiprocessing.Pool` interface, with actors as the pool's processes.

Each pool process is an actor (holding no CPU, as in Ray, so a pool never starves the
tasks it may submit) that ran the `initializer` once and then runs batches ("chunks") of
calls. Results come back through ref futures (redray/client/ref_futures.py), so an
AsyncResult needs no thread of its own. An exception raised by one call is returned in
place of its result, so the rest of its chunk still runs; `get()` raises the first one.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import multiprocessing
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from redray import api
from redray.decorators import remote
from redray.util.actor_pool import ActorPool

logger = logging.getLogger(__name__)

#: (args, kwargs) of one call.
Call = tuple[tuple[Any, ...], dict[str, Any]]


class _CallFailed:
    """What a failed call returns in its chunk's result list."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class _PoolProcess:
    """One process of the pool (an actor)."""

    def __init__(self, initializer: Callable[..., Any] | None, initargs: Iterable[Any]) -> None:
        if initializer is not None:
            initializer(*initargs)

    def ping(self) -> None:
        """Answers once the initializer ran."""

    def run_batch(self, func: Callable[..., Any], batch: list[Call]) -> list[Any]:
        results: list[Any] = []
        for args, kwargs in batch:
            try:
                results.append(func(*args, **kwargs))
            except Exception as error:
                results.append(_CallFailed(error))
        return results


def _raise_failures(results: list[Any]) -> list[Any]:
    for result in results:
        if isinstance(result, _CallFailed):
            raise result.error
    return results


class AsyncResult:
    """The result of apply_async(), map_async() or starmap_async()."""

    def __init__(
        self,
        chunk_refs: list[Any],
        callback: Callable[[Any], None] | None = None,
        error_callback: Callable[[BaseException], None] | None = None,
        single_result: bool = False,
    ) -> None:
        self._futures = [ref.future() for ref in chunk_refs]
        self._single = single_result
        self._callback = callback
        self._error_callback = error_callback
        self._done = threading.Event()
        self._value: Any = None
        self._error: BaseException | None = None
        self._remaining = len(self._futures)
        self._lock = threading.Lock()
        if not self._futures:
            self._settle()
        for future in self._futures:
            future.add_done_callback(self._chunk_done)

    def _chunk_done(self, _: concurrent.futures.Future) -> None:
        with self._lock:
            self._remaining -= 1
            last = self._remaining == 0
        if last:
            self._settle()

    def _settle(self) -> None:
        """All chunks are in: compute the outcome, run the callback, then be ready (as in
        multiprocessing, get() returns after the callback ran)."""
        try:
            values = [v for f in self._futures for v in _raise_failures(f.result())]
            self._value = values[0] if self._single else values
        except BaseException as error:  # the outcome of a failed call, or of its chunk
            self._error = error
        try:
            if self._error is None and self._callback is not None:
                self._callback(self._value)
            elif self._error is not None and self._error_callback is not None:
                self._error_callback(self._error)
        except Exception:
            logger.exception("redray: a Pool callback raised")
        finally:
            self._done.set()

    def wait(self, timeout: float | None = None) -> None:
        """Return once the result is ready or `timeout` seconds passed."""
        self._done.wait(timeout)

    def get(self, timeout: float | None = None) -> Any:
        """The result (raising the call's exception if it failed); multiprocessing's
        TimeoutError if not ready within `timeout` seconds."""
        if not self._done.wait(timeout):
            raise multiprocessing.TimeoutError
        if self._error is not None:
            raise self._error
        return self._value

    def ready(self) -> bool:
        return self._done.is_set()

    def successful(self) -> bool:
        """Whether every call succeeded; ValueError if the result is not ready."""
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return self._error is None


class IMapIterator:
    """Results of imap() (in order) or imap_unordered(): one chunk per pool process at a
    time; the next chunk is sent when a result is taken."""

    def __init__(
        self, pool: Pool, func: Callable[..., Any], iterable: Iterable[Any], chunksize: int,
        ordered: bool,
    ) -> None:  # fmt: skip
        self._func = func
        self._chunks = _chunks(iter(iterable), chunksize, unpack=False)
        self._ordered = ordered
        self._buffer: Iterator[Any] = iter(())
        self._actors = ActorPool(pool._processes_for_imap())
        for _ in range(len(pool._actors)):
            self._submit_next()

    def _submit_next(self) -> None:
        chunk = next(self._chunks, None)
        if chunk is not None:
            self._actors.submit(self._run_chunk, chunk)

    def _run_chunk(self, actor: Any, chunk: list[Call]) -> Any:
        return actor.run_batch.remote(self._func, chunk)

    def __iter__(self) -> IMapIterator:
        return self

    def __next__(self) -> Any:
        return self.next()

    def next(self, timeout: float | None = None) -> Any:
        """The next result; multiprocessing's TimeoutError after `timeout` seconds."""
        for value in self._buffer:
            return _raise_failures([value])[0]
        if not self._actors.has_next():
            raise StopIteration
        take = self._actors.get_next if self._ordered else self._actors.get_next_unordered
        try:
            results = take(timeout=timeout)
        except TimeoutError as error:
            raise multiprocessing.TimeoutError from error
        self._submit_next()
        self._buffer = iter(results)
        return self.next()


def _chunks(calls: Iterator[Any], size: int, unpack: bool) -> Iterator[list[Call]]:
    while True:
        chunk = [((*item,) if unpack else (item,), {}) for item in itertools.islice(calls, size)]
        if not chunk:
            return
        yield chunk


class Pool:
    """A pool of `processes` actors (default: the cluster's CPU count), with
    multiprocessing.Pool's methods. Starts an embedded cluster when none is running.

    Example::

        with Pool() as pool:
            pool.map(abs, range(-10, 10))
    """

    def __init__(
        self,
        processes: int | None = None,
        initializer: Callable[..., Any] | None = None,
        initargs: Iterable[Any] | None = None,
        maxtasksperchild: int | None = None,
        context: Any = None,
        ray_address: str | None = None,
        ray_remote_args: dict[str, Any] | None = None,
    ) -> None:
        if context is not None:
            logger.warning("Pool(context=...) is ignored: the pool's processes are actors.")
        if maxtasksperchild is not None and maxtasksperchild <= 0:
            raise ValueError("maxtasksperchild must be a positive int or None")
        self._initializer = initializer
        self._initargs = tuple(initargs or ())
        self._maxtasksperchild = maxtasksperchild
        self._actor_class = remote(num_cpus=0)(_PoolProcess)
        if ray_remote_args:
            self._actor_class = self._actor_class.options(**ray_remote_args)
        self._closed = False
        self._stopping: list[Any] = []  # refs of __ray_terminate__ calls
        processes = _pool_size(processes, ray_address)
        #: [actor, batches it ran] per process.
        self._actors: list[list[Any]] = [[self._new_actor(), 0] for _ in range(processes)]
        self._next_index = itertools.cycle(range(processes))
        api.get([actor.ping.remote() for actor, _ in self._actors])

    def _new_actor(self) -> Any:
        return self._actor_class.remote(self._initializer, self._initargs)

    def _run_batch(self, index: int, func: Callable[..., Any], batch: list[Call]) -> Any:
        entry = self._actors[index]
        ref = entry[0].run_batch.remote(func, batch)
        entry[1] += 1
        if self._maxtasksperchild is not None and entry[1] >= self._maxtasksperchild:
            self._stop(entry[0])  # it exits after this batch
            entry[:] = [self._new_actor(), 0]
        return ref

    def _processes_for_imap(self) -> list[Any]:
        self._check_running()
        return [actor for actor, _ in self._actors]

    def _stop(self, actor: Any) -> None:
        self._stopping.append(actor.__ray_terminate__.remote())

    def _check_running(self) -> None:
        if self._closed:
            raise ValueError("Pool not running")

    # ---- multiprocessing.Pool's methods ---------------------------------------------

    def apply(
        self, func: Callable[..., Any], args: Iterable[Any] = (), kwds: dict | None = None
    ) -> Any:
        """func(*args, **kwds) on one of the pool's processes."""
        return self.apply_async(func, args, kwds).get()

    def apply_async(
        self,
        func: Callable[..., Any],
        args: Iterable[Any] = (),
        kwds: dict | None = None,
        callback: Callable[[Any], None] | None = None,
        error_callback: Callable[[BaseException], None] | None = None,
    ) -> AsyncResult:
        self._check_running()
        call = (tuple(args or ()), dict(kwds or {}))
        ref = self._run_batch(next(self._next_index), func, [call])
        return AsyncResult([ref], callback, error_callback, single_result=True)

    def map(
        self, func: Callable[[Any], Any], iterable: Iterable[Any], chunksize: int | None = None
    ) -> list[Any]:
        """[func(x) for x in iterable], computed in chunks on the pool's processes."""
        return self.map_async(func, iterable, chunksize).get()

    def map_async(
        self,
        func: Callable[[Any], Any],
        iterable: Iterable[Any],
        chunksize: int | None = None,
        callback: Callable[[Any], None] | None = None,
        error_callback: Callable[[BaseException], None] | None = None,
    ) -> AsyncResult:
        return self._map_async(func, iterable, chunksize, False, callback, error_callback)

    def starmap(
        self, func: Callable[..., Any], iterable: Iterable[Iterable[Any]],
        chunksize: int | None = None,
    ) -> list[Any]:  # fmt: skip
        """[func(*args) for args in iterable]."""
        return self.starmap_async(func, iterable, chunksize).get()

    def starmap_async(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Iterable[Any]],
        chunksize: int | None = None,
        callback: Callable[[Any], None] | None = None,
        error_callback: Callable[[BaseException], None] | None = None,
    ) -> AsyncResult:
        return self._map_async(func, iterable, chunksize, True, callback, error_callback)

    def _map_async(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Any],
        chunksize: int | None,
        unpack: bool,
        callback: Callable[[Any], None] | None,
        error_callback: Callable[[BaseException], None] | None,
    ) -> AsyncResult:
        self._check_running()
        items = list(iterable)
        if chunksize is None:  # as multiprocessing: about four chunks per process
            chunksize = -(-len(items) // (len(self._actors) * 4)) or 1
        elif chunksize <= 0:
            raise ValueError(f"chunksize must be a positive int, got {chunksize}")
        refs = [
            self._run_batch(index % len(self._actors), func, chunk)
            for index, chunk in enumerate(_chunks(iter(items), chunksize, unpack))
        ]
        return AsyncResult(refs, callback, error_callback)

    def imap(
        self, func: Callable[[Any], Any], iterable: Iterable[Any], chunksize: int = 1
    ) -> IMapIterator:
        """Like map(), lazily: results in order, one chunk per process in flight."""
        return IMapIterator(self, func, iterable, _positive(chunksize), ordered=True)

    def imap_unordered(
        self, func: Callable[[Any], Any], iterable: Iterable[Any], chunksize: int = 1
    ) -> IMapIterator:
        """Like imap(), but each result as soon as its chunk is done."""
        return IMapIterator(self, func, iterable, _positive(chunksize), ordered=False)

    def close(self) -> None:
        """Take no more work; the processes exit once their queued work is done."""
        if self._closed:
            return
        self._closed = True
        for actor, _ in self._actors:
            self._stop(actor)

    def terminate(self) -> None:
        """Stop the processes now, abandoning outstanding work."""
        self.close()
        for actor, _ in self._actors:
            api.kill(actor)

    def join(self) -> None:
        """Wait for the processes of a closed pool to exit."""
        if not self._closed:
            raise ValueError("Pool is still running")
        if self._stopping:
            api.wait(self._stopping, num_returns=len(self._stopping))
            self._stopping = []

    def __enter__(self) -> Pool:
        self._check_running()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.terminate()


def _positive(chunksize: int) -> int:
    if not isinstance(chunksize, int) or chunksize <= 0:
        raise ValueError(f"chunksize must be a positive int, got {chunksize!r}")
    return chunksize


def _pool_size(processes: int | None, address: str | None) -> int:
    """The number of pool processes, starting (or joining) a cluster first if needed."""
    if not api.is_initialized():
        if address is not None:
            api.init(address=address)
        else:
            api.init(num_cpus=processes)
    cpus = int(api.cluster_resources().get("CPU", 0))
    if processes is None:
        processes = cpus
    if processes <= 0:
        raise ValueError("Processes in the pool must be >0.")
    if cpus < processes:
        raise ValueError(
            f"Tried to start a pool with {processes} processes on an existing cluster, but "
            f"there are only {cpus} CPUs in the cluster."
        )
    return processes
