"""ray.util.inspect_serializability, and the same explanation in the TypeError raised for a
task argument, a put value, a return value or a function that cannot be serialized.

Runs against redray, or against Ray 2.x with REDRAY_TEST_AGAINST=ray.
"""

from __future__ import annotations

import io
import threading

import pytest
from target_ray import TESTING_RAY, ray

pytestmark = pytest.mark.timeout(120)

inspect_serializability = ray.util.inspect_serializability

_LOCK = threading.Lock()


class Holder:
    """Pickles by reference (a module-level class): only its lock cannot be pickled."""

    def __init__(self) -> None:
        self.fine = [1, 2, 3]
        self.lock = threading.Lock()


@ray.remote
def takes(value) -> int:
    return 1


@ray.remote
def returns_a_lock_holder() -> Holder:
    return Holder()


def test_a_serializable_object_has_no_failures() -> None:
    out = io.StringIO()
    assert inspect_serializability([1, {"a": 2}], name="fine", print_file=out) == (True, set())


def test_the_failing_attribute_is_found() -> None:
    out = io.StringIO()
    serializable, failures = inspect_serializability(Holder(), name="holder", print_file=out)
    assert serializable is False
    assert len(failures) == 1
    (failure,) = failures
    assert failure.path == ("holder", "lock")
    assert isinstance(failure.obj, type(_LOCK)) and isinstance(failure.parent, Holder)
    assert "FailTuple(lock [path=holder -> lock" in repr(failure)
    assert "was found to be non-serializable" in out.getvalue()


def test_a_global_captured_by_a_function_is_found() -> None:
    def uses_lock() -> bool:
        return _LOCK.locked()

    serializable, failures = inspect_serializability(
        uses_lock, name="uses_lock", print_file=io.StringIO()
    )
    assert serializable is False
    assert [failure.path[-1] for failure in failures] == ["_LOCK"]
    assert [failure.obj for failure in failures] == [_LOCK]


def test_it_prints_to_stdout_by_default(capsys) -> None:
    inspect_serializability(Holder(), name="holder")
    assert "Checking Serializability of" in capsys.readouterr().out


def test_an_unserializable_argument_is_explained(ray_start) -> None:
    with pytest.raises(TypeError, match="Could not serialize the argument") as raised:
        takes.remote(Holder())
    assert "Checking Serializability of" in str(raised.value)
    assert "lock" in str(raised.value)


def test_an_unserializable_put_is_explained(ray_start) -> None:
    with pytest.raises(TypeError, match="Could not serialize the put value") as raised:
        ray.put(Holder())
    assert "Checking Serializability of" in str(raised.value)


@pytest.mark.skipif(TESTING_RAY, reason="Ray 2.60 reports the bare pickling error here")
def test_an_unserializable_return_value_is_explained(ray_start) -> None:
    with pytest.raises(TypeError, match="Could not serialize the return value") as raised:
        ray.get(returns_a_lock_holder.remote())
    assert "Checking Serializability of" in str(raised.value)
