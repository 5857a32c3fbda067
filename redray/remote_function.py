"""RemoteFunction: what `@redray.remote` makes of a function."""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from typing import Any

from redray import generators, ids, runtime_context, session
from redray import options as options_module
from redray.objectstore.code_pickle import dumps_with_sources
from redray.objectstore.serializability import serialization_error
from redray.runtime_env import packages
from redray.task_spec import TaskSpec
from redray.util.placement_group import scheduling_strategy_for


class Export:
    """A pickled function (or class), made once and shared by every `.options()` variant."""

    def __init__(self, target: Any) -> None:
        self._target = target
        self.pickled: bytes | None = None
        self.function_id = ""

    def ensure(self) -> None:
        if self.pickled is None:
            try:
                self.pickled = dumps_with_sources(self._target)
            except Exception as error:
                what = f"the {'class' if inspect.isclass(self._target) else 'function'} " + (
                    f"{self._target.__module__}.{self._target.__qualname__}"
                )
                raise serialization_error(what, self._target, error) from error
            self.function_id = hashlib.sha1(self.pickled).hexdigest()


class RemoteFunction:
    """A function that runs as a task: call `.remote(...)`, not the function itself."""

    def __init__(
        self,
        function: Callable[..., Any],
        task_options: dict[str, Any],
        *,
        _export: Export | None = None,
        _validated: bool = False,
    ) -> None:
        if not _validated:
            task_options = options_module.validate_task_options(task_options, in_options=False)
        self._function = function
        self._options = task_options
        self._export = _export or Export(function)
        self._signature = _signature_of(function)
        self._is_generator = inspect.isgeneratorfunction(function)
        self._name = f"{function.__module__}.{function.__qualname__}"
        self.__doc__ = function.__doc__
        self.__name__ = function.__name__
        self.__qualname__ = function.__qualname__
        self.__module__ = function.__module__
        self.__wrapped__ = function

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            "Remote functions cannot be called directly. Instead of running "
            f"'{self._name}()', try '{self._name}.remote()'."
        )

    def options(self, **task_options: Any) -> RemoteFunction:
        """A copy of this remote function with some options changed."""
        overrides = options_module.validate_task_options(task_options, in_options=True)
        merged = options_module.merge_options(self._options, overrides)
        return RemoteFunction(self._function, merged, _export=self._export, _validated=True)

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Submit a task; returns an ObjectRef (a list of them if num_returns > 1)."""
        return self._submit(args, kwargs)

    def bind(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("Ray DAGs (.bind) are not supported by redray.")

    def _submit(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self._signature is not None:
            try:
                self._signature.bind(*args, **kwargs)
            except TypeError as error:
                raise TypeError(f"{self._name}.remote(): {error}") from None
        client = session.current_client()
        export = self._export
        export.ensure()
        assert export.pickled is not None
        client.export_function(export.function_id, export.pickled)
        opts = options_module.resolve_task_options(self._options, is_generator=self._is_generator)
        num_returns = opts["num_returns"]
        task_id = ids.new_task_id()
        streaming = num_returns == "streaming"
        if streaming:
            return_ids = [generators.item_id(task_id, generators.STREAM_END_INDEX)]
        else:
            count = 1 if num_returns == "dynamic" else num_returns
            return_ids = [ids.object_id_for(task_id, index + 1) for index in range(count)]
        spec = TaskSpec(
            task_id=task_id,
            name=opts.get("name") or self.__qualname__,
            function_id=export.function_id,
            args=[client.prepare_arg(value, self._name) for value in args],
            kwargs={name: client.prepare_arg(v, self._name) for name, v in kwargs.items()},
            return_ids=return_ids,
            owner=client.client_id,
            demand=options_module.task_resource_demand(opts),
            job_id=runtime_context.current.job_id or client.job_id,
            namespace=runtime_context.current_namespace(client),
            max_retries=opts["max_retries"],
            retry_exceptions=_retry_exceptions(opts["retry_exceptions"]),
            max_calls=opts["max_calls"] or 0,
            runtime_env=packages.for_task(
                client.redis, opts.get("runtime_env"), runtime_context.current.runtime_env
            ),
            extra={"generator": num_returns} if isinstance(num_returns, str) else {},
        )
        if not (opts["enable_task_events"] and client.task_events.enabled):
            spec.extra["te"] = False
        strategy = scheduling_strategy_for(spec, opts, self._name)
        refs = client.submit(spec, strategy or "DEFAULT")
        if streaming:
            return generators.ObjectRefGenerator(task_id, client.client_id)
        if num_returns == 0:
            return None
        return refs[0] if num_returns in (1, "dynamic") else refs


def _signature_of(function: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(function)
    except (TypeError, ValueError):  # builtins without a signature: let the worker check
        return None


def _retry_exceptions(value: Any) -> bool | tuple[type, ...]:
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return bool(value)
