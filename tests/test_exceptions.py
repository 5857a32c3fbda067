"""The exception hierarchy, RayTaskError formatting, dual-class errors and pickling."""

from __future__ import annotations

import inspect
import logging
import pickle
import re
import sys
from typing import Any

import cloudpickle
import pytest

import redray.exceptions as rex
from redray.exceptions import (
    ActorAlreadyExistsError,
    ActorDiedError,
    ActorUnavailableError,
    GetTimeoutError,
    ObjectReconstructionFailedError,
    OwnerDiedError,
    RayActorError,
    RayError,
    RayTaskError,
    ReferenceCountingAssertionError,
    TaskCancelledError,
)

TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/app/job.py", line 3, in f\n'
    "    raise ValueError('bad input')\n"
    "ValueError: bad input"
)


def _task_error(cause: BaseException, traceback_str: str = TRACEBACK, **kwargs: Any) -> Any:
    return RayTaskError("f", traceback_str, cause, "ray::f", 42, "10.0.0.1", **kwargs)


def _raised(error: BaseException) -> BaseException:
    """`error` after being raised, so it has a traceback."""
    try:
        raise error
    except BaseException as caught:  # noqa: BLE001
        return caught


class CustomError(Exception):
    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code


class NotSubclassable(Exception):
    def __init_subclass__(cls, **kwargs: Any) -> None:
        raise TypeError("final class")


def _public_exception_classes(module: Any) -> dict[str, type]:
    return {
        name: value
        for name, value in vars(module).items()
        if inspect.isclass(value)
        and issubclass(value, BaseException)
        and value.__module__ == module.__name__
        and not name.startswith("_")
    }


# --- hierarchy --------------------------------------------------------------------------------


def test_every_ray_exception_class_has_a_redray_counterpart() -> None:
    pytest.importorskip("ray")
    import ray.exceptions

    missing = set(_public_exception_classes(ray.exceptions)) - set(_public_exception_classes(rex))
    assert not missing


def test_inheritance_matches_ray() -> None:
    pytest.importorskip("ray")
    import ray.exceptions

    def bases(cls: type) -> list[str]:
        return [c.__name__ for c in cls.__mro__]

    for name, ray_cls in _public_exception_classes(ray.exceptions).items():
        assert bases(getattr(rex, name)) == bases(ray_cls), name


def test_get_timeout_error_is_a_timeout_error() -> None:
    assert issubclass(GetTimeoutError, TimeoutError)
    assert issubclass(GetTimeoutError, RayError)


def test_actor_died_error_is_a_ray_actor_error() -> None:
    assert issubclass(ActorDiedError, RayActorError)
    assert issubclass(ActorUnavailableError, RayActorError)


def test_actor_already_exists_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="taken"):
        raise ActorAlreadyExistsError("The name 'a' is taken")


def test_reference_counting_assertion_error_is_an_assertion_error() -> None:
    assert isinstance(ReferenceCountingAssertionError("ab"), AssertionError)


# --- RayTaskError formatting ------------------------------------------------------------------


def test_task_error_str_is_a_header_then_the_remote_traceback() -> None:
    assert str(_task_error(ValueError("bad input"))) == (
        "ray::f() (pid=42, ip=10.0.0.1)\n"
        '  File "/app/job.py", line 3, in f\n'
        "    raise ValueError('bad input')\n"
        "ValueError: bad input"
    )


def test_task_error_str_matches_rays() -> None:
    pytest.importorskip("ray")
    import ray.exceptions

    cause = ValueError("bad input")
    theirs = str(ray.exceptions.RayTaskError("f", TRACEBACK, cause, "ray::f", 42, "10.0.0.1"))
    assert str(_task_error(cause)) == re.sub(r"\x1b\[[0-9;]*m", "", theirs)


def test_task_error_header_names_the_actor() -> None:
    error = _task_error(ValueError("x"), actor_repr="Counter(3)", actor_id="abc")
    assert str(error).splitlines()[0] == (
        "ray::f() (pid=42, ip=10.0.0.1, actor_id=abc, repr=Counter(3))"
    )


def test_task_error_without_a_traceback_header_still_starts_with_the_header() -> None:
    error = _task_error(ValueError("x"), traceback_str="ValueError: x")
    assert str(error) == "ray::f() (pid=42, ip=10.0.0.1)\nValueError: x"


def test_task_error_hides_redray_worker_frames() -> None:
    traceback_str = (
        "Traceback (most recent call last):\n"
        '  File "/site-packages/redray/worker/executor.py", line 9, in run\n'
        "    result = function(*args)\n"
        '  File "/app/job.py", line 3, in f\n'
        "    raise ValueError('bad input')\n"
        "ValueError: bad input"
    )
    assert str(_task_error(ValueError("bad input"), traceback_str)) == str(
        _task_error(ValueError("bad input"))
    )


def test_task_error_from_exception_formats_the_traceback() -> None:
    error = RayTaskError.from_exception(_raised(KeyError("k")), "module.g")
    text = str(error)
    assert text.startswith(f"ray::module.g() (pid={error.pid}, ip=")
    assert "in _raised" in text
    assert text.endswith("KeyError: 'k'")
    assert error.function_name == "module.g"


def test_task_error_defaults_pid_and_ip_to_this_process() -> None:
    error = RayTaskError("f", TRACEBACK, ValueError("x"))
    assert error.pid > 0
    assert error.ip
    assert error.proctitle == "ray::f"


# --- as_instanceof_cause ----------------------------------------------------------------------


def test_instanceof_cause_is_caught_by_the_cause_class() -> None:
    error = _task_error(ValueError("bad input")).as_instanceof_cause()
    with pytest.raises(ValueError) as info:
        raise error
    assert isinstance(info.value, RayTaskError)
    assert type(info.value).__name__ == "RayTaskError(ValueError)"


def test_instanceof_cause_keeps_its_str_and_task_fields() -> None:
    plain = _task_error(ValueError("bad input"))
    error = plain.as_instanceof_cause()
    assert str(error) == str(plain)
    assert (error.function_name, error.pid, error.ip) == ("f", 42, "10.0.0.1")
    assert isinstance(error.cause, ValueError)


def test_instanceof_cause_exposes_the_cause_attributes_and_args() -> None:
    error = _task_error(CustomError(7, "too big")).as_instanceof_cause()
    assert isinstance(error, CustomError)
    assert error.code == 7
    assert error.args == ("7: too big",)


def test_instanceof_cause_fills_builtin_exception_fields() -> None:
    cause = UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
    error = _task_error(cause).as_instanceof_cause()
    assert (error.encoding, error.reason) == ("utf-8", "invalid start byte")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.encoding, copy.cause.encoding) == ("utf-8", "utf-8")
    oserror = _task_error(FileNotFoundError(2, "No such file")).as_instanceof_cause()
    assert isinstance(oserror, FileNotFoundError)
    assert pickle.loads(pickle.dumps(oserror)).errno == 2


def test_instanceof_cause_makes_one_class_per_cause_class() -> None:
    first = _task_error(ValueError("a")).as_instanceof_cause()
    second = _task_error(ValueError("b")).as_instanceof_cause()
    assert type(first) is type(second)


def test_instanceof_cause_of_a_ray_error_is_the_error_itself() -> None:
    error = _task_error(RayError("internal"))
    assert error.as_instanceof_cause() is error


def test_instanceof_cause_of_an_uncombinable_class_is_the_error_itself(
    caplog: pytest.LogCaptureFixture,
) -> None:
    error = _task_error(NotSubclassable("x"))
    with caplog.at_level(logging.WARNING, logger="redray.exceptions"):
        assert error.as_instanceof_cause() is error
    assert "NotSubclassable" in caplog.text


def test_nested_task_error_is_still_caught_by_the_original_class() -> None:
    inner = _task_error(ValueError("bad input")).as_instanceof_cause()
    outer = RayTaskError.from_exception(_raised(inner), "g").as_instanceof_cause()
    assert isinstance(outer, ValueError)
    assert outer.function_name == "g"
    assert "ray::f()" in str(outer)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="ExceptionGroup is new in Python 3.11")
def test_instanceof_cause_of_an_exception_group() -> None:
    group_cls = ExceptionGroup  # noqa: F821
    group = group_cls("several", [ValueError("a"), KeyError("b")])
    error = _task_error(group).as_instanceof_cause()
    assert isinstance(error, group_cls)
    with pytest.raises(group_cls):
        raise error
    assert len(pickle.loads(pickle.dumps(error)).exceptions) == 2


# --- pickling ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps])
def test_instanceof_cause_survives_pickling(dumps: Any) -> None:
    error = _task_error(CustomError(7, "too big")).as_instanceof_cause()
    copy = pickle.loads(dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert copy.code == 7
    assert isinstance(copy, CustomError)


def test_instanceof_cause_of_a_local_class_survives_cloudpickle() -> None:
    class LocalError(Exception):
        pass

    error = _task_error(LocalError("x")).as_instanceof_cause()
    copy = cloudpickle.loads(cloudpickle.dumps(error))
    assert isinstance(copy, RayTaskError)
    assert type(copy.cause).__name__ == "LocalError"
    assert str(copy) == str(error)


def test_plain_task_error_survives_pickling() -> None:
    error = _task_error(ValueError("x"), actor_repr="A()", actor_id="id")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is RayTaskError
    assert str(copy) == str(error)
    assert copy.args[:2] + copy.args[3:] == error.args[:2] + error.args[3:]
    assert repr(copy.cause) == repr(error.cause) == repr(copy.args[2])


def test_unpicklable_cause_is_replaced_by_a_ray_error() -> None:
    class Holder(Exception):
        def __init__(self) -> None:
            super().__init__("holds a lock")
            self.lock = __import__("threading").Lock()

    error = _task_error(Holder())
    assert type(error.cause) is RayError
    assert "cannot be pickled" in str(error.cause)
    pickle.loads(cloudpickle.dumps(error.as_instanceof_cause()))


EXAMPLES: list[BaseException] = [
    RayError("generic"),
    rex.CrossLanguageError("from java"),
    TaskCancelledError("abcd01", "cancelled by user"),
    rex.LocalRayletDiedError(),
    rex.WorkerCrashedError(),
    RayActorError("ac7041", "broken", True, True),
    ActorDiedError("died of old age", actor_id="ac7041", preempted=True),
    ActorDiedError.from_task_error(_task_error(ValueError("init failed"))),
    ActorUnavailableError("connection reset", "ac7041"),
    rex.ActorUnschedulableError("node is dead"),
    rex.TaskUnschedulableError("node is dead"),
    rex.RaySystemError("boom", "tb"),
    rex.ObjectStoreFullError("no room"),
    rex.OutOfDiskError("no disk"),
    rex.OutOfMemoryError("killed to free memory"),
    rex.NodeDiedError("node 1 died"),
    rex.ObjectLostError("0b1e", None, "f.remote()"),
    rex.ObjectFetchTimedOutError("0b1e"),
    ReferenceCountingAssertionError("0b1e"),
    rex.ObjectFreedError("0b1e"),
    OwnerDiedError("0b1e", "10.0.0.2:1234"),
    ObjectReconstructionFailedError("0b1e", "OBJECT_UNRECONSTRUCTABLE_PUT"),
    GetTimeoutError("timed out"),
    rex.PlasmaObjectNotAvailable(),
    rex.AsyncioActorExit(),
    rex.RuntimeEnvSetupError("pip failed"),
    rex.TaskPlacementGroupRemoved(),
    rex.ActorPlacementGroupRemoved(),
    rex.PendingCallsLimitExceeded("too many"),
    rex.ObjectRefStreamEndOfStreamError(),
    rex.StreamingGeneratorReplayInconsistentError("3 != 4"),
    rex.RayChannelTimeoutError("slow"),
    rex.UnserializableException("Traceback ..."),
    rex.ActorHandleNotFoundError("gone"),
    rex.AuthenticationError("bad token"),
    rex.RpcError("unavailable", 14),
]


@pytest.mark.parametrize("error", EXAMPLES, ids=lambda e: type(e).__name__)
def test_every_exception_survives_pickling(error: BaseException) -> None:
    for dumps in (pickle.dumps, cloudpickle.dumps):
        copy = pickle.loads(dumps(_raised(error)))
        assert type(copy) is type(error)
        assert str(copy) == str(error)
        assert copy.__dict__ == error.__dict__


# --- messages ---------------------------------------------------------------------------------


def test_task_cancelled_message_names_the_task() -> None:
    assert "Task abcd01 was cancelled" in str(TaskCancelledError("abcd01"))
    assert "The task was cancelled" in str(TaskCancelledError())


def test_actor_died_of_a_failed_init_says_so() -> None:
    error = ActorDiedError.from_task_error(_task_error(ValueError("bad"), actor_id="a1"))
    assert error.actor_init_failed
    assert error.actor_id == "a1"
    assert "creation task" in str(error)
    assert "ValueError: bad input" in str(error)


def test_actor_died_without_a_cause_uses_the_base_message() -> None:
    error = ActorDiedError()
    assert str(error) == ActorDiedError.BASE_ERROR_MSG
    assert not error.actor_init_failed
    assert not error.preempted


def test_actor_unavailable_says_the_task_may_have_run() -> None:
    text = str(ActorUnavailableError("restarting", "a1"))
    assert "a1" in text
    assert "may or may not have been executed" in text


def test_object_reconstruction_failure_explains_the_reason() -> None:
    error = ObjectReconstructionFailedError("0b1e", "OBJECT_UNRECONSTRUCTABLE_RETRIES_DISABLED")
    assert "[OBJECT_UNRECONSTRUCTABLE_RETRIES_DISABLED]" in str(error)
    assert "max_retries" in str(error)


def test_id_first_errors_also_take_a_message() -> None:
    lost = rex.ObjectLostError("Object 0b1e was freed, or its node died.")
    assert (str(lost), lost.object_ref_hex) == ("Object 0b1e was freed, or its node died.", None)
    assert str(rex.OwnerDiedError("The owner of 0b1e exited.")) == "The owner of 0b1e exited."
    actor = RayActorError("The actor was killed.")
    assert (str(actor), actor.actor_id) == ("The actor was killed.", None)
    cancelled = TaskCancelledError("Cancelled by the user.")
    assert cancelled.task_id is None
    assert "Cancelled by the user." in str(cancelled)


def test_object_lost_error_with_an_id_says_which_object_and_where_it_was_made() -> None:
    text = str(rex.ObjectLostError("0b1e", None, "job.py:12"))
    assert text.startswith("Failed to retrieve object 0b1e. The ObjectRef was created at: job.py")
    assert "All copies of 0b1e have been lost" in text


def test_owner_died_names_the_owner() -> None:
    assert "10.0.0.2:1234" in str(OwnerDiedError("0b1e", "10.0.0.2:1234"))
