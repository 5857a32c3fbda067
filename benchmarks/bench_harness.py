"""Shared helpers for the benchmark suite: backend loading, result channel, timing, processes.

Nothing here imports a framework at module import time, so ``run.py`` can use it freely.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent

#: The API names a backend must expose to be benchmarked (Ray's names).
REQUIRED_API = ("init", "remote", "get", "put", "wait", "shutdown")

#: Extra init() kwargs per backend (on top of ``num_cpus=2``).
EXTRA_INIT_KWARGS: dict[str, dict[str, Any]] = {"ray": {"include_dashboard": False}}

#: Extra environment per backend, to keep the framework quiet and the comparison fair.
EXTRA_ENV: dict[str, dict[str, str]] = {
    "ray": {
        "RAY_USAGE_STATS_ENABLED": "0",  # no usage-stats reporting thread / prompt
        "RAY_AUTH_MODE": "disabled",  # no token-auth warning on every start
        "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",  # silences a FutureWarning
    },
}


class BackendUnavailable(RuntimeError):
    """The backend cannot be imported or does not expose Ray's API."""


# --------------------------------------------------------------------------- backends


def ensure_repo_on_path() -> None:
    """Make the working tree's ``redray`` importable even when it is not pip-installed."""
    root = str(REPO_ROOT)
    if root not in sys.path:
        sys.path.insert(0, root)


def backend_env(backend: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a benchmark subprocess of ``backend``.

    The repository root is put on ``PYTHONPATH`` so that processes the framework spawns
    (workers, daemons) can import it as well.
    """
    env = dict(os.environ if base is None else base)
    parts = [str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))
    env.update(EXTRA_ENV.get(backend, {}))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def load_backend(name: str) -> ModuleType:
    """Import ``name`` and check that it exposes Ray's core API names."""
    ensure_repo_on_path()
    try:
        mod = importlib.import_module(name)
    except Exception as exc:  # ImportError, or an error raised by the package itself
        raise BackendUnavailable(f"cannot import {name!r}: {type(exc).__name__}: {exc}") from exc
    missing = [n for n in REQUIRED_API if not hasattr(mod, n)]
    if missing:
        where = getattr(mod, "__file__", None) or list(getattr(mod, "__path__", []))
        raise BackendUnavailable(
            f"{name!r} imported from {where} but lacks {', '.join(missing)} "
            "(package not usable yet?)"
        )
    return mod


def backend_version(mod: ModuleType) -> str:
    return str(getattr(mod, "__version__", "?"))


def init_kwargs(backend: str, mod: ModuleType) -> dict[str, Any]:
    """``init()`` kwargs for ``backend``: ``num_cpus=2`` plus extras it actually accepts."""
    wanted: dict[str, Any] = {"num_cpus": 2, **EXTRA_INIT_KWARGS.get(backend, {})}
    try:
        params = inspect.signature(mod.init).parameters
    except (TypeError, ValueError):
        return wanted
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return wanted
    return {k: v for k, v in wanted.items() if k in params}


# --------------------------------------------------------------------------- result channel


def open_result_channel() -> TextIO:
    """Return a private handle on the original stdout and point fd 1 at stderr.

    Frameworks print to stdout (and their children inherit fd 1); after this call only
    what we write to the returned handle reaches our parent's stdout pipe.
    """
    sys.stdout.flush()
    private_fd = os.dup(1)  # non-inheritable by default
    os.dup2(2, 1)
    return os.fdopen(private_fd, "w", buffering=1)


def emit(channel: TextIO, obj: dict[str, Any]) -> None:
    """Write one JSON object as one line, in a single write call."""
    channel.write(json.dumps(obj, default=str) + "\n")
    channel.flush()


# --------------------------------------------------------------------------- timing


@dataclass
class Ctx:
    """What a benchmark function gets: the backend module and the size knobs."""

    rt: ModuleType
    backend: str
    quick: bool = False
    big: bool = False

    def n(self, normal: int, quick: int) -> int:
        """Pick an iteration count for the current mode."""
        return quick if self.quick else normal


def now() -> float:
    return time.perf_counter()


def sample_us(fn: Callable[[], Any], n: int) -> list[float]:
    """Call ``fn`` ``n`` times, returning each call's duration in microseconds."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t0) / 1e3)
    return out


def best_of(fn: Callable[[], float], reps: int) -> tuple[float, list[float]]:
    """Run ``fn`` (which returns a duration in s) ``reps`` times; return (min, all)."""
    times = [fn() for _ in range(reps)]
    return min(times), times


def latency_stats(samples_us: list[float]) -> dict[str, float]:
    s = sorted(samples_us)
    return {
        "median_us": statistics.median(s),
        "mean_us": statistics.fmean(s),
        "p95_us": s[min(len(s) - 1, int(len(s) * 0.95))],
        "min_us": s[0],
        "n": len(s),
    }


# --------------------------------------------------------------------------- processes


def _psutil():  # imported lazily so a missing psutil only breaks what needs it
    import psutil

    return psutil


def descendants(pid: int | None = None) -> set[int]:
    """PIDs of all live descendants of ``pid`` (default: this process)."""
    ps = _psutil()
    try:
        return {p.pid for p in ps.Process(pid or os.getpid()).children(recursive=True)}
    except ps.Error:
        return set()


def describe(proc: Any) -> str:
    """A short label: the process name, plus the script or ``-m`` module for interpreters."""
    name = proc.name()
    if not name.startswith("python"):
        return name
    try:
        args = proc.cmdline()[1:]
    except Exception:
        return name
    for i, arg in enumerate(args):
        if arg == "-m" and i + 1 < len(args):
            return f"{name} -m {args[i + 1]}"
        if not arg.startswith("-"):
            return f"{name} {os.path.basename(arg)}"
    return name


def rss_by_pid(pids: Iterable[int]) -> dict[int, tuple[str, float]]:
    """``pid -> (label, RSS in MB)`` for the live processes among ``pids``."""
    ps = _psutil()
    out = {}
    for pid in pids:
        try:
            p = ps.Process(pid)
            out[pid] = (describe(p), p.memory_info().rss / 2**20)
        except ps.Error:
            continue
    return out


def kill_pids(pids: Iterable[int], grace: float = 3.0) -> list[str]:
    """SIGTERM the given PIDs, SIGKILL survivors after ``grace`` s; return what was killed."""
    ps = _psutil()
    procs = []
    for pid in set(pids):
        if pid == os.getpid():
            continue
        try:
            procs.append(ps.Process(pid))
        except ps.Error:
            continue
    names = []
    for p in procs:
        try:
            names.append(f"{p.name()}({p.pid})")
            p.terminate()
        except ps.Error:
            pass
    _, alive = ps.wait_procs(procs, timeout=grace)
    for p in alive:
        try:
            p.kill()
        except ps.Error:
            pass
    ps.wait_procs(alive, timeout=grace)
    return names


def _set_subreaper(on: bool) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_child_subreaper = 36
        return libc.prctl(pr_set_child_subreaper, int(on), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


class Subreaper:
    """Context manager: make this process a Linux "child subreaper", and reap for it.

    Processes started below us that lose their parent (daemons that double-fork, such as
    a redis-server started with ``daemonize yes``, or framework processes orphaned when
    their parent dies) are then re-parented to us instead of to PID 1, so they stay among
    our descendants: they can be measured and cleaned up.

    Like PID 1, we must reap such orphans as soon as they exit (a framework waiting for
    its daemon to exit would otherwise see a zombie "still running"), so a thread does.
    Never use this in a process that runs a framework itself: the thread would steal its
    children's exit statuses. ``keep()`` returns PIDs we hold Popen objects for; those
    are left for Popen to reap.
    """

    def __init__(self, keep: Callable[[], Iterable[int]] = tuple) -> None:
        self.keep = keep
        self.enabled = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Subreaper:
        self.enabled = _set_subreaper(True)
        if self.enabled:
            self._thread = threading.Thread(target=self._reap_loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self.enabled:
            _set_subreaper(False)

    def _reap_loop(self) -> None:
        flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
        while not self._stop.is_set():
            try:
                info = os.waitid(os.P_ALL, 0, flags)  # peek, do not reap yet
            except ChildProcessError:
                info = None
            if info is None or info.si_pid in set(self.keep()):
                self._stop.wait(0.05)
                continue
            try:
                os.waitpid(info.si_pid, 0)
            except ChildProcessError:
                pass


def reap_descendants(wait: float = 5.0, exclude: Iterable[int] = ()) -> list[str]:
    """Give our descendants ``wait`` s to exit on their own, then kill the rest.

    Returns the labels of the processes that had to be killed.
    """
    skip = set(exclude)
    deadline = time.monotonic() + wait
    ps = _psutil()

    def alive() -> set[int]:
        pids = set()
        for pid in descendants() - skip:
            try:
                if ps.Process(pid).status() != ps.STATUS_ZOMBIE:
                    pids.add(pid)
            except ps.Error:
                continue
        return pids

    pids = alive()
    while pids and time.monotonic() < deadline:
        time.sleep(0.25)
        pids = alive()
    killed = kill_pids(pids) if pids else []
    kill_pids(descendants() - skip, grace=0.5)  # reaps leftover zombie children
    return killed
