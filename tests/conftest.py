"""Shared fixtures: the module under test, a shared 2-CPU cluster, and fresh clusters.

* `ray_module`: `redray`, or real Ray when REDRAY_TEST_AGAINST=ray (see target_ray.py).
* `ray_start`: a 2-CPU embedded cluster shared by the tests of one module (started by the
  first test that asks for it, stopped when the module is done). A test that stopped it,
  or that ran on a fresh cluster in between, gets it started again.
* `ray_fresh`: a factory for tests that need their own cluster or test init/shutdown
  themselves: it stops any running cluster first; `ray_fresh(**init_kwargs)` starts one
  (num_cpus=2 unless given) and every cluster is stopped after the test.

Every test is bounded by pytest-timeout (120 s from pyproject.toml unless a test says
otherwise with @pytest.mark.timeout).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))

# Remote functions defined in a test module are pickled by reference (module + name), as
# Ray pickles them, so the workers must be able to import the test modules: every process
# a cluster starts inherits this environment. (Ray's workers fail the same way without it.)
_python_path = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
if TESTS_DIR not in _python_path:
    os.environ["PYTHONPATH"] = os.pathsep.join([TESTS_DIR, *_python_path])
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)

from target_ray import INIT_EXTRA, TESTING_RAY, ray  # noqa: E402


def pytest_report_header(config: pytest.Config) -> str:
    return f"end-to-end tests run against: {'ray ' + ray.__version__ if TESTING_RAY else 'redray'}"


@pytest.fixture(scope="session")
def ray_module() -> Iterator[Any]:
    """The module under test: redray, or ray when REDRAY_TEST_AGAINST=ray."""
    yield ray


def _stop(module: Any) -> None:
    if module.is_initialized():
        module.shutdown()


@pytest.fixture(scope="module")
def _module_cluster(ray_module: Any) -> Iterator[None]:
    """Owns the shared cluster of one test module: stops it when the module is done."""
    _stop(ray_module)
    yield
    _stop(ray_module)


@pytest.fixture
def ray_start(ray_module: Any, _module_cluster: None) -> Iterator[Any]:
    """The shared `init(num_cpus=2)` cluster; yields the module under test."""
    if not ray_module.is_initialized():
        ray_module.init(num_cpus=2, **INIT_EXTRA)
    yield ray_module


@pytest.fixture
def ray_start_with_dashboard(ray_module: Any, _module_cluster: None) -> Iterator[Any]:
    """The shared cluster, with Ray's dashboard when testing Ray (its state API needs it)."""
    if not ray_module.is_initialized():
        ray_module.init(num_cpus=2, **({"include_dashboard": True} if TESTING_RAY else {}))
    yield ray_module


@pytest.fixture
def ray_fresh(ray_module: Any) -> Iterator[Callable[..., Any]]:
    """Factory for a cluster of the test's own: `ray_fresh(num_gpus=2)` returns init()'s
    result. Any running cluster is stopped before the test, and after it."""
    _stop(ray_module)

    def start(**init_kwargs: Any) -> Any:
        init_kwargs.setdefault("num_cpus", 2)
        return ray_module.init(**{**INIT_EXTRA, **init_kwargs})

    yield start
    _stop(ray_module)


@pytest.fixture
def workdir(tmp_path: Any) -> Any:
    """A per-test directory for gates and rendezvous files that tasks see (same machine)."""
    return tmp_path
