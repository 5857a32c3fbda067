"""`redray.experimental.tqdm_ray.tqdm`: a progress bar that tasks and actors update and the
driver draws, as Ray's `ray.experimental.tqdm_ray`.

Inside a worker, each update (at most one per `flush_interval_s`, and at close) prints one
line of JSON state marked with `TQDM_MAGIC` to stdout. Those lines travel like any other
output (worker/output.py) and the driver's log printer hands them to `instance()`, which
draws one real tqdm bar per remote bar instead of printing them. On the driver itself the
state goes straight to the bars.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from redray import runtime_context
from redray.client.worker_logs import TQDM_MAGIC

RAY_TQDM_MAGIC = TQDM_MAGIC
_DIM, _CYAN, _RESET = "\x1b[2m", "\x1b[36m", "\x1b[0m"


class tqdm:  # noqa: N801  (Ray's and tqdm's name)
    """A subset of tqdm's interface: iterate, update, set_description, refresh, close."""

    DEFAULT_FLUSH_INTERVAL_SECONDS = 1.0

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        desc: str | None = None,
        total: int | None = None,
        unit: str | None = None,
        position: int | None = None,
        flush_interval_s: float | None = None,
    ) -> None:
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except (TypeError, AttributeError):
                total = None
        self._iterable = iterable
        self._desc = desc or ""
        self._total = total
        self._unit = unit or "it"
        self._pos = position or 0
        self._uuid = uuid.uuid4().hex
        self._x = 0
        self._closed = False
        self._flush_interval_s = (
            self.DEFAULT_FLUSH_INTERVAL_SECONDS if flush_interval_s is None else flush_interval_s
        )
        self._last_flush = 0.0

    def set_description(self, desc: str) -> None:
        self._desc = desc
        self._dump_state()

    def update(self, n: int = 1) -> None:
        self._x += n
        self._dump_state()

    def refresh(self) -> None:
        self._dump_state()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._dump_state(force=True)

    @property
    def total(self) -> int | None:
        return self._total

    @total.setter
    def total(self, total: int) -> None:
        self._total = total

    @property
    def n(self) -> int:
        return self._x

    @n.setter
    def n(self, n: int) -> None:
        self._x = n

    def __iter__(self) -> Iterator[Any]:
        if self._iterable is None:
            raise ValueError("No iterable provided")
        for item in self._iterable:
            self.update(1)
            yield item
        self.close()

    def __enter__(self) -> tqdm:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _dump_state(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_flush < self._flush_interval_s:
            return
        self._last_flush = now
        state = self._state()
        if runtime_context.current.mode == "worker":
            print(json.dumps(state), flush=True)
        else:
            instance().process_state_update(state)

    def _state(self) -> dict[str, Any]:
        return {
            "__magic_token__": TQDM_MAGIC,
            "x": self._x,
            "pos": self._pos,
            "desc": self._desc,
            "total": self._total,
            "unit": self._unit,
            "pid": os.getpid(),
            "ip": _node_ip(),
            "uuid": self._uuid,
            "closed": self._closed,
        }


def _node_ip() -> str:
    from redray.host import node_ip

    return node_ip()


class _BarManager:
    """The driver's real tqdm bars, one per remote bar, stacked in order of appearance."""

    def __init__(self) -> None:
        self._bars: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._next_position = 0
        self._closed: set[str] = set()

    @property
    def active(self) -> bool:
        return bool(self._bars)

    def printing(self) -> contextlib.AbstractContextManager[None]:
        """Around other output: the bars step aside and are drawn again below it."""
        from tqdm.auto import tqdm as real_tqdm

        return real_tqdm.external_write_mode()

    @staticmethod
    def _prefix(state: dict[str, Any]) -> str:
        """Which worker the bar is from, as Ray shows it: `(pid=N) `, with `, ip=` when
        the worker is on another machine; nothing for the driver's own bars."""
        pid, ip = state.get("pid"), state.get("ip")
        if pid == os.getpid() and ip in (None, _node_ip()):
            return ""
        where = f"(pid={pid})" if ip in (None, _node_ip()) else f"(pid={pid}, ip={ip})"
        return f"{_DIM}{_CYAN}{where} {_RESET}"

    def process_line(self, line: str) -> None:
        """A worker's state line (from the log printer)."""
        try:
            state = json.loads(line[line.index("{") :])
        except ValueError:
            return
        self.process_state_update(state)

    def process_state_update(self, state: dict[str, Any]) -> None:
        from tqdm.auto import tqdm as real_tqdm

        with self._lock:
            if state["uuid"] in self._closed:
                return
            state["desc"] = self._prefix(state) + (state.get("desc") or "")
            bar = self._bars.get(state["uuid"])
            if bar is None:
                bar = real_tqdm(
                    desc=state["desc"] or None,
                    total=state.get("total"),
                    unit=state.get("unit") or "it",
                    position=self._next_position + int(state.get("pos") or 0),
                    dynamic_ncols=True,
                    unit_scale=True,
                )
                self._next_position += 1
                self._bars[state["uuid"]] = bar
            if state["desc"] != bar.desc.rstrip(": "):
                bar.set_description(state["desc"], refresh=False)
            if state.get("total") != bar.total:
                bar.total = state.get("total")
            bar.update(int(state.get("x", 0)) - bar.n)
            if state.get("closed"):
                bar.close()
                del self._bars[state["uuid"]]
                self._closed.add(state["uuid"])
                if not self._bars:
                    self._next_position = 0


_instance: _BarManager | None = None
_instance_lock = threading.Lock()


def instance() -> _BarManager:
    """The driver's bar manager (created on first use)."""
    global _instance
    with _instance_lock:
        if _instance is None:
            _instance = _BarManager()
        return _instance
