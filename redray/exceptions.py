"""The exceptions redray raises, with Ray's class names and inheritance.

Every class pickles without calling its constructor (see `RayError.__reduce__`), so errors can
be stored as task results and re-raised in another process whatever their constructor takes.
`RayTaskError.as_instanceof_cause()` makes an error that is also an instance of the remote
exception's class, so `except ValueError` catches a ValueError raised inside a task.
"""

from __future__ import annotations

import logging
import os
import string
import traceback
import types
import weakref
from typing import Any

import cloudpickle

from redray.host import node_ip

logger = logging.getLogger(__name__)


def _new_exception(
    cls: type[BaseException], args: tuple[Any, ...], builtin_init_of: type | None = None
) -> Any:
    """`cls.__new__(cls, *args)` without running a Python-level `__init__`.

    The `__init__` of a built-in exception class (`builtin_init_of`, by default `cls`) does run:
    it fills fields such as `UnicodeError.encoding`.
    """
    error = cls.__new__(cls, *args)
    init = (builtin_init_of or cls).__init__
    if isinstance(init, types.WrapperDescriptorType):
        init(error, *args)
    return error


def _restore(cls: type[BaseException], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    """Unpickle an exception by setting its state directly: constructors are not re-run."""
    error = _new_exception(cls, args)
    error.args = args
    error.__dict__.update(state)
    return error


def _id_or_message(value: str | None) -> tuple[str | None, str | None]:
    """Split the first argument of the classes whose Ray signature starts with an id.

    A hex string is the id, as in Ray; anything else is the whole error message, so that
    `ObjectLostError("what happened")` works too.
    """
    if value is None or (value and all(c in string.hexdigits for c in value)):
        return value, None
    return None, value


class RayError(Exception):
    """Base class of every redray exception."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (type(self), self.args, self.__dict__))


class CrossLanguageError(RayError):
    """An exception raised by a task written in another language."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class TaskCancelledError(RayError):
    """The task was cancelled (for example with `redray.cancel`) before it produced a result."""

    def __init__(self, task_id: str | None = None, error_message: str | None = None) -> None:
        super().__init__(task_id, error_message)
        if error_message is None:
            task_id, error_message = _id_or_message(task_id)
        self.task_id = task_id
        self.error_message = error_message

    def __str__(self) -> str:
        task = f"Task {self.task_id}" if self.task_id else "The task"
        message = f"{task} was cancelled, so its result will never be available."
        if self.error_message:
            message += f" {self.error_message}"
        return message


# Traceback frames from redray's own task-running machinery: hidden from users.
_INTERNAL_FRAME_MARKERS = ("/redray/worker/",)


class RayTaskError(RayError):
    """A task raised an exception; `cause` is that exception and `traceback_str` its traceback.

    Raised by `get` on any of the task's results. str() starts with a header naming the task's
    process, `ray::<name>() (pid=..., ip=...)`, followed by the remote traceback.
    """

    #: True on the classes made by `as_instanceof_cause()`.
    _is_instanceof_cause = False

    def __init__(
        self,
        function_name: str,
        traceback_str: str,
        cause: BaseException,
        proctitle: str | None = None,
        pid: int | None = None,
        ip: str | None = None,
        actor_repr: str | None = None,
        actor_id: str | None = None,
    ) -> None:
        self.function_name = function_name
        self.traceback_str = traceback_str
        self.cause = _picklable_cause(cause, traceback_str)
        self.proctitle = proctitle or f"ray::{function_name}"
        self.pid = pid or os.getpid()
        self.ip = ip or node_ip()
        self.actor_repr = actor_repr
        self.actor_id = actor_id
        # The same positional args as Ray's, for code that reads `args`.
        self.args = (function_name, traceback_str, self.cause, self.proctitle, self.pid, self.ip)

    @classmethod
    def from_exception(
        cls,
        cause: BaseException,
        function_name: str,
        *,
        proctitle: str | None = None,
        pid: int | None = None,
        ip: str | None = None,
        actor_repr: str | None = None,
        actor_id: str | None = None,
    ) -> RayTaskError:
        """Wrap an exception caught while running a task, formatting its traceback."""
        traceback_str = "".join(traceback.format_exception(cause))
        return cls(function_name, traceback_str, cause, proctitle, pid, ip, actor_repr, actor_id)

    def as_instanceof_cause(self) -> RayTaskError:
        """An error that is an instance of both RayTaskError and the cause's class.

        Attributes missing on the result are looked up on the cause, and its `args` are the
        cause's. If the cause's class cannot be combined with RayTaskError, logs a warning and
        returns `self`.
        """
        cause = _innermost_cause(self)
        cause_cls = type(cause)
        if issubclass(RayTaskError, cause_cls):
            return self  # `except` on the cause's class already catches a RayTaskError.
        try:
            dual = _new_exception(_dual_class(cause_cls), cause.args, cause_cls)
        except Exception as error:  # noqa: BLE001 - any failure means "cannot combine"
            logger.warning(
                "Cannot make an exception that is both a RayTaskError and a %s (%s); raising "
                "a plain RayTaskError. Its `cause` attribute holds the original exception.",
                cause_cls.__name__,
                error,
            )
            return self
        dual.__dict__.update(self.__dict__)
        return dual

    def __reduce__(self) -> tuple[Any, ...]:
        state = {**self.__dict__, "cause": _PickledByState.wrap(self.cause)}
        return (_restore_task_error, (state, self._is_instanceof_cause))

    def __str__(self) -> str:
        header = f"{self.proctitle}() (pid={self.pid}, ip={self.ip}"
        if self.actor_repr:
            header += f", actor_id={self.actor_id}, repr={self.actor_repr}"
        header += ")"
        lines = _without_internal_frames(self.traceback_str.strip().split("\n"))
        if not any(line.startswith("Traceback ") for line in lines):
            return "\n".join([header, *lines])
        return "\n".join(header if line.startswith("Traceback ") else line for line in lines)


def _picklable_cause(cause: BaseException, traceback_str: str) -> BaseException:
    """`cause`, or a RayError describing it when it cannot be pickled to travel to the caller."""
    try:
        cloudpickle.dumps(_PickledByState.wrap(cause))
    except Exception as error:  # noqa: BLE001 - pickling can fail with any exception type
        name = f"{type(cause).__module__}.{type(cause).__name__}"
        logger.warning("The exception %s raised by a task is not picklable: %s", name, error)
        return RayError(
            f"The task raised {name}, which cannot be pickled ({error}), so it was replaced by "
            "this error. Make the exception picklable to receive it as is.\n"
            f"Original exception:\n{traceback_str}"
        )
    return cause


def _innermost_cause(error: RayTaskError) -> BaseException:
    """The user exception under nested task errors (a task that failed getting another's)."""
    cause = error.cause
    while isinstance(cause, RayTaskError) and cause._is_instanceof_cause:
        cause = cause.cause
    return cause


def _without_internal_frames(lines: list[str]) -> list[str]:
    """Drop `  File ...` frames of redray internals and the source line under each."""
    kept: list[str] = []
    in_internal_frame = False
    for line in lines:
        if line.startswith("  File ") and any(m in line for m in _INTERNAL_FRAME_MARKERS):
            in_internal_frame = True
        elif in_internal_frame and line.startswith("    "):
            continue
        else:
            in_internal_frame = False
            kept.append(line)
    return kept


class _PickledByState:
    """Pickles an exception as class, args and __dict__, so its `__init__` is not re-run.

    The default pickling of exceptions calls `cls(*args)`, which fails for the many user
    exceptions whose `__init__` takes other arguments than it passes to `Exception.__init__`.
    """

    def __init__(self, error: BaseException) -> None:
        self.error = error

    @classmethod
    def wrap(cls, error: BaseException) -> BaseException | _PickledByState:
        """`error` wrapped, unless its class chose how it is pickled."""
        error_cls = type(error)
        if (
            error_cls.__reduce__ is BaseException.__reduce__
            and error_cls.__setstate__ is BaseException.__setstate__
        ):
            return cls(error)
        return error

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (type(self.error), self.error.args, self.error.__dict__))


def _restore_task_error(state: dict[str, Any], instanceof_cause: bool) -> RayTaskError:
    error = RayTaskError.__new__(RayTaskError)
    error.__dict__.update(state)
    error.args = (
        error.function_name,
        error.traceback_str,
        error.cause,
        error.proctitle,
        error.pid,
        error.ip,
    )
    return error.as_instanceof_cause() if instanceof_cause else error


def _attribute_of_cause(self: RayTaskError, name: str) -> Any:
    """`__getattr__` of the `as_instanceof_cause` classes: fall back to the cause's attributes."""
    cause = self.__dict__.get("cause")
    if cause is None or name.startswith("__"):
        raise AttributeError(name)
    return getattr(cause, name)


_dual_classes: weakref.WeakKeyDictionary[type, type] = weakref.WeakKeyDictionary()


def _dual_class(cause_cls: type[BaseException]) -> type[RayTaskError]:
    """The class deriving from RayTaskError and `cause_cls`, made once per cause class."""
    dual = _dual_classes.get(cause_cls)
    if dual is None:
        name = f"RayTaskError({cause_cls.__name__})"
        namespace = {
            "__module__": __name__,
            "__qualname__": name,
            "__getattr__": _attribute_of_cause,
            "_is_instanceof_cause": True,
        }
        dual = type(name, (RayTaskError, cause_cls), namespace)
        _dual_classes[cause_cls] = dual
    return dual


class LocalRayletDiedError(RayError):
    """The node manager of the node running the task died."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message or (
            "The node manager of the node running this task died, so the task was lost. "
            "Check the node's logs for why it exited."
        )


class WorkerCrashedError(RayError):
    """The worker process died unexpectedly while running the task."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message or (
            "The worker died unexpectedly while executing this task (for example it was "
            "killed, ran out of memory, or crashed in native code). Check the worker logs; "
            "set max_retries to retry the task automatically."
        )


class RayActorError(RayError):
    """The actor failed before finishing this task: it is dead (ActorDiedError) or
    temporarily unreachable (ActorUnavailableError)."""

    BASE_ERROR_MSG = "The actor experienced an error before finishing this task."

    def __init__(
        self,
        actor_id: str | None = None,
        error_msg: str | None = None,
        actor_init_failed: bool = False,
        preempted: bool = False,
    ) -> None:
        super().__init__(actor_id, error_msg, actor_init_failed, preempted)
        if error_msg is None:
            actor_id, error_msg = _id_or_message(actor_id)
        self.actor_id = actor_id
        self.error_msg = error_msg or self.BASE_ERROR_MSG
        self._actor_init_failed = actor_init_failed
        self._preempted = preempted

    def __str__(self) -> str:
        return self.error_msg

    @property
    def actor_init_failed(self) -> bool:
        """Whether the actor died because its `__init__` raised."""
        return self._actor_init_failed

    @property
    def preempted(self) -> bool:
        """Whether the actor died because its node was preempted."""
        return self._preempted


class ActorDiedError(RayActorError):
    """The actor is dead: its process died while running the task, or the task was sent to an
    actor that had already died.

    `cause` is the RayTaskError of a failed `__init__`, a message describing the death, or None.
    """

    BASE_ERROR_MSG = "The actor died unexpectedly before finishing this task."

    def __init__(
        self,
        cause: RayTaskError | str | None = None,
        *,
        actor_id: str | None = None,
        preempted: bool = False,
    ) -> None:
        if isinstance(cause, RayTaskError):
            error_msg = f"The actor died because of an error raised in its creation task, {cause}"
            super().__init__(actor_id or cause.actor_id, error_msg, True, preempted)
        else:
            super().__init__(actor_id, cause or self.BASE_ERROR_MSG, False, preempted)

    @staticmethod
    def from_task_error(task_error: RayTaskError) -> ActorDiedError:
        return ActorDiedError(task_error)


class ActorUnavailableError(RayActorError):
    """The actor is unreachable for now (e.g. restarting or a network problem) and may come
    back; the task may or may not have run."""

    def __init__(self, error_message: str, actor_id: str | None = None) -> None:
        error_msg = (
            f"The actor {actor_id} is unavailable: {error_message}. The task may or may not "
            "have been executed on the actor; retry it if it is safe to run twice."
        )
        super().__init__(actor_id, error_msg)


class RaySystemError(RayError):
    """redray itself failed (not the user's code)."""

    def __init__(self, client_exc: Any, traceback_str: str | None = None) -> None:
        super().__init__(client_exc, traceback_str)
        self.client_exc = client_exc
        self.traceback_str = traceback_str

    def __str__(self) -> str:
        message = f"System error: {self.client_exc}"
        if self.traceback_str:
            message += f"\ntraceback: {self.traceback_str}"
        return message


class AuthenticationError(RayError):
    """The cluster rejected this client's credentials."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UserCodeException(RayError):
    """Wraps an exception raised by user code; retry_exceptions still looks at the cause."""


class ObjectStoreFullError(RayError):
    """An object could not be stored because the object store is full of objects in use."""

    def __str__(self) -> str:
        return super().__str__() + (
            "\nThe object store is full of objects that are still referenced and cannot be "
            "evicted. Release references you no longer need (`del ref`) or give the object "
            "store more memory."
        )


class OutOfDiskError(RayError):
    """An object could not be stored or spilled because the disk is full."""

    def __str__(self) -> str:
        return super().__str__() + (
            "\nThe object cannot be created because the object store is full and the disk "
            "used for spilling is out of space. Free disk space on the node."
        )


class OutOfMemoryError(RayError):
    """The node ran low on memory and killed the task or actor to free some."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class NodeDiedError(RayError):
    """The node running the task or actor died or became unreachable."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ObjectLostError(RayError):
    """All copies of an object were lost (node failure or system error).

    Takes Ray's arguments, or just a message describing what happened.
    """

    def __init__(
        self,
        object_ref_hex: str | None,
        owner_address: str | None = None,
        call_site: str = "",
    ) -> None:
        super().__init__(object_ref_hex, owner_address, call_site)
        self.object_ref_hex, self.message = _id_or_message(object_ref_hex)
        self.owner_address = owner_address
        self.call_site = call_site

    def __str__(self) -> str:
        if self.message:
            return self.message
        message = f"Failed to retrieve object {self.object_ref_hex}."
        if self.call_site:
            message += f" The ObjectRef was created at: {self.call_site}"
        return f"{message}\n\n{self._explanation()}"

    def _explanation(self) -> str:
        return (
            f"All copies of {self.object_ref_hex} have been lost due to node failure. Check the "
            "logs of the cluster's nodes for what failed; objects returned by tasks with "
            "max_retries > 0 are rebuilt automatically."
        )


class ObjectFetchTimedOutError(ObjectLostError):
    """No copy of the object could be found in time."""

    def _explanation(self) -> str:
        return (
            f"Fetch for object {self.object_ref_hex} timed out because no locations were found "
            "for the object. This may indicate a system-level bug."
        )


class RpcError(RayError):
    """A call between redray processes failed."""

    def __init__(self, message: str, rpc_code: int | None = None) -> None:
        super().__init__(message, rpc_code)
        self.message = message
        self.rpc_code = rpc_code

    def __str__(self) -> str:
        return self.message


class ReferenceCountingAssertionError(ObjectLostError, AssertionError):
    """The object was deleted while still referenced (a reference-counting bug)."""

    def _explanation(self) -> str:
        return (
            "The object has already been deleted by the reference counting protocol. This "
            "should not happen; please report it."
        )


class ObjectFreedError(ObjectLostError):
    """The object was freed explicitly by the application."""

    def _explanation(self) -> str:
        return (
            "The object was manually freed with the internal `free` call. Only free objects "
            "once nothing needs them any more."
        )


class OwnerDiedError(ObjectLostError):
    """The process that owned the object (its creator) died while the object was still used."""

    def _explanation(self) -> str:
        owner = f" (owner: {self.owner_address})" if self.owner_address else ""
        return (
            f"The object's owner{owner} has exited. The owner is the process that first "
            "created the ObjectRef via `.remote()` or `put()`; keep it alive while others use "
            "its objects. Check its logs for why it exited."
        )


class ObjectReconstructionFailedError(ObjectLostError):
    """A lost object could not be rebuilt by re-running the task that made it.

    `reason` is the name of the failure, a key of `REASON_MESSAGES`.
    """

    REASON_MESSAGES = {
        "OBJECT_UNRECONSTRUCTABLE_MAX_ATTEMPTS_EXCEEDED": (
            "The object cannot be reconstructed because the maximum number of task retries "
            "has been exceeded. Increase them with `@remote(max_retries=N)`."
        ),
        "OBJECT_UNRECONSTRUCTABLE_LINEAGE_EVICTED": (
            "The object cannot be reconstructed because the record of the task that made it "
            "was evicted to save memory."
        ),
        "OBJECT_UNRECONSTRUCTABLE_PUT": (
            "The object cannot be reconstructed because it was created by put(), which has no "
            "task to re-run. Return the value from a task instead."
        ),
        "OBJECT_UNRECONSTRUCTABLE_RETRIES_DISABLED": (
            "The object cannot be reconstructed because the task that made it has "
            "max_retries=0. Enable retries with `@remote(max_retries=N)`."
        ),
        "OBJECT_UNRECONSTRUCTABLE_BORROWED": (
            "The object cannot be reconstructed because this process borrowed it from "
            "another; only the object's owner can rebuild it."
        ),
        "OBJECT_UNRECONSTRUCTABLE_TASK_CANCELLED": (
            "The object cannot be reconstructed because the task that would produce it was "
            "cancelled."
        ),
    }

    def __init__(
        self,
        object_ref_hex: str | None,
        reason: str | None = None,
        reason_message: str | None = None,
        owner_address: str | None = None,
        call_site: str = "",
    ) -> None:
        super().__init__(object_ref_hex, owner_address, call_site)
        self.reason = reason
        self.reason_message = reason_message or self.REASON_MESSAGES.get(
            reason or "", "The reason is unknown; please report this."
        )

    def _explanation(self) -> str:
        return f"[{self.reason or 'UNKNOWN'}] {self.reason_message}"


class GetTimeoutError(RayError, TimeoutError):
    """`get` or `wait` gave up before the objects were ready."""


class PlasmaObjectNotAvailable(RayError):
    """An object was not available within the given timeout."""


class AsyncioActorExit(RayError):
    """Raised inside an asyncio actor to make it exit (by `exit_actor()`)."""


class RuntimeEnvSetupError(RayError):
    """The runtime environment of a task or actor could not be set up."""

    def __init__(self, error_message: str | None = None) -> None:
        super().__init__(error_message)
        self.error_message = error_message

    def __str__(self) -> str:
        lines = ["Failed to set up runtime environment."]
        if self.error_message:
            lines.append(self.error_message)
        return "\n".join(lines)


class TaskPlacementGroupRemoved(RayError):
    """The placement group the task was scheduled in has been removed."""

    def __str__(self) -> str:
        return "The placement group corresponding to this task has been removed."


class ActorPlacementGroupRemoved(RayError):
    """The placement group the actor was scheduled in has been removed."""

    def __str__(self) -> str:
        return "The placement group corresponding to this Actor has been removed."


class PendingCallsLimitExceeded(RayError):
    """The caller has more unfinished calls to the actor than its `max_pending_calls`."""


class TaskUnschedulableError(RayError):
    """The task can never be scheduled (e.g. its NodeAffinity node is dead)."""

    def __init__(self, error_message: str) -> None:
        super().__init__(error_message)
        self.error_message = error_message

    def __str__(self) -> str:
        return f"The task is not schedulable: {self.error_message}"


class ActorUnschedulableError(RayError):
    """The actor can never be scheduled (e.g. its NodeAffinity node is dead)."""

    def __init__(self, error_message: str) -> None:
        super().__init__(error_message)
        self.error_message = error_message

    def __str__(self) -> str:
        return f"The actor is not schedulable: {self.error_message}"


class ObjectRefStreamEndOfStreamError(RayError):
    """A streaming generator has no more ObjectRefs to give."""


class StreamingGeneratorReplayInconsistentError(RaySystemError):
    """A retried streaming generator yielded a different number of objects than the first run."""


class OufOfBandObjectRefSerializationException(RayError):
    """An ObjectRef was pickled out of band (e.g. with cloudpickle directly)."""


class RayChannelError(RaySystemError):
    """A system error in a compiled-graph channel."""


class RayChannelTimeoutError(RayChannelError, TimeoutError):
    """A compiled-graph channel operation timed out."""


class RayCgraphCapacityExceeded(RaySystemError):
    """A compiled-graph channel's buffer is full."""


class RayDirectTransportError(RaySystemError):
    """A direct tensor transfer between actors failed."""


class UnserializableException(RayError):
    """A task's exception could not be unpickled; holds the original's formatted traceback."""

    def __init__(self, original_stack_trace: str) -> None:
        super().__init__(original_stack_trace)
        self._original_stack_trace = original_stack_trace

    def __str__(self) -> str:
        return (
            "Failed to deserialize exception. Make the exception class importable and picklable "
            f"where it is received.\nOriginal exception:\n{self._original_stack_trace}"
        )


class ActorAlreadyExistsError(ValueError, RayError):
    """An actor with the requested name already exists in the namespace.

    Also a ValueError, as in Ray, for backward compatibility.
    """

    def __init__(self, error_message: str) -> None:
        super().__init__(error_message)
        self.error_message = error_message

    def __str__(self) -> str:
        return self.error_message


class ActorHandleNotFoundError(ValueError, RayError):
    """The actor handle does not exist, e.g. it belongs to a previous session.

    Also a ValueError, as in Ray, for backward compatibility.
    """

    def __init__(self, error_message: str) -> None:
        super().__init__(error_message)
        self.error_message = error_message

    def __str__(self) -> str:
        return self.error_message


RAY_EXCEPTION_TYPES: list[type[BaseException]] = [
    PlasmaObjectNotAvailable,
    RayError,
    RayTaskError,
    WorkerCrashedError,
    RayActorError,
    ObjectStoreFullError,
    ObjectLostError,
    ObjectFetchTimedOutError,
    ReferenceCountingAssertionError,
    ObjectReconstructionFailedError,
    OwnerDiedError,
    GetTimeoutError,
    AsyncioActorExit,
    RuntimeEnvSetupError,
    TaskPlacementGroupRemoved,
    ActorPlacementGroupRemoved,
    PendingCallsLimitExceeded,
    LocalRayletDiedError,
    TaskUnschedulableError,
    ActorDiedError,
    ActorUnschedulableError,
    ActorUnavailableError,
    RayChannelError,
    RayChannelTimeoutError,
    OufOfBandObjectRefSerializationException,
    RayCgraphCapacityExceeded,
    UnserializableException,
    ActorAlreadyExistsError,
    ActorHandleNotFoundError,
    AuthenticationError,
]
