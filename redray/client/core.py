"""CoreClient: one per process (driver or worker), the only code that talks to the cluster.

It submits tasks (resolving their ObjectRef arguments first, as Ray's owners do), stores
and fetches objects, and receives readiness notifications on one background reader.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis

from redray import ids, runtime_context
from redray.client import placement_groups, task_events
from redray.client.actor_cancel import cancel_actor_call
from redray.client.batcher import WriteBatcher
from redray.client.direct_calls import DirectCalls
from redray.client.node_loss import dead_node_that_fits, died_error
from redray.client.node_view import NodeView
from redray.client.notifications import NotificationReader
from redray.client.object_table import ObjectTable
from redray.client.ref_futures import FutureResolver
from redray.client.store_reset import current_epoch
from redray.client.task_events import TaskEventBuffer
from redray.control import keys, reconnect, results
from redray.control.entry import Entry
from redray.control.messages import CancelMessage, TaskMessage, xadd
from redray.control.scripts import Commands
from redray.exceptions import (
    GetTimeoutError,
    OwnerDiedError,
    RayError,
    RayTaskError,
    TaskCancelledError,
    TaskUnschedulableError,
)
from redray.object_ref import ObjectRef, _tracker
from redray.objectstore.local_objects import LocalObjects
from redray.objectstore.refcount import ReferenceCounter, parse_freed
from redray.objectstore.serializability import serialization_error
from redray.objectstore.serialization import (
    INLINE_MAX_BYTES,
    SerializedObject,
    deserialize,
    dumps,
    serialize,
)
from redray.objectstore.shm_store import SharedMemoryStore, store_directory
from redray.scheduler.placement import Placement
from redray.task_spec import Arg, TaskSpec
from redray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

if TYPE_CHECKING:
    from redray.client.worker_logs import WorkerLogPrinter
    from redray.worker.output import WorkerOutput

logger = logging.getLogger(__name__)
#: How long a job's worker output stays in Redis after its driver ends (`redray logs`).
LOG_HISTORY_SECONDS = 3600


@dataclass
class _WaitingSubmission:
    """A task held by its submitter until its ObjectRef arguments are committed."""

    spec: TaskSpec
    strategy: Any
    unresolved: set[str] = field(default_factory=set)


class CoreClient:
    def __init__(
        self,
        redis_kwargs: dict[str, Any],
        *,
        node_id: str | None,
        job_id: str,
        namespace: str,
        kind: str,
    ) -> None:
        self.redis_kwargs = redis_kwargs
        self.redis = reconnect.client(redis_kwargs)
        self.commands = Commands(self.redis)
        self.client_id = ids.new_client_id()
        self.node_id = node_id
        self.job_id = job_id
        self.namespace = namespace
        self.kind = kind
        self.store = SharedMemoryStore(store_directory(node_id)) if node_id else None
        self.objects = ObjectTable()
        self.nodes = NodeView(self.redis)
        self.placement = Placement()
        self.batcher = WriteBatcher(self.redis)
        #: This process's task events (client/task_events.py), sent with other writes.
        self.task_events = TaskEventBuffer(self.commands.raw, self.batcher.add)
        #: Functions exported by this process (kept to export again if Redis loses them).
        self._exported: dict[str, bytes] = {}
        self._owned_pending: set[str] = set()
        self._waiting_on: dict[str, list[_WaitingSubmission]] = {}
        self._infeasible: list[tuple[TaskSpec, Any]] = []
        #: Parked tasks that a dead node could have run: task id -> (parked at, node).
        self._parked_for_dead: dict[str, tuple[float, str]] = {}
        #: Tasks queued on a node and not finished: task id -> (node, return ids, demand,
        #: the batcher generation it was written in: client/store_reset.py).
        self._in_flight: dict[str, tuple[str, list[str], dict[str, float], int]] = {}
        #: Owned actor calls not finished: task id -> (actor id, return ids), for cancel().
        self._actor_calls: dict[str, tuple[str, list[str]]] = {}
        #: Tasks submitted by the task this worker is running (for recursive cancel).
        self.children: list[str] = []
        self._fetched_errors: set[str] = set()
        self._reader: NotificationReader | None = None
        self._reader_lock = threading.Lock()
        #: Set by a worker so its node daemon can lend the task's CPU while it blocks.
        self.on_block: Callable[[], None] | None = None
        self.on_unblock: Callable[[], None] | None = None
        #: A worker's stdout/stderr capture (worker/output.py): its lines ride on commits.
        self.output: WorkerOutput | None = None
        #: A driver's printer of its job's worker output (client/worker_logs.py).
        self.worker_logs: WorkerLogPrinter | None = None
        self._init_object_store()
        _tracker.on_zero = self._on_last_ref_dropped
        self.direct = DirectCalls(self)
        #: Completes ref.future() and `await ref` from the notifications (no thread per ref).
        self.futures = FutureResolver(self)
        #: Which Redis this process knows (client/store_reset.py).
        self.epoch = current_epoch(self.redis)
        self.register()

    def export_again(self) -> None:
        """Redis lost the function table: write this process's functions again."""
        pipe = self.redis.pipeline(transaction=False)
        for function_id, pickled in self._exported.items():
            pipe.set(keys.function(function_id), pickled, nx=True)
        pipe.execute()

    def register(self) -> None:
        """Enter the clients table, so that the node daemon can release this process's
        objects if it dies (redray/node/owners.py)."""
        process = {"pid": os.getpid(), "pidns": ids.pid_namespace()}
        record = json.dumps({**process, "node": self.node_id, "kind": self.kind})
        self.batcher.add("HSET", keys.CLIENTS, self.client_id, record)
        if self.node_id:
            self.batcher.add("SADD", keys.node_clients(self.node_id), self.client_id)

    def forget_borrowed_entries(self) -> None:
        """Some owner died: entries cached of objects this process borrowed may be stale."""
        self.objects.keep_only(self.refs.owned_ids())

    def _unregister(self) -> None:
        """A driver ends its job: what others still borrow from it raises OwnerDiedError,
        as in Ray. A worker's objects outlive it while borrowed."""
        if self.kind == "driver":
            freed = self.commands.call("owner_died", self.client_id)
            self.local_objects.delete_freed(parse_freed(freed or []))
        else:
            pipe = self.redis.pipeline(transaction=False)
            pipe.hdel(keys.CLIENTS, self.client_id)
            if self.node_id:
                pipe.srem(keys.node_clients(self.node_id), self.client_id)
            pipe.execute()

    def _init_object_store(self) -> None:
        """Object access and reference counting (redray/objectstore/)."""
        self.local_objects = LocalObjects(self.redis, self.commands, self.node_id, self.nodes)
        self.refs = ReferenceCounter(
            self.commands,
            lambda object_id: object_id in self._owned_pending,
            self.batcher,
            self.local_objects.delete_freed,
        )
        #: Refs a task's arguments hold until its result is committed (first return id ->
        #: refs): a pending task's arguments are never freed under it.
        self._task_refs: dict[str, list[ObjectRef]] = {}
        self._arg_refs = threading.local()
        _tracker.on_first = self.refs.on_first_ref

    def _hold_for_task(self, *refs: ObjectRef) -> None:
        """Keep refs used by the arguments being prepared; submit() attaches them."""
        held = getattr(self._arg_refs, "refs", None)
        if held is None:
            held = self._arg_refs.refs = []
        held.extend(refs)

    def _attach_arg_refs(self, spec: TaskSpec) -> None:
        held = getattr(self._arg_refs, "refs", None)
        if held:
            self._arg_refs.refs = None
            key = spec.return_ids[0] if spec.return_ids else spec.task_id  # no result: kept
            self._task_refs[key] = held

    # ---- lifecycle -------------------------------------------------------------------

    def ensure_reader(self) -> None:
        if self._reader is None:
            with self._reader_lock:
                if self._reader is None:
                    self._reader = NotificationReader(self)
                    self._reader.start()

    def close(self) -> None:
        _tracker.on_first = None
        _tracker.on_zero = None
        for object_id in list(_tracker.counts):  # this process's refs end with it
            self.refs.on_last_ref(object_id)
        _tracker.counts.clear()
        if self.objects.failure is not None:  # Redis is gone: do not wait for it again
            if self._reader is not None:
                self._reader.abandon()
            self.local_objects.close()
            return
        try:
            self.refs.close()
            self.task_events.close()
            self.batcher.close()
            self._unregister()
            if self._reader is not None:
                self._reader.stop()
            self.futures.close()
            if self.worker_logs is not None:
                self.worker_logs.close()
                self.redis.expire(keys.logs(self.job_id), LOG_HISTORY_SECONDS)
            self.direct.close()
            self.redis.delete(keys.notify(self.client_id))
        except redis.RedisError:
            pass
        self.local_objects.close()
        self.redis.close()

    # ---- functions -------------------------------------------------------------------

    def export_function(self, function_id: str, pickled: bytes) -> None:
        """Write a function to the function table once per process (and once in Redis)."""
        if function_id in self._exported:
            return
        self._exported[function_id] = pickled
        self.batcher.add("SET", keys.function(function_id), pickled, "NX")

    # ---- objects ---------------------------------------------------------------------

    def store_serialized(self, object_id: str, serialized: SerializedObject) -> Entry:
        """Keep a value inline when small, else write it once into this node's store."""
        size = serialized.total_size
        if serialized.contained_refs:  # refs inside a stored object live as long as it does
            self.refs.contain(object_id, [ref.hex() for ref in serialized.contained_refs])
        if size <= INLINE_MAX_BYTES or self.store is None:
            return Entry("v", size, "", serialized.to_bytes())
        self.refs.flush(wait=True)  # free what this process dropped before taking more memory
        self.local_objects.write(object_id, serialized)
        return Entry("s", size, self.node_id or "", b"")

    def put(self, value: Any) -> ObjectRef:
        if isinstance(value, ObjectRef):
            raise TypeError(
                "Calling 'put' on an ObjectRef is not allowed. If you really want to do this, "
                "you can wrap the ObjectRef in a list and call 'put' on it."
            )
        try:
            serialized = serialize(value)
        except Exception as error:
            raise serialization_error(f"the put value {value!r}", value, error) from error
        object_id = ids.object_id_for(ids.new_task_id(), 0)
        entry = self.store_serialized(object_id, serialized)
        self.objects.commit(object_id, entry)
        self._publish(object_id, entry)
        self.refs.own(object_id)
        return ObjectRef(object_id, self.client_id)

    def _publish(self, object_id: str, entry: Entry) -> None:
        """Write a put object's directory entry; anyone already waiting for it is told."""
        self.batcher.add(
            *self.commands.raw(
                "publish_object", object_id, self.client_id, entry.kind, entry.size,
                entry.node, entry.data,
            )
        )  # fmt: skip

    def get(self, object_ids: list[str], timeout: float | None) -> list[Any]:
        self._await(object_ids, len(object_ids), timeout)
        return [self.materialize(object_id) for object_id in object_ids]

    def wait(self, object_ids: list[str], num_returns: int, timeout: float | None) -> list[bool]:
        """Whether each of `object_ids` is ready, once `num_returns` are (or time is up)."""
        self._await(object_ids, num_returns, timeout, raise_on_timeout=False)
        ready, errors = self.objects.ready_and_errors(object_ids)
        # As in Ray, an error seen through wait() counts as handled: no "unhandled" log.
        self._fetched_errors.update(errors)
        return ready

    def wait_any(
        self, groups: list[list[str]], num_returns: int, timeout: float | None
    ) -> set[int]:
        """Indexes of the ready groups once `num_returns` are (or time is up); a group is
        ready when any of its objects is. wait() on streaming generators needs this: one is
        ready when its next item or its end-of-stream object is."""

        def ready() -> set[int]:
            return {i for i, group in enumerate(groups) if any(o in self.objects for o in group)}

        object_ids = [object_id for group in groups for object_id in group]
        self._block_until(object_ids, lambda: len(ready()) >= num_returns, timeout)
        return ready()

    def materialize(self, object_id: str) -> Any:
        entry = self.objects.get(object_id)
        if entry is None:
            entry = self._watch([object_id])[object_id]
        if entry.kind == "v":
            return deserialize(entry.data)
        if entry.kind == "e":
            self._fetched_errors.add(object_id)
            error = pickle.loads(entry.data)
            if isinstance(error, RayTaskError):
                raise error.as_instanceof_cause()
            raise error
        if entry.kind == "x":
            raise OwnerDiedError(object_id)
        return deserialize(self._read_shared(object_id, entry))

    def _read_shared(self, object_id: str, entry: Entry) -> memoryview:
        # This node's store is mapped directly; other nodes' objects are pulled into it
        # from their transfer servers first (see objectstore/local_objects.py).
        return self.local_objects.read(object_id, entry.node, entry.size)

    def _await(
        self,
        object_ids: list[str],
        needed: int,
        timeout: float | None,
        raise_on_timeout: bool = True,
    ) -> None:
        enough = self._block_until(
            object_ids, lambda: self.objects.count_present(object_ids) >= needed, timeout
        )
        if not enough and raise_on_timeout:
            raise GetTimeoutError(
                f"Get timed out after {timeout} s: "
                f"{len(object_ids) - self.objects.count_present(object_ids)} of "
                f"{len(object_ids)} object(s) not ready."
            )

    def _block_until(
        self, object_ids: list[str], satisfied: Callable[[], bool], timeout: float | None
    ) -> bool:
        """Wait (lending a worker's CPU meanwhile) until `satisfied()` holds for what is
        known of `object_ids`; False if `timeout` seconds passed first."""
        if satisfied():  # nothing to wait for: pending write replies are read later
            return True
        self.batcher.flush()
        if satisfied():
            return True
        with self.objects.lock:
            borrowed = [
                o for o in object_ids if o not in self.objects and o not in self._owned_pending
            ]
        if borrowed:
            self._watch(borrowed)
        if satisfied():
            return True
        self.ensure_reader()
        if self.objects.failure is not None:  # Redis was unreachable: is it back?
            self.redis.ping()  # raises RedisUnreachableError after the grace period
            self.objects.fail(None)
        deadline = None if timeout is None else time.monotonic() + timeout
        if self.on_block is not None:
            self.on_block()
        try:
            return self.objects.wait_until(satisfied, deadline)
        finally:
            if self.on_unblock is not None:
                self.on_unblock()

    @property
    def owned_pending(self) -> set[str]:
        """Results this process owns that are not committed yet."""
        return self._owned_pending

    def fetch_committed(self, object_ids: list[str]) -> dict[str, Entry]:
        """The committed entries among `object_ids`; this process hears of the others."""
        return self._watch(object_ids)

    def _watch(self, object_ids: list[str]) -> dict[str, Entry]:
        """Fetch committed entries, registering as a waiter for the rest (atomically)."""
        self.ensure_reader()
        found = {}
        results = self.commands.call("watch_objects", self.client_id, *object_ids)
        for object_id, fields in zip(object_ids, results):
            if fields:
                found[object_id] = Entry.from_fields(*fields)
                self.on_committed(object_id, found[object_id])
        return found

    # ---- notifications ---------------------------------------------------------------

    def on_committed(self, object_id: str, entry: Entry) -> None:
        """A result or a watched object became ready (called by the reader and by _watch)."""
        with self.objects.lock:
            self._owned_pending.discard(object_id)
            in_flight = self._in_flight.pop(ids.task_id_of(object_id), None)
            if in_flight is not None:
                self.placement.finished(in_flight[0], in_flight[2])
            self._actor_calls.pop(ids.task_id_of(object_id), None)
            dependents = self._waiting_on.pop(object_id, [])
            resolved = [w.spec for w in dependents if w.unresolved == {object_id}]
            self.objects.commit(object_id, entry)
            self.refs.committed(object_id)
            self._task_refs.pop(object_id, None)  # the task is done with its arguments
        if entry.kind == "e" and object_id not in _tracker.counts:
            self._report_unhandled_error(object_id)
        for spec in resolved:
            self.task_events.record(spec, task_events.PENDING_NODE_ASSIGNMENT)
        for waiting in dependents:
            waiting.unresolved.discard(object_id)
            if not waiting.unresolved:
                self._dispatch(waiting.spec, waiting.strategy)

    def _on_last_ref_dropped(self, object_id: str) -> None:
        entry = self.objects.get(object_id)
        if entry is not None and entry.kind == "e":
            self._report_unhandled_error(object_id)
        self.objects.discard(object_id)
        self.refs.on_last_ref(object_id)

    def _report_unhandled_error(self, object_id: str) -> None:
        if object_id in self._fetched_errors or os.environ.get("RAY_IGNORE_UNHANDLED_ERRORS"):
            self._fetched_errors.discard(object_id)
            return
        entry = self.objects.get(object_id)
        if entry is None or not ids.task_id_of(object_id):
            return
        self._fetched_errors.add(object_id)
        try:
            error = pickle.loads(entry.data)
        except Exception:  # an unpicklable error still deserves a line in the log
            error = "<error that could not be deserialized>"
        logger.error("Unhandled error (suppress with 'RAY_IGNORE_UNHANDLED_ERRORS=1'): %s", error)

    # ---- tasks -----------------------------------------------------------------------

    def prepare_arg(self, value: Any, task_name: str) -> Arg:
        if isinstance(value, ObjectRef):
            self._hold_for_task(value)
            return ("r", value.hex())
        try:
            serialized = serialize(value)
        except Exception as error:
            what = f"the argument {value!r} for a task or actor {task_name}"
            raise serialization_error(what, value, error) from error
        if serialized.total_size <= INLINE_MAX_BYTES or self.store is None:
            self._hold_for_task(*serialized.contained_refs)
            return ("v", serialized.to_bytes())
        # Large arguments go into the object store once, as Ray does with an implicit put.
        object_id = ids.object_id_for(ids.new_task_id(), 0)
        entry = self.store_serialized(object_id, serialized)
        self._publish(object_id, entry)
        self.refs.own(object_id)
        self._hold_for_task(ObjectRef(object_id, self.client_id))
        return ("o", object_id, tuple(entry))

    def submit(self, spec: TaskSpec, strategy: Any) -> list[ObjectRef]:
        """Queue a task; it is sent to a node once its ObjectRef arguments are ready."""
        for object_id in spec.return_ids:
            self.refs.own(object_id)
        refs = [ObjectRef(object_id, self.client_id) for object_id in spec.return_ids]
        self._attach_arg_refs(spec)
        if runtime_context.current.task_id is not None and spec.return_ids:
            self.children.append(spec.return_ids[0])
        dependencies = [arg[1] for arg in _all_args(spec) if arg[0] == "r"]
        with self.objects.lock:
            self._owned_pending.update(spec.return_ids)
            unresolved = {d for d in dependencies if d not in self.objects}
            if unresolved:
                waiting = _WaitingSubmission(spec, strategy, unresolved)
                for object_id in unresolved:
                    self._waiting_on.setdefault(object_id, []).append(waiting)
                borrowed = [o for o in unresolved if o not in self._owned_pending]
        self._record_submitted(
            spec,
            task_events.PENDING_ARGS_AVAIL if unresolved else task_events.PENDING_NODE_ASSIGNMENT,
        )
        if not unresolved:
            self._dispatch(spec, strategy)
        elif borrowed:
            self.batcher.flush()
            self._watch(borrowed)
        else:
            self.ensure_reader()
        return refs

    def _record_submitted(self, spec: TaskSpec, state: str, actor_id: str | None = None) -> None:
        fields = task_events.static_fields(spec, actor_id)
        if runtime_context.current.task_id:
            fields["parent_task_id"] = runtime_context.current.task_id
        self.task_events.record(spec, state, **fields)

    def _dispatch(self, spec: TaskSpec, strategy: Any) -> None:
        failed = self._resolve_args(spec)
        if failed is not None:
            self.fail_task(spec, failed)
            return
        if isinstance(strategy, PlacementGroupSchedulingStrategy):
            placement_groups.dispatch(self, spec, strategy)  # enqueue, hold or fail it
            return
        try:
            node_id = self._place(spec, strategy)
        except TaskUnschedulableError as error:
            self.fail_task(spec, error)
            return
        if node_id is None:  # maybe a node joined since the cache was read: look again
            self.nodes.refresh()
            node_id = self._place(spec, strategy)
        if node_id is None:
            self._park_infeasible(spec, strategy)
            return
        self.enqueue(node_id, spec)

    def hold_until(self, object_id: str, spec: TaskSpec, strategy: Any) -> bool:
        """Hold a task until `object_id` is committed, as for an argument (a placement
        group's ready object); False if it already is."""
        with self.objects.lock:
            if object_id in self.objects:
                return False
            waiting = _WaitingSubmission(spec, strategy, {object_id})
            self._waiting_on.setdefault(object_id, []).append(waiting)
        self._watch([object_id])
        return True

    def enqueue(self, node_id: str, spec: TaskSpec) -> None:
        payload = pickle.dumps(spec, protocol=5)
        self._in_flight[spec.task_id] = (
            node_id, spec.return_ids, spec.demand, self.batcher.generation
        )  # fmt: skip
        self.placement.placed(node_id, spec.demand)
        self.batcher.add(*xadd(keys.node_queue(node_id), TaskMessage(payload)))
        self.ensure_reader()

    def _place(self, spec: TaskSpec, strategy: Any) -> str | None:
        return self.placement.choose(spec.demand, strategy, self.nodes.snapshot(), self.node_id)

    def _resolve_args(self, spec: TaskSpec) -> RayError | None:
        """Replace ObjectRef arguments by their entries; a failed one fails the task."""

        def resolve(arg: Arg) -> Arg:
            if arg[0] != "r":
                return arg
            entry = self.objects.get(arg[1])
            if entry is None:
                entry = self._watch([arg[1]])[arg[1]]
            return ("o", arg[1], tuple(entry))

        spec.args = [resolve(arg) for arg in spec.args]
        spec.kwargs = {name: resolve(arg) for name, arg in spec.kwargs.items()}
        for arg in _all_args(spec):
            if arg[0] == "o" and arg[2][0] == "e":
                return pickle.loads(arg[2][3])
        return None

    def _park_infeasible(self, spec: TaskSpec, strategy: Any) -> None:
        died, any_node = dead_node_that_fits(self, spec.demand)
        if died is not None:  # the node that could run it died: it fails (node_loss.py)
            message = (
                f"The task {spec.name} requires {spec.demand}: the node {died} that could run "
                "it died, and no live node can. It fails with NodeDiedError unless a node "
                "that can run it comes back within seconds."
            )
        elif any_node:
            message = (
                f"The task {spec.name} requires {spec.demand}, which no node in the cluster "
                "can ever provide. It stays pending until a node with these resources joins."
            )
        else:
            message = (
                f"No node is registered in the cluster yet: the task {spec.name} stays "
                "pending until a node joins."
            )
        warnings.warn(message, stacklevel=4)
        logger.warning(message)
        with self.objects.lock:
            self._infeasible.append((spec, strategy))
            if died is not None:
                self._parked_for_dead[spec.task_id] = (time.monotonic(), died)

    def fail_parked_for_dead_nodes(self, parked_before: float) -> None:
        """Fail the parked tasks that only a dead node could run, parked before the time."""
        if not self._parked_for_dead:
            return
        with self.objects.lock:
            due = [t for t, (at, _) in self._parked_for_dead.items() if at < parked_before]
        if not due:
            return
        self.nodes.refresh()  # maybe it was only paused, and is back
        self.retry_infeasible()
        for task_id in due:
            if task_id not in self._parked_for_dead:
                continue  # placed after all
            _, node_id = self._parked_for_dead.pop(task_id)
            spec = self._withdraw_held(task_id)
            if spec is not None:
                self.fail_task(spec, died_error(f"task {spec.name} ({task_id})", node_id))

    def in_flight_tasks(self, sent_before: int | None = None) -> list[tuple[str, str, list[str]]]:
        """(task id, node id, return ids) of the owned tasks sent to a node, unfinished;
        with `sent_before`, only those written before that batcher generation."""
        with self.objects.lock:
            return [
                (task, node, returns)
                for task, (node, returns, _, generation) in self._in_flight.items()
                if sent_before is None or generation < sent_before
            ]

    def pending_actor_calls(self) -> list[tuple[str, str, list[str]]]:
        """(task id, actor id, return ids) of the owned actor calls not finished."""
        with self.objects.lock:
            return [(task, actor, rets) for task, (actor, rets) in self._actor_calls.items()]

    def retry_infeasible(self) -> None:
        """Called when nodes join: place the tasks no node could run before."""
        with self.objects.lock:
            parked, self._infeasible = self._infeasible, []
        for spec, strategy in parked:
            node_id = self._place(spec, strategy)
            if node_id is None:
                with self.objects.lock:
                    self._infeasible.append((spec, strategy))
            else:
                self._parked_for_dead.pop(spec.task_id, None)
                self.enqueue(node_id, spec)

    def fail_task(self, spec: TaskSpec, error: BaseException) -> None:
        """Commit `error` as every return value of a task that will not run."""
        entries = results.error_entries(dumps(error), len(spec.return_ids))
        self.commit_results(spec, entries, record_failure=False)

    def cancel(self, object_id: str, *, force: bool, recursive: bool) -> None:
        """Cancel the task that makes `object_id`: drop it if pending, interrupt it if running.

        The TaskCancelledError is committed first, atomically and only if the task has not
        finished, so the task's own result can no longer be committed after it.
        """
        if object_id in self.objects:
            return  # already here (finished, or a put): cancelling does nothing
        task_id = ids.task_id_of(object_id)
        actor_call = self._actor_calls.get(task_id)
        if actor_call is not None:
            actor_id, return_ids = actor_call
            cancel_actor_call(self, actor_id, task_id, return_ids, force)
            return
        error = TaskCancelledError(task_id)
        held = self._withdraw_held(task_id)
        if held is not None:
            entries = results.error_entries(dumps(error), len(held.return_ids))
            self.commit_results(held, entries, record_failure=False, final_state="cancelled")
            return
        self.batcher.flush()
        node_id, return_ids, *_ = self._in_flight.get(task_id, (None, [object_id], {}))
        if not self.commit_error(task_id, return_ids, error, final_state="cancelled"):
            return  # already finished: cancelling does nothing
        request = CancelMessage(task_id, force)
        targets = [node_id] if node_id else [n.node_id for n in self.nodes.refresh()]
        pipe = self.redis.pipeline(transaction=False)
        if not recursive:  # read by the interrupted task (executor._cancelled_entries)
            pipe.hset(keys.task(task_id), "r", 0)
        for target in targets:
            pipe.execute_command(*xadd(keys.node_queue(target), request))
        pipe.execute()

    def _withdraw_held(self, task_id: str) -> TaskSpec | None:
        """Take back a task still held here (waiting for arguments, or infeasible)."""
        with self.objects.lock:
            for waiting_list in self._waiting_on.values():
                for waiting in waiting_list:
                    if waiting.spec.task_id == task_id:
                        for object_id in waiting.unresolved:
                            self._waiting_on[object_id].remove(waiting)
                        return waiting.spec
            for index, (spec, _) in enumerate(self._infeasible):
                if spec.task_id == task_id:
                    del self._infeasible[index]
                    return spec
        return None

    def cancel_children(self) -> None:
        """Cancel the tasks the current task submitted (recursive cancellation)."""
        children, self.children = self.children, []
        for object_id in children:
            self.cancel(object_id, force=False, recursive=True)

    def commit_error(
        self, task_id: str, return_ids: list[str], error: BaseException, final_state: str
    ) -> bool:
        """Commit `error` as every return value of a task this process owns, once (False if
        the task already has a terminal state)."""
        pipe = self.redis.pipeline(transaction=False)
        results.fail_returns(
            self.commands, pipe, task_id, self.client_id, return_ids, dumps(error), final_state
        )
        committed = bool(pipe.execute()[0])
        if committed and self.task_events.enabled:
            job_id = runtime_context.current.job_id or self.job_id
            fields = task_events.describe_error(error)
            self.task_events.record_attempt(job_id, task_id, 0, task_events.FAILED, fields)
        return committed

    def commit_results(
        self,
        spec: TaskSpec,
        entries: list[Entry],
        *,
        record_failure: bool,
        pipe: redis.client.Pipeline | None = None,
        final_state: str = "finished",
        notify_owner: bool = True,
    ) -> bool:
        """Commit a task's return values once; True if this call committed them."""
        # Objects the task put (or submitted) must be visible before a result refers to them,
        # and so must the borrows it took (refcount.py).
        self.refs.flush()
        self.batcher.flush()
        own = pipe or self.redis.pipeline(transaction=False)
        if self.output is not None:  # the task's output lands before its result
            self.output.write_pending(own, spec)
        results.commit_outputs(self.commands, own, spec, entries, final_state, notify_owner)
        if record_failure:
            results.record_failure(own, spec, entries[0], self.node_id)
        self._record_end(spec, entries, final_state)
        if pipe is not None:
            return True
        return bool(own.execute()[0])

    def _record_end(self, spec: TaskSpec, entries: list[Entry], final_state: str) -> None:
        """The attempt's last event (sent with the next batch, see client/task_events.py)."""
        if task_events.enabled_for(spec):
            if entries and entries[0].kind == "e":
                fields = task_events.error_fields(entries[0].data, final_state)
                self.task_events.ended(spec, task_events.FAILED, fields)
            else:
                self.task_events.ended(spec, task_events.FINISHED, {})

    # ---- actors (added for redray/actor.py) --------------------------------------------

    def submit_actor_call(
        self, actor_id: str, spec: TaskSpec, dead_error: bytes
    ) -> list[ObjectRef]:
        """Queue a method call in an actor's mailbox, in this process's submission order.

        The call's arguments stay as prepared (ObjectRefs are resolved by the actor, so calls
        keep their order); on a dead actor the call fails at once with its death error
        (`dead_error` when the actor is unknown).
        """
        for object_id in spec.return_ids:
            self.refs.own(object_id)
        refs = [ObjectRef(object_id, self.client_id) for object_id in spec.return_ids]
        self._attach_arg_refs(spec)
        with self.objects.lock:
            self._owned_pending.update(spec.return_ids)
            if spec.return_ids:
                self._actor_calls[spec.task_id] = (actor_id, list(spec.return_ids))
        self._record_submitted(spec, task_events.SUBMITTED_TO_WORKER, actor_id)
        self.ensure_reader()  # it reads the replies of direct calls too
        if not self.direct.send(actor_id, spec, dead_error):
            payload = pickle.dumps(spec, protocol=5)
            args = (actor_id, spec.task_id, self.client_id, payload, dead_error, *spec.return_ids)
            self.batcher.add(*self.commands.raw("actor_call", *args))
        return refs


def _all_args(spec: TaskSpec) -> list[Arg]:
    return [*spec.args, *spec.kwargs.values()]
