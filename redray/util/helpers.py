"""`as_completed` and `map_unordered`: results of many tasks as they finish, as Ray's
`ray.util.helpers` (instead of calling get() in a loop)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from redray import api
from redray.object_ref import ObjectRef


def _next_batch(
    refs: list[ObjectRef], chunk_size: int, yield_obj_refs: bool, wait_kwargs: dict[str, Any]
) -> tuple[list[Any], list[ObjectRef]]:
    """(the values, or refs, of the first `chunk_size` ready refs, the refs still pending)."""
    ready, pending = api.wait(refs, num_returns=min(chunk_size, len(refs)), **wait_kwargs)
    return (ready if yield_obj_refs else api.get(ready)), pending


def _check(chunk_size: int, wait_kwargs: dict[str, Any]) -> None:
    if chunk_size < 1:
        raise ValueError("`chunk_size` must be >= 1")
    if "num_returns" in wait_kwargs:
        raise ValueError("Use the `chunk_size` argument instead of `num_returns`.")


def as_completed(
    refs: Sequence[ObjectRef], *, chunk_size: int = 10, yield_obj_refs: bool = False, **kwargs: Any
) -> Iterator[Any]:
    """Yield the values of `refs` (or the refs, with `yield_obj_refs`) in batches of
    `chunk_size` as they become ready; `kwargs` go to wait() (e.g. `timeout`).

    Example::

        for value in redray.util.as_completed([f.remote(i) for i in range(10)], chunk_size=2):
            print(value)
    """
    _check(chunk_size, kwargs)
    pending = list(refs)
    while pending:
        values, pending = _next_batch(pending, chunk_size, yield_obj_refs, kwargs)
        yield from values


def map_unordered(
    fn: Any,
    items: Iterable[Any],
    *,
    backpressure_size: int | None = 100,
    chunk_size: int = 10,
    yield_obj_refs: bool = False,
    **kwargs: Any,
) -> Iterator[Any]:
    """Run the remote function `fn` on each item and yield the results as they finish,
    keeping at most `backpressure_size` tasks in flight (None: no limit)."""
    if backpressure_size is not None and backpressure_size <= 0:
        raise ValueError("backpressure_size must be positive.")
    _check(chunk_size, kwargs)
    limit = float("inf") if backpressure_size is None else backpressure_size
    pending: list[ObjectRef] = []
    for item in items:
        pending.append(fn.remote(item))
        if len(pending) >= limit:
            values, pending = _next_batch(pending, chunk_size, yield_obj_refs, kwargs)
            yield from values
    yield from as_completed(pending, chunk_size=chunk_size, yield_obj_refs=yield_obj_refs, **kwargs)
