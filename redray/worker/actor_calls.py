"""Executing one actor method call: its arguments, the method, its return values or error.

The mailbox protocol (which calls to take, in what order, when to commit, cancel and
terminate) is worker/actor_runtime.py; this module only runs a call and says what its
results are, on the calling thread or on the actor's event loop.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from typing import Any

from redray import runtime_context
from redray.client.core import CoreClient
from redray.control import results
from redray.control.entry import Entry
from redray.exceptions import ActorDiedError, RayError
from redray.objectstore.serialization import dumps
from redray.task_spec import Arg, TaskSpec
from redray.worker.executor import TaskExecutor


class ActorCalls:
    """Runs the calls of one actor instance."""

    def __init__(
        self,
        client: CoreClient,
        executor: TaskExecutor,
        instance: Any,
        actor_id: str,
        class_name: str,
    ) -> None:
        self.client = client
        self.executor = executor
        self.instance = instance
        self.actor_id = actor_id
        self.class_name = class_name

    def outputs_of(self, spec: TaskSpec) -> tuple[list[Entry], bool]:
        """Run one call on this thread: its result entries, and whether it failed."""
        self._enter(spec)
        try:
            try:
                method, args, kwargs = self._prepare(spec)
            except RayError as error:  # a failed ObjectRef argument fails the call with it
                return self._error_arg_entries(spec, error), True
            result = method(*args, **kwargs)
            if inspect.iscoroutine(result):  # an async method on a thread: run it here
                result = asyncio.run(result)
            entries, error = self._outputs(spec, result)
            return entries, error is not None
        except Exception as raised:
            return self.executor._error_entries(spec, raised), True

    async def outputs_of_async(self, spec: TaskSpec) -> tuple[list[Entry], bool]:
        """Run one call on the actor's event loop (asyncio.CancelledError passes through:
        cancel() of the call)."""
        self._enter(spec)
        try:
            try:
                method, args, kwargs = self._prepare(spec)
            except RayError as error:
                return self._error_arg_entries(spec, error), True
            result = method(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
            entries, error = self._outputs(spec, result)
            return entries, error is not None
        except Exception as raised:
            return self.executor._error_entries(spec, raised), True

    def _prepare(self, spec: TaskSpec) -> tuple[Any, list[Any], dict[str, Any]]:
        name = spec.extra["method"]
        if name == "__ray_ready__":
            return (lambda: True), [], {}
        if name == "__ray_terminate__":
            return self._exit_now, [], {}
        method = getattr(self.instance, name)
        args = [self._value(arg) for arg in spec.args]
        kwargs = {key: self._value(arg) for key, arg in spec.kwargs.items()}
        return method, args, kwargs

    def _exit_now(self) -> None:
        error = ActorDiedError(
            f"The actor {self.actor_id} ({self.class_name}) exited (__ray_terminate__).",
            actor_id=self.actor_id,
        )
        self.client.commands.call("actor_dead", self.actor_id, dumps(error), "0")
        if self.client.output is not None:
            self.client.output.close()
        os._exit(0)

    def _value(self, arg: Arg) -> Any:
        if arg[0] == "r":
            return self.client.get([arg[1]], None)[0]
        return self.executor._value(arg)

    def _enter(self, spec: TaskSpec) -> None:
        current = runtime_context.current
        current.task_id = spec.task_id
        current.task_name = spec.name
        current.function_name = f"{type(self.instance).__module__}.{spec.name}"
        self.client.task_events.running(spec, current.node_id, current.worker_id)

    def _outputs(self, spec: TaskSpec, result: Any) -> tuple[list[Entry], BaseException | None]:
        """Store a call's return values; a generator method streams its items first."""
        mode = spec.extra.get("generator")
        if mode == "streaming":
            return self.executor._stream(spec, result)
        if mode == "dynamic":
            result = self.executor._dynamic(spec, result)
        return self.executor._store_returns(spec, result), None

    @staticmethod
    def _error_arg_entries(spec: TaskSpec, error: RayError) -> list[Entry]:
        """What each return of a call fails with when one of its ObjectRef arguments failed
        (the error get() raised for the argument)."""
        return results.error_entries(dumps(error), len(spec.return_ids))
