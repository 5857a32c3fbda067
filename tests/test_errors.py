"""Task errors end to end: RayTaskError at get, propagation, error_info, unhandled errors.

Runs against redray, or against Ray 2.x with REDRAY_TEST_AGAINST=ray (error_info() is the
early Redis-era API: redray only).
"""

from __future__ import annotations

import gc
import logging
import os
import threading
from pathlib import Path

import pytest
from target_ray import CONDITION_TIMEOUT, ray, redray_only, wait_until


class CustomError(Exception):
    """An exception class defined in the test module: the worker imports it by name."""


class ErrorWithData(Exception):
    def __init__(self, code):
        super().__init__(f"failed with code {code}")
        self.code = code


@ray.remote
def raise_custom(message):
    raise CustomError(message)


@ray.remote
def raise_value_error():
    return int("not a number")


@ray.remote
def raise_with_data(code):
    raise ErrorWithData(code)


@ray.remote
def add_one(x, marker=None):
    if marker:
        Path(marker).touch()
    return x + 1


def test_exception_raises_ray_task_error_that_is_the_user_class(ray_start):
    ref = raise_custom.remote("boom-1234")
    with pytest.raises(ray.exceptions.RayTaskError) as info:
        ray.get(ref, timeout=CONDITION_TIMEOUT)
    error = info.value
    assert isinstance(error, CustomError)
    assert isinstance(error, ray.exceptions.RayError)
    assert isinstance(error.cause, CustomError)
    text = str(error)
    assert "boom-1234" in text
    assert "raise_custom" in text  # the task's name
    assert "raise CustomError(message)" in text  # the remote traceback's source line
    assert "test_errors.py" in text
    # Catching the user's own class works as well, on every get of the same ref.
    with pytest.raises(CustomError, match="boom-1234"):
        ray.get(ref, timeout=CONDITION_TIMEOUT)


def test_builtin_exception_class(ray_start):
    with pytest.raises(ValueError, match="not a number") as info:
        ray.get(raise_value_error.remote(), timeout=CONDITION_TIMEOUT)
    assert isinstance(info.value, ray.exceptions.RayTaskError)
    assert "raise_value_error" in str(info.value)


def test_custom_exception_with_its_own_constructor(ray_start):
    with pytest.raises(ErrorWithData) as info:
        ray.get(raise_with_data.remote(7), timeout=CONDITION_TIMEOUT)
    assert info.value.code == 7
    assert "failed with code 7" in str(info.value)


def test_exception_defined_inside_the_test(ray_start):
    class LocalError(Exception):
        pass

    @ray.remote
    def fail():
        raise LocalError("local")

    with pytest.raises(ray.exceptions.RayTaskError, match="local") as info:
        ray.get(fail.remote(), timeout=CONDITION_TIMEOUT)
    assert type(info.value.cause).__name__ == "LocalError"


def test_error_propagates_through_dependent_tasks(ray_start, workdir):
    marker = workdir / "dependent-ran"
    failed = raise_custom.remote("upstream")
    dependent = add_one.remote(failed, str(marker))
    chained = add_one.remote(add_one.remote(dependent))
    for ref in (dependent, chained):
        with pytest.raises(CustomError, match="upstream") as info:
            ray.get(ref, timeout=CONDITION_TIMEOUT)
        assert isinstance(info.value, ray.exceptions.RayTaskError)
    assert not marker.exists()  # a task whose argument failed does not run


def test_error_in_nested_task_propagates_to_the_driver(ray_start):
    @ray.remote
    def parent():
        return ray.get(raise_custom.remote("from the child"))

    with pytest.raises(CustomError, match="from the child") as info:
        ray.get(parent.remote(), timeout=CONDITION_TIMEOUT)
    assert isinstance(info.value, ray.exceptions.RayTaskError)


def test_error_in_one_of_several_returns(ray_start):
    @ray.remote(num_returns=2)
    def two():
        raise CustomError("both fail")

    first, second = two.remote()
    for ref in (first, second):
        with pytest.raises(CustomError):
            ray.get(ref, timeout=CONDITION_TIMEOUT)
    # get of a list raises too.
    with pytest.raises(CustomError):
        ray.get([ray.put(1), first], timeout=CONDITION_TIMEOUT)


def test_cluster_keeps_working_after_errors(ray_start):
    failures = [raise_custom.remote(str(i)) for i in range(5)]
    for ref in failures:
        with pytest.raises(CustomError):
            ray.get(ref, timeout=CONDITION_TIMEOUT)
    assert ray.get([add_one.remote(i) for i in range(5)]) == [1, 2, 3, 4, 5]


@redray_only
def test_error_info_lists_failed_tasks(ray_start):
    message = f"error-info-{os.getpid()}"
    with pytest.raises(CustomError):
        ray.get(raise_custom.remote(message), timeout=CONDITION_TIMEOUT)
    records = ray.error_info()
    assert isinstance(records, list)
    mine = [record for record in records if message in str(record)]
    assert mine, records
    assert any("raise_custom" in str(record) for record in mine)


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.ERROR)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture
def driver_output(caplog, capfd):
    """A function returning everything the driver logged or printed so far in the test.

    Ray's "ray" logger does not propagate to the root logger (where caplog listens), so a
    handler on the package's own logger collects its records as well.
    """
    caplog.set_level(logging.ERROR)
    package_logger = logging.getLogger(ray.__name__)
    collect = _Collect()
    package_logger.addHandler(collect)
    seen = []

    def everything():
        seen.append("".join(capfd.readouterr()))
        return "\n".join([*seen, caplog.text, *collect.lines])

    yield everything
    package_logger.removeHandler(collect)


def test_unfetched_error_is_logged_when_its_ref_is_dropped(ray_start, driver_output):
    output = driver_output
    message = f"never-fetched-{os.getpid()}"
    ref = raise_custom.remote(message)
    del ref  # dropped before (or after) the task fails: nobody will ever see the error
    gc.collect()
    assert wait_until(lambda: message in output()), output()
    assert "Unhandled error" in output()


def test_fetched_error_is_not_reported_as_unhandled(ray_start, driver_output):
    output = driver_output
    message = f"fetched-{os.getpid()}"
    ref = raise_custom.remote(message)
    with pytest.raises(CustomError):
        ray.get(ref, timeout=CONDITION_TIMEOUT)
    del ref
    gc.collect()
    # An error dropped after ours is reported; by then ours would have been too.
    marker = f"reported-{os.getpid()}"
    other = raise_custom.remote(marker)
    del other
    gc.collect()
    assert wait_until(lambda: marker in output()), output()
    assert message not in output()


class UnpicklableError(Exception):
    def __init__(self, message):
        super().__init__(message)
        self.lock = threading.Lock()  # cannot travel back to the caller as it is


def test_unpicklable_exception_still_raises_ray_task_error(ray_start):
    @ray.remote
    def fail():
        raise UnpicklableError("cannot pickle me")

    with pytest.raises(ray.exceptions.RayTaskError) as info:
        ray.get(fail.remote(), timeout=CONDITION_TIMEOUT)
    assert "UnpicklableError" in str(info.value)
    assert "cannot pickle me" in str(info.value)


def test_unserializable_return_value_fails_at_get(ray_start):
    @ray.remote
    def returns_a_lock():
        return threading.Lock()

    with pytest.raises(ray.exceptions.RayError):
        ray.get(returns_a_lock.remote(), timeout=CONDITION_TIMEOUT)
    # The worker survived, or was replaced: the cluster still runs tasks.
    assert ray.get(add_one.remote(1), timeout=CONDITION_TIMEOUT) == 2
