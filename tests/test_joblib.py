"""joblib's "ray" backend (`ray.util.joblib.register_ray()`), without scikit-learn.

Runs against redray, or against Ray 2.x with REDRAY_TEST_AGAINST=ray.
"""

from __future__ import annotations

import importlib
import os

import pytest
from target_ray import ray, redray_only

joblib = pytest.importorskip("joblib")

pytestmark = pytest.mark.timeout(120)

register_ray = importlib.import_module(f"{ray.__name__}.util.joblib").register_ray


def cube(x: int) -> int:
    return x**3


def pid_of(_: int) -> int:
    return os.getpid()


def fail_on_five(x: int) -> int:
    if x == 5:
        raise KeyError("five")
    return x


def test_parallel_runs_on_the_cluster_workers(ray_start) -> None:
    register_ray()
    with joblib.parallel_backend("ray", n_jobs=2):
        results = joblib.Parallel()(joblib.delayed(cube)(i) for i in range(30))
        pids = set(joblib.Parallel()(joblib.delayed(pid_of)(i) for i in range(30)))
    assert results == [i**3 for i in range(30)]
    assert os.getpid() not in pids


def test_n_jobs_minus_one_uses_the_cluster(ray_start) -> None:
    register_ray()
    with joblib.parallel_backend("ray"):
        assert joblib.Parallel(n_jobs=-1)(joblib.delayed(cube)(i) for i in range(10)) == [
            i**3 for i in range(10)
        ]


def test_an_exception_in_a_job_reaches_the_caller(ray_start) -> None:
    register_ray()
    with joblib.parallel_backend("ray", n_jobs=2):
        with pytest.raises(KeyError, match="five"):
            joblib.Parallel()(joblib.delayed(fail_on_five)(i) for i in range(10))


@redray_only
def test_the_backend_is_also_registered_as_redray(ray_start) -> None:
    register_ray()
    with joblib.parallel_backend("redray", n_jobs=2):
        assert joblib.Parallel()(joblib.delayed(cube)(i) for i in range(5)) == [
            0, 1, 8, 27, 64,
        ]  # fmt: skip
