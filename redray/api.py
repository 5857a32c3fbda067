"""The public functions of redray: init/shutdown, get/put/wait, cluster introspection."""

from __future__ import annotations

import atexit
import itertools
import json
import logging
import operator
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import Any

from redray import runtime_context, session
from redray.client.core import CoreClient
from redray.client.node_view import read_nodes
from redray.client.worker_logs import start_worker_log_printer
from redray.cluster import EmbeddedCluster, resolve_address, start_embedded_cluster
from redray.control import keys
from redray.generators import ObjectRefGenerator
from redray.jobs.records import JOB_RUNTIME_ENV
from redray.object_ref import ObjectRef
from redray.runtime_env import packages
from redray.runtime_env import spec as runtime_env_spec

logger = logging.getLogger(__name__)

# Ray accepts these init() keywords; they have no meaning for redray and are ignored.
_IGNORED_INIT_KWARGS = {
    "configure_logging",
    "logging_format", "log_to_driver", "local_mode", "_system_config", "_temp_dir",
    "_plasma_directory", "_node_ip_address", "_enable_object_reconstruction",
    "enable_resource_isolation", "logging_config", "_metrics_export_port", "storage",
    "job_config", "_tracing_startup_hook", "_skip_env_hook", "node_ip_address",
    "logging_level", "object_spilling_directory", "_node_name",
    "_driver_object_store_memory", "num_workers", "redirect_output", "object_id_seed",
    "driver_mode", "num_redis_shards", "plasma_directory", "huge_pages",
}  # fmt: skip


#: The embedded cluster init() started (None when joined to a running one), and its
#: dashboard process and URL when it has one; the current client itself is in
#: redray/session.py.
_cluster: EmbeddedCluster | None = None
_dashboard: subprocess.Popen | None = None
_dashboard_url: str | None = None
_lock = threading.RLock()


class RayContext(dict):
    """What init() returns: Ray's address_info as a dict, plus attribute access."""

    @property
    def address_info(self) -> dict[str, Any]:
        return dict(self)

    @property
    def dashboard_url(self) -> str | None:
        return self.get("webui_url") or None

    def __enter__(self) -> RayContext:
        return self

    def __exit__(self, *exc: Any) -> None:
        shutdown()

    def disconnect(self) -> None:
        shutdown()


def init(
    address: str | None = None,
    *,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    resources: dict[str, float] | None = None,
    object_store_memory: int | None = None,
    ignore_reinit_error: bool = False,
    namespace: str | None = None,
    redis_address: str | None = None,
    _redis_password: str | None = None,
    runtime_env: dict[str, Any] | None = None,
    include_dashboard: bool | None = None,
    dashboard_host: str = "127.0.0.1",
    dashboard_port: int | None = None,
    enable_task_events: bool = True,
    task_events_max_per_job: int | None = None,
    task_events_ttl_s: float | None = None,
    **kwargs: Any,
) -> RayContext:
    """Start an embedded cluster (no address) or join a running one (address=).

    `runtime_env` is the job's default for its tasks and actors (theirs override it field by
    field); its working_dir and py_modules are packed here, before anything starts.
    `include_dashboard=True` serves an embedded cluster's dashboard (on `dashboard_port`,
    default 8265); a joined cluster's dashboard is its head's.
    Task events (the state API's task list and the timeline): `enable_task_events=False`
    turns them off for this job; `task_events_max_per_job` (default 100,000 task attempts,
    or what `redray start` set; Ray's `_system_config` key
    `task_events_max_num_task_in_gcs` also works) bounds its history, which is kept
    `task_events_ttl_s` seconds (default a day) after its last event.
    """
    global _cluster
    unknown = set(kwargs) - _IGNORED_INIT_KWARGS
    if unknown:
        raise TypeError(f"init() got unexpected keyword argument(s): {sorted(unknown)}")
    with _lock:
        if session.is_connected():
            if ignore_reinit_error:
                logger.info("Calling redray.init() again after it has already been called.")
                return _context()
            raise RuntimeError(
                "Maybe you called redray.init twice by accident? This error can be suppressed "
                "by passing in 'ignore_reinit_error=True' or by calling 'redray.shutdown()' "
                "prior to 'redray.init()'."
            )
        _check_resources(num_cpus, num_gpus, resources, object_store_memory)
        _exit_on_sigterm()
        grace = (kwargs.get("_system_config") or {}).get("redis_grace_s")
        if grace is not None:  # before anything starts: every process inherits it
            from redray.control.reconnect import set_grace_seconds

            set_grace_seconds(grace)
        if runtime_env is None and os.environ.get(JOB_RUNTIME_ENV):  # a submitted job's
            runtime_env = json.loads(os.environ[JOB_RUNTIME_ENV])
        runtime_env_spec.check("runtime_env", runtime_env)
        job_env, uploads = packages.prepare(runtime_env) if runtime_env else (None, {})
        target = resolve_address(address or redis_address)
        password = _redis_password or os.environ.get("REDRAY_REDIS_PASSWORD")
        cluster = None
        if target is None:
            cluster = start_embedded_cluster(
                num_cpus=num_cpus,
                num_gpus=num_gpus,
                resources=resources,
                object_store_memory=object_store_memory,
                metrics_export_port=kwargs.get("_metrics_export_port"),
            )
            redis_kwargs, node_id, shown_address = (
                cluster.redis_kwargs,
                cluster.node_id,
                cluster.address,
            )
        else:
            if num_cpus is not None or num_gpus is not None or resources:
                raise ValueError(
                    "When connecting to an existing cluster, num_cpus, num_gpus and resources "
                    "must not be provided: they are set when each node is started."
                )
            from redray.cluster import connect_kwargs, local_node_id

            redis_kwargs = connect_kwargs(target, password)
            node_id = local_node_id(redis_kwargs)
            shown_address = target
        client = CoreClient(
            redis_kwargs,
            node_id=node_id,
            job_id=_next_job_id(redis_kwargs),
            namespace=namespace or "",
            kind="driver",
        )
        client.nodes.refresh()
        packages.upload(client.redis, uploads)
        _start_job(
            client,
            kwargs.get("_system_config") or {},
            enable_task_events,
            task_events_max_per_job,
            task_events_ttl_s,
        )
        if kwargs.get("log_to_driver", True):
            start_worker_log_printer(client)
        _cluster = cluster
        session.set_client(client, shown_address)
        if cluster is not None and include_dashboard:
            _start_dashboard(cluster, dashboard_host, dashboard_port)
        runtime_context.current.runtime_env = job_env
        runtime_context.current.job_id = client.job_id
        runtime_context.current.node_id = node_id or ""
        runtime_context.current.namespace = client.namespace or client.job_id
        runtime_context.current.worker_id = client.client_id
        runtime_context.current.mode = "driver"
        return _context()


def _exit_on_sigterm() -> None:
    """As Ray's init() does: SIGTERM exits through sys.exit, so shutdown() runs (atexit)
    and an embedded cluster is stopped even when its node daemon is gone. A handler the
    program installed itself is kept."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(signum))


def _start_job(
    client: CoreClient,
    system_config: dict[str, Any],
    enabled: bool,
    max_per_job: int | None,
    ttl_seconds: float | None,
) -> None:
    """Record the job, and how its task events are kept (client/jobs.py)."""
    from redray.client import jobs

    default_cap, default_ttl = jobs.cluster_defaults(client.redis)
    cap = max_per_job or system_config.get("task_events_max_num_task_in_gcs") or default_cap
    if not isinstance(cap, int) or cap < 0:
        raise ValueError(f"task_events_max_per_job must be a non-negative int, got {cap!r}.")
    events = client.task_events
    events.enabled = bool(enabled) and system_config.get("task_events_report_interval_ms") != 0
    events.max_per_job = cap
    events.ttl_seconds = float(ttl_seconds or default_ttl)
    jobs.register_job(
        client.redis,
        client.job_id,
        driver_client_id=client.client_id,
        node_id=client.node_id,
        namespace=client.namespace,
        max_task_events=cap,
        ttl_seconds=events.ttl_seconds,
    )


def _context() -> RayContext:
    address = session.current_address()
    return RayContext(
        address=address,
        redis_address=address,
        gcs_address=address,
        node_id=session.current_client().node_id,
        session_dir=_cluster.session_dir if _cluster else None,
        webui_url=_dashboard_url,
    )


def _start_dashboard(cluster: EmbeddedCluster, host: str, port: int | None) -> None:
    from pathlib import Path

    from redray.dashboard.launcher import DEFAULT_PORT, start_dashboard

    global _dashboard, _dashboard_url
    try:
        _dashboard, _dashboard_url, _ = start_dashboard(
            cluster.redis_kwargs,
            None,
            host,
            port or DEFAULT_PORT,
            Path(cluster.session_dir) / "dashboard.log",
            owner_pid=os.getpid(),
        )
    except BaseException:
        shutdown()
        raise


def _next_job_id(redis_kwargs: dict[str, Any]) -> str:
    import redis

    number = redis.Redis(**redis_kwargs).incr(keys.JOB_COUNTER)
    return f"{number:08x}"


def _check_resources(
    num_cpus: float | None,
    num_gpus: float | None,
    resources: dict[str, float] | None,
    object_store_memory: int | None,
) -> None:
    for name, value in (("num_cpus", num_cpus), ("num_gpus", num_gpus)):
        if value is not None and (not isinstance(value, (int, float)) or value < 0):
            raise ValueError(f"init({name}=...) must be a non-negative number, got {value!r}.")
    if resources is not None:
        if not isinstance(resources, dict):
            raise TypeError(f"init(resources=...) must be a dict, got {type(resources).__name__}.")
        for name in ("CPU", "GPU"):
            if name in resources:
                raise ValueError(
                    f"Use the 'num_cpus' and 'num_gpus' keywords instead of '{name}' in "
                    "init(resources=...)."
                )
    if object_store_memory is not None and (
        not isinstance(object_store_memory, int) or object_store_memory <= 0
    ):
        raise ValueError("init(object_store_memory=...) must be a positive number of bytes.")


def is_initialized() -> bool:
    return session.is_connected()


def shutdown(_exiting_interpreter: bool = False) -> None:
    """Disconnect; an embedded cluster is stopped with every process it started."""
    global _cluster, _dashboard, _dashboard_url
    with _lock:
        client, cluster, dashboard = session.client_if_connected(), _cluster, _dashboard
        if client is None:
            return
        session.set_client(None)
        _cluster, _dashboard, _dashboard_url = None, None, None
        reachable = client.objects.failure is None  # else do not wait for Redis
        if cluster is None and reachable:  # a joined cluster lives on: end our actors
            from redray.actor import kill_owned_actors

            kill_owned_actors(client)
        from redray.client.placement_groups import shutdown_client

        shutdown_client(client, remove_owned=cluster is None and reachable)
        if cluster is None and reachable:  # an embedded cluster's history goes with it
            from redray.client import jobs

            try:
                jobs.end_job(
                    client.redis, client.job_id,
                    client.task_events.ttl_seconds,
                )  # fmt: skip
            except Exception:  # the cluster may be gone already: nothing to record
                pass
        client.close()
        if dashboard is not None:
            dashboard.terminate()
            dashboard.wait(timeout=10)
        if cluster is not None:
            cluster.stop()
        runtime_context.current.job_id = ""
        runtime_context.current.runtime_env = None
        user_metrics = sys.modules.get("redray.util.metrics")
        if user_metrics is not None:  # its node's metrics directory is gone with the node
            user_metrics.forget_node_directory()


atexit.register(shutdown)


#: The process's client (redray/session.py); the first use without init() calls init().
current_client = session.current_client
session.set_connector(init)


# ---- objects -------------------------------------------------------------------------


def put(value: Any, *, _owner: Any = None) -> ObjectRef:
    """Store `value` in the object store and return a ref to it."""
    return current_client().put(value)


def get(object_refs: ObjectRef | Sequence[ObjectRef], *, timeout: float | None = None) -> Any:
    """The value(s) of one ref or a list of refs; blocks until ready or `timeout` seconds."""
    _check_timeout(timeout)
    client = current_client()
    if isinstance(object_refs, ObjectRef):
        return client.get([object_refs.hex()], timeout)[0]
    if not isinstance(object_refs, (list, tuple)) or not all(
        isinstance(ref, ObjectRef) for ref in object_refs
    ):
        raise ValueError(
            "'object_refs' must either be an ObjectRef or a list of ObjectRefs, "
            f"got {type(object_refs).__name__}."
        )
    return client.get([ref.hex() for ref in object_refs], timeout)


def wait(
    object_refs: Sequence[ObjectRef | ObjectRefGenerator],
    *,
    num_returns: int = 1,
    timeout: float | None = None,
    fetch_local: bool = True,
) -> tuple[list[Any], list[Any]]:
    """(ready, not ready): returns once `num_returns` refs are ready or `timeout` seconds pass.

    A streaming ObjectRefGenerator is ready when its next item is, or its stream has ended
    (then next() raises StopIteration at once)."""
    if isinstance(object_refs, ObjectRef) or not isinstance(object_refs, (list, tuple)):
        raise TypeError(f"wait() expected a list of ObjectRef, got {type(object_refs).__name__}.")
    plain = set(map(type, object_refs)) <= {ObjectRef}  # the common, fast case
    if not plain and not all(
        isinstance(ref, (ObjectRef, ObjectRefGenerator)) for ref in object_refs
    ):
        bad = next(r for r in object_refs if not isinstance(r, (ObjectRef, ObjectRefGenerator)))
        raise TypeError(
            "wait() expected a list of ray.ObjectRef or ray.ObjectRefGenerator, "
            f"got list containing {type(bad)}"
        )
    _check_timeout(timeout)
    if not object_refs:
        return [], []
    if not isinstance(num_returns, int) or num_returns <= 0:
        raise ValueError(f"Invalid number of objects to return {num_returns}: must be > 0.")
    if num_returns > len(object_refs):
        raise ValueError(
            f"num_returns ({num_returns}) cannot be greater than the number of objects provided "
            f"to wait() ({len(object_refs)})."
        )
    if plain:
        ids = list(map(_ID_OF, object_refs))
        if len(set(ids)) != len(ids):
            raise ValueError("Wait requires a list of unique object refs.")
    else:
        groups = [
            ref.ready_ids() if isinstance(ref, ObjectRefGenerator) else [ref.hex()]
            for ref in object_refs
        ]
        if len({group[0] for group in groups}) != len(groups):
            raise ValueError("Wait requires a list of unique object refs.")
    if not object_refs:
        return [], []
    client = current_client()
    if plain:
        return _split_ready(object_refs, client.wait(ids, num_returns, timeout), num_returns)
    indexes = client.wait_any(groups, num_returns, timeout)
    chosen = sorted(indexes)[:num_returns]
    taken = set(chosen)
    ready = [object_refs[index] for index in chosen]
    return ready, [ref for index, ref in enumerate(object_refs) if index not in taken]


_ID_OF = operator.attrgetter("_id")


def _split_ready(
    refs: Sequence[Any], ready: list[bool], num_returns: int
) -> tuple[list[Any], list[Any]]:
    """(the first `num_returns` ready refs, the others), both in the order given."""
    if ready.count(True) > num_returns:
        last = [i for i, is_ready in enumerate(ready) if is_ready][num_returns - 1]
        ready = [is_ready and i <= last for i, is_ready in enumerate(ready)]
    return (
        list(itertools.compress(refs, ready)),
        list(itertools.compress(refs, [not is_ready for is_ready in ready])),
    )


def cancel(object_ref: ObjectRef, *, force: bool = False, recursive: bool = True) -> None:
    """Cancel a task: a pending one never runs, a running one is interrupted
    (KeyboardInterrupt), or with force=True its worker is killed. get() then raises
    TaskCancelledError. Cancelling a finished task does nothing."""
    if isinstance(object_ref, ObjectRefGenerator):
        object_ref = object_ref.end_ref()  # cancelling any of its objects cancels the task
    if not isinstance(object_ref, ObjectRef):
        raise TypeError(
            "redray.cancel() only supports ObjectRefs (or ObjectRefGenerators) of tasks, got "
            f"{type(object_ref).__name__}."
        )
    current_client().cancel(object_ref.hex(), force=force, recursive=recursive)


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and (not isinstance(timeout, (int, float)) or timeout < 0):
        raise ValueError(f"'timeout' must be None or a non-negative number, got {timeout!r}.")


# ---- cluster introspection -----------------------------------------------------------


def nodes() -> list[dict[str, Any]]:
    """Every node the cluster has known, in Ray's format."""
    client = current_client()
    result = []
    for state, alive in read_nodes(client.redis, include_dead=True):
        record = state.extra
        result.append(
            {
                "NodeID": state.node_id,
                "Alive": alive,
                "NodeManagerAddress": state.address,
                "MetricsExportPort": state.extra.get("metrics_export_port"),
                "NodeManagerHostname": state.hostname,
                "NodeName": state.address,
                "Resources": dict(state.total),
                "alive": alive,
                "IsHead": state.is_head,
                "ObjectStoreSocketName": record.get("store_dir", ""),
                "Labels": record.get("labels", {}),
            }
        )
    return result


def cluster_resources() -> dict[str, float]:
    """Total resources of the live nodes."""
    total: dict[str, float] = {}
    for node in current_client().nodes.refresh():
        for name, amount in node.total.items():
            total[name] = total.get(name, 0.0) + amount
    return total


def available_resources() -> dict[str, float]:
    """Resources not in use right now (as of the nodes' last heartbeats)."""
    available: dict[str, float] = {}
    for node in current_client().nodes.refresh():
        for name, amount in node.available.items():
            if amount > 1e-9:
                available[name] = available.get(name, 0.0) + amount
    return available


def get_gpu_ids() -> list[int]:
    """The GPU ids assigned to the current task or actor (empty in the driver)."""
    return list(runtime_context.current.gpu_ids)


def get_runtime_context() -> runtime_context.RuntimeContext:
    return runtime_context.RuntimeContext()


def error_info() -> list[dict[str, Any]]:
    """Failure records of tasks in this cluster, newest first (the early Ray API)."""
    client = current_client()
    return [json.loads(record) for record in client.redis.lrange(keys.ERRORS, 0, -1)]


# ---- actors (implemented in redray/actor.py) ------------------------------------------


def kill(actor: Any, *, no_restart: bool = True) -> None:
    """Kill an actor at once; its pending and later calls raise RayActorError."""
    from redray.actor import kill as kill_actor

    kill_actor(actor, no_restart=no_restart)


def get_actor(name: str, namespace: str | None = None) -> Any:
    """A handle to the named actor (ValueError if there is none)."""
    from redray.actor import get_actor as get_named_actor

    return get_named_actor(name, namespace)


def method(*args: Any, **kwargs: Any) -> Any:
    """`@redray.method(num_returns=N)` on an actor method."""
    from redray.actor import method as actor_method

    return actor_method(*args, **kwargs)
