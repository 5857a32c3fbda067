"""The Ray implementation the end-to-end tests run against, and small helpers for them.

`ray` is `redray`, or real Ray 2.x when the environment variable REDRAY_TEST_AGAINST=ray
(so the same tests check that redray behaves as Ray does). Test modules use it as
`from target_ray import ray` so that module-level `@ray.remote` functions work; the
`ray_module` fixture in conftest.py yields the same module.

Workers import the test modules (and this one) by name when they unpickle a remote
function defined in them, as Ray's workers do; conftest.py puts tests/ on PYTHONPATH so
that every process a cluster starts can.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

AGAINST = (os.environ.get("REDRAY_TEST_AGAINST") or "redray").strip().lower()
if AGAINST not in ("redray", "ray"):
    raise RuntimeError(f"REDRAY_TEST_AGAINST must be 'redray' or 'ray', not {AGAINST!r}")

#: True when the tests run against real Ray instead of redray.
TESTING_RAY = AGAINST == "ray"

ray: Any = importlib.import_module(AGAINST)

#: Extra init() keywords: Ray starts faster without its dashboard (redray ignores it).
INIT_EXTRA: dict[str, Any] = {"include_dashboard": False} if TESTING_RAY else {}

#: How long a helper waits for a condition another process brings about. Generous: the
#: machine is small and shared. Reaching it means the test failed, not that it was slow.
CONDITION_TIMEOUT = 60.0

redray_only = None  # set below, so that importing pytest stays optional for workers


def wait_until(predicate: Callable[[], Any], timeout: float = CONDITION_TIMEOUT) -> Any:
    """Poll `predicate` until it returns something truthy (returned) or `timeout` passes
    (returns the last falsy value). This waits for a condition; it is never a delay."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(0.01)


def wait_for_path(path: str | os.PathLike, timeout: float = CONDITION_TIMEOUT) -> bool:
    """Block until `path` exists: the gate a test opens to let a task go on."""
    return bool(wait_until(lambda: os.path.exists(path), timeout))


@ray.remote
def gated(gate: str, value: Any = 1) -> Any:
    """Returns `value` once the test has created the file `gate`."""
    if not wait_for_path(gate):
        raise TimeoutError(f"the test never opened the gate {gate}")
    return value


def rendezvous(
    directory: str | os.PathLike, name: str, count: int, timeout: float = CONDITION_TIMEOUT
) -> int:
    """Check in as `name` under `directory`, then wait until `count` parties have checked in.

    Returns how many had checked in: `count` proves that `count` callers were running at
    the same time (none can leave before the last arrives), with no timing assumption.
    """
    Path(directory, name).touch()
    wait_until(lambda: len(os.listdir(directory)) >= count, timeout)
    return len(os.listdir(directory))


try:  # a marker for the tests that check redray-only API or internals
    import pytest

    redray_only = pytest.mark.skipif(TESTING_RAY, reason="redray-specific (not in Ray 2.x)")
except ImportError:  # a worker process without pytest: the marker is never needed there
    pass
