"""A tqdm progress bar over ObjectRefs: `redray.util.progress(refs)`.

A tqdm over `wait()`: the bar advances as results complete, whichever order they finish in.

    for value in redray.util.progress(refs, desc="simulations"):
        ...                                  # values in completion order

    with redray.util.progress(refs, desc="shards") as bar:
        values = bar.get()                   # values in the order of `refs`, like get()
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from tqdm.auto import tqdm

from redray import api
from redray.object_ref import ObjectRef


class progress:  # noqa: N801  (a function-like name, as tqdm's own `tqdm`)
    """Progress over `refs`; keyword arguments go to tqdm (desc, unit, disable, file...)."""

    def __init__(self, refs: Sequence[ObjectRef], **tqdm_kwargs: Any) -> None:
        refs = list(refs)
        bad = [ref for ref in refs if not isinstance(ref, ObjectRef)]
        if bad:
            raise TypeError(
                "redray.util.progress() takes a list of ObjectRefs; got "
                f"{type(bad[0]).__name__} among them."
            )
        self.refs = refs
        tqdm_kwargs.setdefault("total", len(refs))
        self.bar = tqdm(**tqdm_kwargs)

    def __enter__(self) -> progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self.bar.close()

    def __iter__(self) -> Iterator[Any]:
        """Each result as it completes (a failed task raises its error here, as get())."""
        try:
            for ready in self._ready_batches():
                yield from api.get(ready)
        finally:
            self.close()

    def get(self, timeout: float | None = None) -> list[Any]:
        """Every result, in the order of the refs, once all are done."""
        for _ in self._ready_batches(timeout):
            pass
        values = api.get(self.refs, timeout=timeout)
        self.close()
        return values

    def _ready_batches(self, timeout: float | None = None) -> Iterator[list[ObjectRef]]:
        pending = list(self.refs)
        while pending:
            ready, pending = api.wait(pending, num_returns=1, timeout=timeout, fetch_local=False)
            if not ready:  # the timeout passed: get() raises GetTimeoutError for us
                return
            if pending:  # and whatever else is done by now, in the same step of the bar
                more, pending = api.wait(
                    pending, num_returns=len(pending), timeout=0, fetch_local=False
                )
                ready += more
            self.bar.update(len(ready))
            yield ready
