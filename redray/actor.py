"""Actors: what `@redray.remote` makes of a class, and the handles to running actors.

An actor is a worker process dedicated to one instance of a class. Creating one exports the
class (like a function) and submits a creation task, placed like any task; the worker that
runs it instantiates the class and from then on serves the actor's mailbox, the Redis stream
`actor:<id>:mailbox`, where `handle.method.remote(...)` appends calls (see
redray/worker/actor_runtime.py). The actor's record (`actor:<id>`) says whether it is alive
and counts the handles to it: when the last handle anywhere is garbage collected, a
"terminate" entry is queued behind the pending calls (detached actors are not reference
counted; named ones are, as in Ray). `kill()` marks the actor dead and asks its node daemon
to SIGKILL it; calls on a dead actor fail with ActorDiedError, atomically (Lua `actor_call`).

Handles pickle by value (actor id and method table). Pickling one adds one to the handle
count on behalf of the copy, with a token that the first process to unpickle it adopts, so
the count never drops to zero while a handle is in flight.
"""

from __future__ import annotations

import inspect
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cloudpickle

from redray import generators, ids, runtime_context, session
from redray import options as options_module
from redray.control import keys
from redray.control.messages import KillMessage, xadd
from redray.exceptions import ActorAlreadyExistsError, ActorDiedError
from redray.object_ref import ObjectRef
from redray.objectstore.serialization import dumps
from redray.remote_function import Export
from redray.runtime_env import packages
from redray.task_spec import TaskSpec
from redray.util.placement_group import scheduling_strategy_for

#: Methods every actor has (Ray's names).
_BUILTIN_METHODS = ("__ray_ready__", "__ray_terminate__")
#: What @redray.method accepts; only num_returns has an effect.
_METHOD_OPTIONS = frozenset(
    {"num_returns", "concurrency_group", "max_task_retries", "retry_exceptions",
     "enable_task_events", "tensor_transport"}
)  # fmt: skip


@dataclass(frozen=True)
class MethodInfo:
    num_returns: int | str = 1
    is_async: bool = False
    signature: inspect.Signature | None = None


def method(*args: Any, **kwargs: Any) -> Any:
    """`@redray.method(num_returns=N)`: options of one actor method."""
    if args and len(args) == 1 and callable(args[0]) and not kwargs:
        return args[0]
    unknown = set(kwargs) - _METHOD_OPTIONS
    if args or unknown:
        raise TypeError(
            "The @redray.method decorator takes keyword arguments only, e.g. "
            f"@redray.method(num_returns=2); got {list(args) + sorted(unknown)}."
        )
    num_returns = kwargs.get("num_returns", 1)
    _check_method_returns(num_returns)

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        function.__redray_num_returns__ = num_returns  # type: ignore[attr-defined]
        return function

    return decorate


def _method_table(cls: type) -> dict[str, MethodInfo]:
    table: dict[str, MethodInfo] = {}
    for name, member in inspect.getmembers(cls, predicate=inspect.isfunction):
        if name.startswith("__") and name != "__call__":
            continue
        if inspect.isasyncgenfunction(member):
            continue  # async generator methods are not supported
        static = isinstance(inspect.getattr_static(cls, name), staticmethod)
        try:
            signature = inspect.signature(member)
            if not static:
                parameters = list(signature.parameters.values())[1:]
                signature = signature.replace(parameters=parameters)
            cloudpickle.dumps(signature)
        except Exception:
            signature = None
        default_returns = "streaming" if inspect.isgeneratorfunction(member) else 1
        table[name] = MethodInfo(
            getattr(member, "__redray_num_returns__", default_returns),
            inspect.iscoroutinefunction(member),
            signature,
        )
    for name in _BUILTIN_METHODS:
        table[name] = MethodInfo(1, False, None)
    return table


class _ClassExport(Export):
    """The pickled class (exported once, like a function) plus what callers check."""

    def __init__(self, cls: type) -> None:
        super().__init__(cls)
        self.methods = _method_table(cls)
        self.is_asyncio = any(info.is_async for info in self.methods.values())
        try:
            self.init_signature: inspect.Signature | None = inspect.signature(cls)
        except (TypeError, ValueError):
            self.init_signature = None


class ActorClass:
    """A class that runs as an actor: create instances with `.remote(...)`."""

    def __init__(
        self,
        cls: type,
        actor_options: dict[str, Any],
        *,
        _export: _ClassExport | None = None,
        _validated: bool = False,
    ) -> None:
        if not _validated:
            actor_options = options_module.validate_actor_options(actor_options, in_options=False)
        self._cls = cls
        self._options = actor_options
        self._export = _export or _ClassExport(cls)
        self.__doc__ = cls.__doc__
        self.__name__ = cls.__name__
        self.__qualname__ = cls.__qualname__
        self.__module__ = cls.__module__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"Actors cannot be instantiated directly. Instead of '{self.__name__}()', use "
            f"'{self.__name__}.remote()'."
        )

    def __repr__(self) -> str:
        return f"<ActorClass {self.__module__}.{self.__qualname__}>"

    def options(self, **actor_options: Any) -> ActorClass:
        """A copy of this actor class with some options changed."""
        overrides = options_module.validate_actor_options(actor_options, in_options=True)
        merged = options_module.merge_options(self._options, overrides)
        return ActorClass(self._cls, merged, _export=self._export, _validated=True)

    def bind(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("Ray DAGs (.bind) are not supported by redray.")

    def remote(self, *args: Any, **kwargs: Any) -> ActorHandle:
        """Create an actor; returns its handle at once (the actor starts in the background)."""
        export = self._export
        if export.init_signature is not None:
            try:
                export.init_signature.bind(*args, **kwargs)
            except TypeError as error:
                raise TypeError(f"{self.__name__}.remote(): {error}") from None
        opts = self._options
        resolved = options_module.resolve_actor_options(opts, is_asyncio=export.is_asyncio)
        placement, held = options_module.actor_resource_demand(opts)
        client = session.current_client()
        export.ensure()
        assert export.pickled is not None
        client.export_function(export.function_id, export.pickled)

        name = resolved.get("name")
        namespace = resolved.get("namespace") or runtime_context.current_namespace(client)
        detached = resolved.get("lifetime") == "detached"
        name_key = f"{namespace}\x00{name}" if name else ""
        actor_id = os.urandom(16).hex()
        meta = cloudpickle.dumps((self.__name__, export.methods))
        record = {
            "class": self.__name__,
            "meta": meta,
            "refcounted": "0" if detached else "1",
            "detached": "1" if detached else "0",
            "owner": client.client_id,
            "job": client.job_id,
            "max_restarts": resolved["max_restarts"],
        }
        if name:
            record.update(name=name, namespace=namespace)
        flat = [item for pair in record.items() for item in pair]
        existing = client.commands.call("actor_create", actor_id, name_key, *flat)
        if existing:
            existing = existing.decode() if isinstance(existing, bytes) else existing
            if resolved.get("get_if_exists"):
                return _handle_from_record(client, existing)
            raise ActorAlreadyExistsError(
                f"The name {name} (namespace={namespace}) is already taken. Please use a "
                "different name or get the existing actor using "
                f"redray.get_actor({name!r}, namespace={namespace!r})."
            )

        task_id = ids.new_task_id()
        spec = TaskSpec(
            task_id=task_id,
            name=f"{self.__name__}.__init__",
            function_id=export.function_id,
            args=[client.prepare_arg(value, self.__name__) for value in args],
            kwargs={k: client.prepare_arg(v, self.__name__) for k, v in kwargs.items()},
            return_ids=[ids.object_id_for(task_id, 1)],
            owner=client.client_id,
            demand=placement,
            job_id=client.job_id,
            namespace=runtime_context.current_namespace(client),
            max_retries=0,
            runtime_env=packages.for_task(
                client.redis, resolved.get("runtime_env"), runtime_context.current.runtime_env
            ),
            extra={
                "actor": True,
                "actor_id": actor_id,
                "class_name": self.__name__,
                "held": held,
                "max_concurrency": resolved["max_concurrency"],
                "is_asyncio": export.is_asyncio,
                "max_restarts": resolved["max_restarts"],
                "max_task_retries": resolved["max_task_retries"],
                "name": name or "",
            },
        )
        if not (resolved.get("enable_task_events", True) and client.task_events.enabled):
            spec.extra["te"] = False
        strategy = scheduling_strategy_for(spec, resolved, self.__name__)
        ready = client.submit(spec, strategy or "DEFAULT")[0]
        if not detached:
            _owned.setdefault(client.client_id, []).append(actor_id)
        return ActorHandle(actor_id, self.__name__, export.methods, _ready=ready, _acquire=False)


def make_actor_class(cls: type, actor_options: dict[str, Any]) -> ActorClass:
    return ActorClass(cls, actor_options)


# ---- handles ---------------------------------------------------------------------------


class ActorHandle:
    """A reference to a running actor: `handle.method.remote(...)` calls a method."""

    def __init__(
        self,
        actor_id: str,
        class_name: str,
        methods: dict[str, MethodInfo],
        *,
        _ready: ObjectRef | None = None,
        _acquire: bool = True,
        _token: str = "",
    ) -> None:
        self._actor_id_hex = actor_id
        self._class_name = class_name
        self._methods = methods
        self._ready = _ready
        self._client = session.current_client()
        self._dead_error: bytes | None = None
        if _acquire:
            self._client.commands.call("actor_handle_acquire", actor_id, _token)

    @property
    def _actor_id(self) -> _ActorID:
        return _ActorID(self._actor_id_hex)

    def __getattr__(self, name: str) -> ActorMethod:
        methods = self.__dict__.get("_methods")
        if methods is None or name not in methods:
            raise AttributeError(
                f"'{self.__dict__.get('_class_name', 'Actor')}' actor has no method {name!r}"
            )
        return ActorMethod(self, name, methods[name].num_returns)

    def __repr__(self) -> str:
        return f"Actor({self._class_name}, {self._actor_id_hex})"

    def __hash__(self) -> int:
        return hash(self._actor_id_hex)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorHandle) and other._actor_id_hex == self._actor_id_hex

    def __reduce__(self) -> tuple[Any, ...]:
        token = os.urandom(8).hex()
        actor_id = self._actor_id_hex
        client = session.current_client()

        client.batcher.add("HINCRBY", keys.actor(actor_id), "handles", 1)
        client.batcher.add("SADD", keys.actor_tokens(actor_id), token)
        return (_rebuild_handle, (actor_id, self._class_name, self._methods, token))

    def __del__(self) -> None:
        try:
            client = self._client
            if session.client_if_connected() is not client:
                return
            actor_id = self._actor_id_hex
            client.batcher.add(*client.commands.raw("actor_handle_release", actor_id))
        except Exception:  # interpreter shutdown
            pass

    def _death_fallback(self) -> bytes:
        if self._dead_error is None:
            self._dead_error = dumps(
                ActorDiedError(
                    f"The actor {self._actor_id_hex} ({self._class_name}) is unknown to this "
                    "cluster: it died long ago, or belongs to another cluster.",
                    actor_id=self._actor_id_hex,
                )
            )
        return self._dead_error


class _ActorID:
    def __init__(self, hex_id: str) -> None:
        self._hex = hex_id

    def hex(self) -> str:
        return self._hex

    def binary(self) -> bytes:
        return bytes.fromhex(self._hex)

    def __repr__(self) -> str:
        return f"ActorID({self._hex})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ActorID) and other._hex == self._hex

    def __hash__(self) -> int:
        return hash(self._hex)


def _rebuild_handle(
    actor_id: str, class_name: str, methods: dict[str, MethodInfo], token: str
) -> ActorHandle:
    return ActorHandle(actor_id, class_name, methods, _token=token)


def _check_method_returns(num_returns: Any) -> None:
    if num_returns in ("streaming", "dynamic"):
        return
    if not isinstance(num_returns, int) or isinstance(num_returns, bool) or num_returns < 0:
        raise ValueError(
            "num_returns must be a non-negative int, 'streaming' or 'dynamic'; "
            f"got {num_returns!r}."
        )


class ActorMethod:
    """`handle.method`: call it with `.remote(...)`."""

    def __init__(
        self, handle: ActorHandle, name: str, num_returns: int, task_events: bool = True
    ) -> None:
        self._handle = handle
        self._name = name
        self._num_returns = num_returns
        self._task_events = task_events

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            "Actor methods cannot be called directly. Instead of running "
            f"'object.{self._name}()', try 'object.{self._name}.remote()'."
        )

    def options(self, **method_options: Any) -> ActorMethod:
        num_returns = method_options.pop("num_returns", self._num_returns)
        task_events = method_options.pop("enable_task_events", self._task_events)
        method_options.pop("name", None)
        method_options.pop("concurrency_group", None)
        if method_options:
            raise ValueError(f"Unsupported actor method options: {sorted(method_options)}.")
        _check_method_returns(num_returns)
        return ActorMethod(self._handle, self._name, num_returns, bool(task_events))

    def bind(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("Ray DAGs (.bind) are not supported by redray.")

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        handle = self._handle
        qualified = f"{handle._class_name}.{self._name}"
        signature = handle._methods[self._name].signature
        if signature is not None:
            try:
                signature.bind(*args, **kwargs)
            except TypeError as error:
                raise TypeError(f"{qualified}.remote(): {error}") from None
        client = session.current_client()
        task_id = ids.new_task_id()
        num_returns = self._num_returns
        extra: dict[str, Any] = {"method": self._name}
        if num_returns == "streaming":
            return_ids = [generators.item_id(task_id, generators.STREAM_END_INDEX)]
            extra["generator"] = num_returns
        else:
            count = 1 if num_returns == "dynamic" else num_returns
            return_ids = [ids.object_id_for(task_id, i + 1) for i in range(count)]
            if num_returns == "dynamic":
                extra["generator"] = num_returns
        spec = TaskSpec(
            task_id=task_id,
            name=qualified,
            function_id="",
            args=[client.prepare_arg(value, qualified) for value in args],
            kwargs={k: client.prepare_arg(v, qualified) for k, v in kwargs.items()},
            return_ids=return_ids,
            owner=client.client_id,
            demand={},
            job_id=client.job_id,
            namespace=runtime_context.current_namespace(client),
            max_retries=0,
            extra=extra,
        )
        if not (self._task_events and client.task_events.enabled):
            spec.extra["te"] = False
        refs = client.submit_actor_call(handle._actor_id_hex, spec, handle._death_fallback())
        if num_returns == "streaming":
            return generators.ObjectRefGenerator(task_id, client.client_id)
        if num_returns == 0:
            return None
        return refs[0] if num_returns in (1, "dynamic") else refs


# ---- named actors, kill, shutdown ---------------------------------------------------------

#: Non-detached actors created by each client (driver), killed when it shuts down.
_owned: dict[str, list[str]] = {}
_owned_lock = threading.Lock()


def _handle_from_record(client: Any, actor_id: str) -> ActorHandle:
    meta = client.redis.hget(keys.actor(actor_id), "meta")
    if meta is None:
        raise ValueError(f"Failed to look up actor {actor_id}: it no longer exists.")
    class_name, methods = cloudpickle.loads(meta)
    return ActorHandle(actor_id, class_name, methods)


def list_named_actors(all_namespaces: bool = False) -> list[Any]:
    """The names of the live named actors of the current namespace; with `all_namespaces`,
    {"name", "namespace"} of every live named actor (as Ray's ray.util.list_named_actors)."""
    client = session.current_client()
    named = [(k.decode(), v.decode()) for k, v in client.redis.hgetall(keys.NAMED_ACTORS).items()]
    pipe = client.redis.pipeline(transaction=False)
    for _, actor_id in named:
        pipe.hget(keys.actor(actor_id), "state")
    current = runtime_context.current_namespace(client)
    found: list[Any] = []
    for (key, _), state in zip(named, pipe.execute()):
        namespace, _, name = key.partition("\x00")
        if state in (None, b"dead"):
            continue
        if all_namespaces:
            found.append({"name": name, "namespace": namespace})
        elif namespace == current:
            found.append(name)
    return found


def get_actor(name: str, namespace: str | None = None) -> ActorHandle:
    """A handle to the live actor called `name` in `namespace` (default: the current one)."""
    if not isinstance(name, str):
        raise TypeError(f"get_actor() takes the actor's name as a str, not {type(name).__name__}.")
    if not name:
        raise ValueError("Please supply a non-empty value to get_actor")
    if namespace is not None and (not isinstance(namespace, str) or not namespace):
        raise ValueError("namespace must be None or a non-empty string")
    client = session.current_client()
    namespace = namespace or runtime_context.current_namespace(client)
    actor_id = client.redis.hget(keys.NAMED_ACTORS, f"{namespace}\x00{name}")
    state = client.redis.hget(keys.actor(actor_id.decode()), "state") if actor_id else None
    if actor_id is None or state in (None, b"dead"):
        raise ValueError(f"Failed to look up actor with name '{name}'. This could because 1. You "
                         "are trying to look up a named actor you didn't create. 2. The named "
                         "actor died. 3. You did not use a namespace matching the namespace of "
                         f"the actor (namespace={namespace!r}).")  # fmt: skip
    return _handle_from_record(client, actor_id.decode())


def kill(actor: ActorHandle, *, no_restart: bool = True) -> None:
    """Stop an actor at once (SIGKILL of its process); its pending and later calls fail.

    With `no_restart=False` an actor with restarts left is restarted instead.
    """
    if not isinstance(actor, ActorHandle):
        raise ValueError(
            f"redray.kill() only supports actors; got an object of type {type(actor).__name__}."
        )
    client = session.current_client()
    client.batcher.flush()
    actor_id = actor._actor_id_hex
    client.direct.unlink(actor_id)
    if no_restart:
        error = ActorDiedError(
            f"The actor {actor_id} ({actor._class_name}) died because it was killed by "
            "redray.kill().",
            actor_id=actor_id,
        )
        client.commands.call("actor_dead", actor_id, dumps(error), "1")
    else:
        node = client.redis.hget(keys.actor(actor_id), "node")
        if node is not None:
            kill_request = KillMessage(actor_id)
            client.redis.execute_command(*xadd(keys.node_queue(node.decode()), kill_request))


def kill_owned_actors(client: Any) -> None:
    """Called at shutdown: a driver's non-detached actors end with it."""
    with _owned_lock:
        owned = _owned.pop(client.client_id, [])
    if not owned:
        return
    try:
        client.batcher.flush()
        pipe = client.redis.pipeline(transaction=False)
        for actor_id in owned:
            error = ActorDiedError(
                f"The actor {actor_id} died because the driver that created it shut down.",
                actor_id=actor_id,
            )
            client.commands.call("actor_dead", actor_id, dumps(error), "1", pipe=pipe)
        pipe.execute()
    except Exception:  # Redis already gone: the actors go with the cluster
        pass
