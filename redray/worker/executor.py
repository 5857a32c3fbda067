"""Running one task inside a worker: arguments in, committed results (or error) out."""

from __future__ import annotations

import inspect
import os
import pickle
import traceback
from collections import Counter
from typing import Any

from redray import generators, runtime_context
from redray.client import task_events
from redray.client.core import CoreClient
from redray.control import keys, results
from redray.control.entry import Entry
from redray.exceptions import RayTaskError, RuntimeEnvSetupError, TaskCancelledError
from redray.host import node_ip
from redray.object_ref import ObjectRef
from redray.objectstore.serializability import serialization_error
from redray.objectstore.serialization import SerializedObject, deserialize, dumps, serialize
from redray.runtime_env.worker_env import CodeEnvironment
from redray.task_spec import Arg, TaskSpec
from redray.worker.functions import FunctionCache
from redray.worker.result_writer import ResultWriter


class TaskExecutor:
    def __init__(self, client: CoreClient, functions: FunctionCache) -> None:
        self._client = client
        self._functions = functions
        self._calls: Counter[str] = Counter()
        #: True while user code runs: only then may a cancel (SIGINT) interrupt the worker.
        self.in_user_code = False
        self._writer = ResultWriter(client.redis, client.commands)
        #: Environment variables the running task's runtime_env replaced, to restore.
        self._saved_env: dict[str, str | None] = {}
        self.code_env = CodeEnvironment(client.redis, client.node_id or "")

    def finish_commit(self) -> None:
        """Wait for Redis to confirm the last task's commit (call after reporting done)."""
        self._writer.finish()

    def run(self, spec: TaskSpec, gpu_ids: list[int]) -> bool:
        """Execute and commit one task; True when the worker must retire (max_calls)."""
        self._enter(spec, gpu_ids)
        try:
            entries, error = self._call(spec)
        finally:
            runtime_context.current.task_id = None
            runtime_context.current.task_name = None
            runtime_context.current.function_name = None
            self._restore_env()
        self._client.local_objects.release_freed_mappings()  # before the caller hears back
        if error is not None and self._should_retry(spec, error):
            self._retry(spec, entries[0])
        else:
            recorded = self._writer.recorder()
            self._client.commit_results(
                spec, entries, record_failure=error is not None, pipe=recorded
            )
            self._writer.send(recorded)
        self._calls[spec.function_id] += 1
        return bool(spec.max_calls) and self._calls[spec.function_id] >= spec.max_calls

    def _enter(self, spec: TaskSpec, gpu_ids: list[int]) -> None:
        current = runtime_context.current
        current.task_id = spec.task_id
        current.task_name = spec.name
        current.job_id = spec.job_id
        current.namespace = spec.namespace
        current.runtime_env = spec.runtime_env
        env_vars = (spec.runtime_env or {}).get("env_vars") or {}
        self._saved_env = {name: os.environ.get(name) for name in env_vars}
        os.environ.update(env_vars)
        current.attempt = spec.attempt
        current.gpu_ids = gpu_ids
        current.assigned_resources = {name: float(value) for name, value in spec.demand.items()}
        current.placement_group = spec.extra.get("pg")
        self._client.task_events.running(spec, current.node_id, current.worker_id)
        if gpu_ids or spec.demand.get("GPU"):
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(gpu) for gpu in gpu_ids)

    def _restore_env(self) -> None:
        """Undo the task's runtime_env env_vars (the next task gets its own)."""
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env = {}

    def _call(self, spec: TaskSpec) -> tuple[list[Entry], BaseException | None]:
        try:
            self.code_env.apply(spec.runtime_env)
        except RuntimeEnvSetupError as error:  # raised by get() as it is, as in Ray
            return results.error_entries(dumps(error), max(1, spec.num_returns)), None
        try:
            function = self._functions.load(spec.function_id)
            runtime_context.current.function_name = _function_name(function)
            args = [self._value(arg) for arg in spec.args]
            kwargs = {name: self._value(arg) for name, arg in spec.kwargs.items()}
            self._client.children = []
            self.in_user_code = True
            try:
                result = function(*args, **kwargs)
                mode = spec.extra.get("generator")
                if mode == "streaming":
                    return self._stream(spec, result)
                if mode == "dynamic":
                    result = self._dynamic(spec, result)
            finally:
                self.in_user_code = False
            return self._store_returns(spec, result), None
        except KeyboardInterrupt:
            return self._cancelled_entries(spec), None
        except Exception as error:
            return self._error_entries(spec, error), error

    def _commit_item(self, spec: TaskSpec, index: int, entry: Entry) -> None:
        """Commit one generator item at once, exactly once (its own pseudo task id)."""
        object_id = generators.item_id(spec.task_id, index)
        pipe = self._client.redis.pipeline(transaction=False)
        results.commit_entries(
            self._client.commands, pipe, f"{spec.task_id}.{index}", spec.owner, [object_id],
            [entry],
        )  # fmt: skip
        pipe.execute()

    def _stream(self, spec: TaskSpec, items: Any) -> tuple[list[Entry], BaseException | None]:
        """Commit each yielded item as it comes; an error becomes the last item."""
        count = 0
        try:
            for count, value in enumerate(items, 1):
                object_id = generators.item_id(spec.task_id, count)
                self._commit_item(
                    spec, count, self._client.store_serialized(object_id, serialize(value))
                )
        except Exception as error:
            count += 1
            self._commit_item(spec, count, self._error_entries(spec, error)[0])
        end = serialize(count)
        return [Entry("v", end.total_size, "", end.to_bytes())], None

    def _dynamic(self, spec: TaskSpec, items: Any) -> generators.DynamicObjectRefGenerator:
        """Store every item, then return one generator of their refs."""
        refs = []
        for index, value in enumerate(items, 2):
            object_id = generators.item_id(spec.task_id, index)
            self._commit_item(
                spec, index, self._client.store_serialized(object_id, serialize(value))
            )
            # Owned here until the returned generator (which contains the refs) holds them.
            self._client.refs.own(object_id)
            refs.append(ObjectRef(object_id, spec.owner))
        return generators.DynamicObjectRefGenerator(refs)

    def _cancelled_entries(self, spec: TaskSpec) -> list[Entry]:
        """The task was cancelled (redray.cancel): its children are cancelled too, unless
        the canceller said recursive=False (field r of the task's hash)."""
        client = self._client
        if client.children and client.redis.hget(keys.task(spec.task_id), "r") != b"0":
            client.cancel_children()
        return results.error_entries(dumps(TaskCancelledError(spec.task_id)), spec.num_returns)

    def _value(self, arg: Arg) -> Any:
        if arg[0] == "v":
            return deserialize(arg[1])
        object_id, entry = arg[1], Entry(*arg[2])
        self._client.objects.commit(object_id, entry)
        return self._client.materialize(object_id)

    def _store_returns(self, spec: TaskSpec, result: Any) -> list[Entry]:
        count = spec.num_returns
        if count == 0:
            return []
        if count == 1:
            values = [result]
        else:
            if inspect.isgenerator(result):  # a generator function with num_returns=N
                result = list(result)
            if not isinstance(result, (tuple, list)) or len(result) != count:
                got = len(result) if isinstance(result, (tuple, list)) else "1 (not a sequence)"
                raise ValueError(
                    f"Task {spec.name} returned {got} objects, but num_returns={count}."
                )
            values = list(result)
        return [
            self._client.store_serialized(object_id, _serialize_return(spec, value))
            for object_id, value in zip(spec.return_ids, values)
        ]

    def _error_entries(self, spec: TaskSpec, error: BaseException) -> list[Entry]:
        frames = traceback.format_exception(type(error), error, error.__traceback__)
        task_error = RayTaskError(
            function_name=spec.name,
            traceback_str="".join(frames),
            cause=error,
            proctitle=f"ray::{spec.name}",
            pid=os.getpid(),
            ip=node_ip(),
        )
        try:
            data = dumps(task_error)
        except Exception:  # the cause itself cannot be pickled: keep its text
            task_error = RayTaskError(
                function_name=spec.name,
                traceback_str="".join(frames),
                cause=RuntimeError(f"{type(error).__name__}: {error}"),
                proctitle=f"ray::{spec.name}",
                pid=os.getpid(),
                ip=node_ip(),
            )
            data = dumps(task_error)
        return results.error_entries(data, max(1, spec.num_returns))

    @staticmethod
    def _should_retry(spec: TaskSpec, error: BaseException) -> bool:
        if not spec.retry_exceptions:
            return False
        if spec.max_retries != -1 and spec.attempt >= spec.max_retries:
            return False
        if spec.retry_exceptions is True:
            return True
        return isinstance(error, tuple(spec.retry_exceptions))

    def _retry(self, spec: TaskSpec, failure: Entry) -> None:
        """Record this attempt's failure and queue the next attempt on this node (unless
        the task was cancelled meanwhile: requeue_task, the one retry path)."""
        client = self._client
        pipe = client.redis.pipeline(transaction=False)
        results.record_failure(pipe, spec, failure, client.node_id, retrying=True)
        error = task_events.error_fields(failure.data)
        client.task_events.retrying(spec, error, task_events.RUNNER)
        events = client.task_events.drain()
        if events is not None:
            pipe.execute_command(*events)
        spec.attempt += 1
        payload = pickle.dumps(spec, protocol=5)
        client.commands.call("requeue_task", spec.task_id, client.node_id or "", payload, pipe=pipe)
        pipe.execute()


def _function_name(function: Any) -> str:
    """What get_runtime_context().get_task_function_name() says: "<module>.<qualname>"."""
    name = getattr(function, "__qualname__", None) or getattr(function, "__name__", "")
    return f"{getattr(function, '__module__', '')}.{name}"


def _serialize_return(spec: TaskSpec, value: Any) -> SerializedObject:
    try:
        return serialize(value)
    except Exception as error:
        what = f"the return value {value!r} of task {spec.name}"
        raise serialization_error(what, value, error) from error
