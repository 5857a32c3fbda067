"""The node daemon: one per node, running the local scheduler, the workers and the store.

A single thread multiplexes everything with a selector: the blocking read of the node's
task queue (a Redis stream, read through its own connection), every worker's channel,
the process that owns an embedded cluster, and signals. Having no threads is what makes
forking workers from it safe.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pickle
import selectors
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from redray import ids
from redray.client import task_events
from redray.client.store_reset import current_epoch
from redray.client.task_events import NODE, TaskEventBuffer
from redray.control import keys, reconnect, results
from redray.control.direct_marker import started_marker
from redray.control.messages import (
    CancelMessage,
    KillMessage,
    NodeMessage,
    ReleaseMessage,
    ReserveMessage,
    TaskMessage,
    decode_node_message,
    xadd,
)
from redray.control.raw import RawConnection
from redray.control.scripts import Commands
from redray.exceptions import ActorDiedError, WorkerCrashedError
from redray.host import node_ip
from redray.node import leftovers
from redray.node.bundles import NodePlacementGroups
from redray.node.metrics import NodeMetrics
from redray.node.owners import OwnerReaper
from redray.node.recovery import NodeRecovery
from redray.node.redis_launcher import wait_until_up
from redray.node.worker_pool import WorkerPool
from redray.objectstore import transfer
from redray.objectstore.serialization import dumps
from redray.objectstore.shm_store import SharedMemoryStore, store_directory
from redray.runtime_env import packages
from redray.scheduler.local_scheduler import Dispatch, QueuedTask, StartWorkers
from redray.scheduler.node_core import (
    Ack,
    ActorExited,
    ActorOfGroupDead,
    FailTask,
    GroupRemoved,
    Kill,
    NodeAction,
    NodeCore,
    QueuedTaskCancelled,
    RetryTask,
)
from redray.task_spec import TaskSpec
from redray.worker.output import OutputPlace

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 0.5
HEARTBEAT_TTL_SECONDS = 5
_READ_BATCH = 256
#: Finished tasks are acknowledged on the queue in batches: an unacknowledged entry only
#: matters if this daemon dies, and then its tasks are re-run anyway.
_ACK_BATCH = 128
#: How often idle workers beyond the prestarted pool are told to exit.
_RETIRE_IDLE_SECONDS = 10.0


@dataclass
class NodeConfig:
    node_id: str
    redis_kwargs: dict[str, Any]
    resources: dict[str, float]
    is_head: bool = False
    prestart_workers: int = 1
    #: An embedded cluster ends when the driver that started it ends (even by SIGKILL).
    owner_pid: int | None = None
    #: The redis-server this node must stop when it ends (embedded cluster only).
    owned_redis_pid: int | None = None
    ready_fd: int | None = None
    #: The embedded cluster's session directory, deleted when its driver ends.
    session_dir: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    #: Where workers keep their stdout/stderr files (`redray logs`); default: a directory
    #: per node under the system's temporary directory.
    log_dir: str | None = None
    #: Serve Prometheus metrics on this port (0: any free port); None: no metrics.
    metrics_export_port: int | None = None


class NodeDaemon:
    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.node_id = config.node_id
        # Decided once, here: its workers (log prefixes, errors) inherit the same address.
        os.environ["REDRAY_NODE_IP"] = node_ip(config.redis_kwargs)
        # Fails fast: the loop itself rides out a lost connection (_ride_out).
        self.redis = reconnect.client(config.redis_kwargs, retry=False)
        self.commands = Commands(self.redis)
        self.recovery = NodeRecovery(self.redis, self.commands, config.node_id)
        self.store = SharedMemoryStore(store_directory(config.node_id))
        self.owners = OwnerReaper(self.redis, self.commands, config.node_id, self.store)
        #: Every decision of this node (scheduler/node_core.py); this class performs them.
        self.core = NodeCore(dict(config.resources))
        self.scheduler = self.core.scheduler
        self.selector = selectors.DefaultSelector()
        self.log_dir = config.log_dir or os.path.join(
            tempfile.gettempdir(), f"redray-logs-{config.node_id}"
        )
        self.pool = WorkerPool(
            config.redis_kwargs,
            config.node_id,
            self._close_in_child,
            OutputPlace(self.log_dir, node_ip()),
        )
        self._queue_key = keys.node_queue(config.node_id)
        self._queue_reader = RawConnection(self.redis)
        self._queue_sock: socket.socket | None = None
        self._to_ack: list[str] = []
        #: Entries read from the queue and not acknowledged yet (see _reclaim_delivered).
        self._unacked: set[Any] = set()
        #: Changes to Redis that a lost connection interrupted (see _while_connected).
        self._redo_after_reconnect: list[Callable[[], None]] = []
        self._stopping = False
        self._signal_r, self._signal_w = socket.socketpair()
        self._owner_fd: int | None = None
        #: The I/O of placement group bundles (redray/node/bundles.py).
        self.placement_groups = NodePlacementGroups(self)
        #: Prometheus metrics (node/metrics.py), when a port was given.
        self.metrics: NodeMetrics | None = None
        #: Task events this daemon records (cancelled queued tasks, lost workers); they are
        #: sent with its batched writes, never on their own (no thread: see _close_in_child).
        self.task_events = TaskEventBuffer(self.commands.raw)

    # ---- lifecycle -------------------------------------------------------------------

    def run(self) -> None:
        if self.config.metrics_export_port is not None:  # before any worker is forked
            self.metrics = NodeMetrics(
                self.node_id,
                os.path.join(self.log_dir, "metrics"),
                node_ip(),
                self.config.metrics_export_port,
            )
        self._register()
        self._install_signal_handlers()
        self._watch_owner()
        self._execute(self.scheduler.expect_workers(self.config.prestart_workers))
        self._announce_ready()
        try:
            self._loop()
        finally:
            self._shutdown()

    def _register(self) -> None:
        wait_until_up(self.config.redis_kwargs)
        self.store.create()
        store_fields = self._start_object_store()
        try:
            self.redis.xgroup_create(self._queue_key, keys.QUEUE_GROUP, id="0", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
        record = {
            "node_id": self.node_id,
            "hostname": socket.gethostname(),
            "address": node_ip(self.config.redis_kwargs),
            "resources": self.config.resources,
            "is_head": self.config.is_head,
            "pid": os.getpid(),
            "store_dir": str(self.store.directory),
            "labels": self.config.labels,
            "log_dir": self.log_dir,
            "metrics_export_port": self.metrics.port if self.metrics else None,
            "started": time.time(),
            **store_fields,
        }
        current_epoch(self.redis)  # a restarted, empty Redis gets a new one
        pipe = self.redis.pipeline()
        pipe.hset(keys.NODES, self.node_id, json.dumps(record))
        self.publish_availability(pipe)
        pipe.xadd(keys.NODE_EVENTS, {"event": "joined", "node": self.node_id}, maxlen=1000)
        pipe.execute()
        self._listen_to_queue()

    def _listen_to_queue(self) -> None:
        """(Re)connect the queue's blocking reader and ask for the first batch."""
        if self._queue_sock is not None:  # by the object: a lost connection closed it
            self.selector.unregister(self._queue_sock)
        self._queue_reader.reconnect()
        self._read_queue()
        self._queue_sock = self._queue_reader.socket()
        self.selector.register(self._queue_sock, selectors.EVENT_READ, "queue")

    def _announce_ready(self) -> None:
        if self.config.ready_fd is not None:
            os.write(self.config.ready_fd, f"ready {self.node_id}\n".encode())
            os.close(self.config.ready_fd)

    def _install_signal_handlers(self) -> None:
        self._signal_w.setblocking(False)
        signal.set_wakeup_fd(self._signal_w.fileno())
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        self.selector.register(self._signal_r, selectors.EVENT_READ, "signal")

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._stopping = True

    def _watch_owner(self) -> None:
        if self.config.owner_pid is None:
            return
        try:
            self._owner_fd = os.pidfd_open(self.config.owner_pid)
        except ProcessLookupError:
            self._stopping = True
            return
        self.selector.register(self._owner_fd, selectors.EVENT_READ, "owner")

    def _close_in_child(self) -> None:
        """In a freshly forked worker: drop the daemon's descriptors the worker must not hold."""
        self.selector.close()
        self._signal_r.close()
        self._signal_w.close()
        if self._owner_fd is not None:
            os.close(self._owner_fd)
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)

    def _start_object_store(self) -> dict[str, Any]:
        """The store's memory cap, and the transfer server other nodes pull objects from
        (a process of its own: this one must stay thread-free). Node record fields."""
        capacity = self.config.resources.get("object_store_memory")
        capacity = int(capacity) if capacity else None
        self.store.configure(capacity)
        leftovers.claim(self.store.directory)  # swept by a later cluster if this one is killed
        self._transfer_pid, address = transfer.fork_server(
            str(self.store.directory), node_ip(self.config.redis_kwargs)
        )
        return {"transfer": address, "object_store_memory": capacity}

    def _stop_object_store(self) -> None:
        if getattr(self, "_transfer_pid", None):
            transfer.stop_server(self._transfer_pid)
        self.store.destroy()

    def _shutdown(self) -> None:
        self.pool.stop_all()
        if self.metrics is not None:
            self.metrics.close()
        self._stop_object_store()
        shutil.rmtree(packages.cache_directory(self.node_id), ignore_errors=True)
        # A node declared dead leaves its record and queue to the daemon recovering them.
        if not self.recovery.declared_dead:
            try:
                pipe = self.redis.pipeline()
                pipe.hdel(keys.NODES, self.node_id)
                pipe.delete(keys.node_alive(self.node_id), self._queue_key)
                pipe.xadd(keys.NODE_EVENTS, {"event": "left", "node": self.node_id}, maxlen=1000)
                pipe.execute()
            except redis.RedisError:
                pass
        if self.config.owned_redis_pid:
            try:
                os.kill(self.config.owned_redis_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.config.session_dir:
            shutil.rmtree(self.config.session_dir, ignore_errors=True)

    # ---- the loop --------------------------------------------------------------------

    def _loop(self) -> None:
        """Serve; a lost connection to Redis is ridden out, and a node declared dead
        meanwhile joins again as a new node."""
        while not self._stopping:
            try:
                if self._serve() == "declared dead":
                    self._rejoin("it was declared dead (its heartbeat expired)")
            except reconnect.CONNECTION_ERRORS as error:
                if not self._stopping:
                    self._ride_out(error)

    def _ride_out(self, error: BaseException) -> None:
        """Wait, with backoff and still answering signals and the owner's exit, until Redis
        answers again; then carry on as this node, or join as a new one if it was declared
        dead (or Redis came back empty)."""
        outage = reconnect.Outage(reconnect.describe(self.config.redis_kwargs))
        logger.warning("redray node %s: lost the connection to %s (%s); reconnecting",
                       self.node_id, outage.where, error)  # fmt: skip
        waiting = selectors.DefaultSelector()
        waiting.register(self._signal_r, selectors.EVENT_READ, "signal")
        if self._owner_fd is not None:
            waiting.register(self._owner_fd, selectors.EVENT_READ, "owner")
        try:
            while True:
                for key, _ in waiting.select(outage.backoff.next_delay()):
                    self._handle(key.data)
                if self._stopping:
                    return
                try:
                    record = self.redis.hget(keys.NODES, self.node_id)
                except reconnect.CONNECTION_ERRORS:
                    continue
                break
        finally:
            waiting.close()
        logger.warning("redray node %s: reconnected to %s", self.node_id, outage.where)
        if record is None:
            self._rejoin(f"{outage.where} no longer knows it (restarted empty?)")
        if json.loads(record).get("dead"):
            self._rejoin("it was declared dead while cut off")
        self._listen_to_queue()
        self._reclaim_delivered()
        redo, self._redo_after_reconnect = self._redo_after_reconnect, []
        for change in redo:
            self._while_connected(change)

    def _while_connected(self, change: Callable[[], None]) -> None:
        """Apply a change to Redis; if the connection is lost, apply it again once it is
        back (the changes are exactly-once Lua commands or idempotent)."""
        try:
            change()
        except reconnect.CONNECTION_ERRORS:
            self._redo_after_reconnect.append(change)
            raise

    def _rejoin(self, why: str) -> None:
        """Leave as this node (its workers stopped: their tasks and actors were re-run or
        reported dead by the node that recovered it) and start again as a new node."""
        logger.warning("redray node %s: %s; joining again as a new node", self.node_id, why)
        self.pool.stop_all()
        self._stop_object_store()
        config = dataclasses.asdict(self.config)
        config.update(node_id=ids.new_node_id(), ready_fd=None)
        password = config["redis_kwargs"].pop("password", None)
        if password:  # never on the command line, where every user can read it
            os.environ["REDRAY_REDIS_PASSWORD"] = password
        os.execv(sys.executable, [sys.executable, "-m", "redray.node.daemon", json.dumps(config)])

    def _serve(self) -> str | None:
        """The daemon's loop; returns "declared dead" if this node learns it was."""
        next_heartbeat = time.monotonic() + HEARTBEAT_SECONDS
        next_retire = time.monotonic() + _RETIRE_IDLE_SECONDS
        while not self._stopping:
            timeout = max(0.0, next_heartbeat - time.monotonic())
            for key, _ in self.selector.select(timeout):
                self._handle(key.data)
                if self._stopping:
                    return None
            if len(self._to_ack) >= _ACK_BATCH:
                self._flush_acks()
            if time.monotonic() >= next_retire:
                self._retire_surplus_workers()
                self.store.remove_files_of_dead_processes()
                next_retire = time.monotonic() + _RETIRE_IDLE_SECONDS
            if time.monotonic() >= next_heartbeat:
                self._flush_acks()
                if not self.recovery.tick(self._heartbeat_value(), HEARTBEAT_TTL_SECONDS):
                    return "declared dead"  # its tasks are being re-run elsewhere
                self.owners.release_dead()  # drivers of this node that died
                if self.metrics is not None:
                    self.metrics.update(self)
                next_heartbeat = time.monotonic() + HEARTBEAT_SECONDS

    def _retire_surplus_workers(self) -> None:
        """Workers started for a burst (or while others were blocked) exit when idle."""
        if self.scheduler.queued_count:
            return
        for worker_id in self.scheduler.take_surplus_idle(keep=self.config.prestart_workers):
            try:
                self.pool.workers[worker_id].channel.send(("exit",))
            except OSError:
                pass  # already gone: its channel's EOF is handled as usual

    def _handle(self, source: Any) -> None:
        if source == "queue":
            self._on_queue_readable()
        elif source == "signal":
            self._signal_r.recv(4096)
        elif source == "owner":
            self._stopping = True
        else:
            self._on_worker_readable(source)

    def publish_availability(self, pipe: redis.client.Pipeline) -> None:
        """Queue this node's heartbeat with its available resources now, rather than at
        the next tick (after a change others must see at once)."""
        pipe.set(keys.node_alive(self.node_id), self._heartbeat_value(), ex=HEARTBEAT_TTL_SECONDS)

    def _heartbeat_value(self) -> str:
        return json.dumps(
            {"available": self.scheduler.available, "queued": self.scheduler.queued_count}
        )

    # ---- the task queue --------------------------------------------------------------

    def _read_queue(self) -> None:
        """Ask for the next batch of tasks; the answer arrives when the socket is readable."""
        self._queue_reader.send([(
            "XREADGROUP", "GROUP", keys.QUEUE_GROUP, self.node_id,
            "COUNT", _READ_BATCH, "BLOCK", 0, "STREAMS", self._queue_key, ">",
        )])  # fmt: skip

    def _on_queue_readable(self) -> None:
        response = self._queue_reader.reply()
        self._read_queue()
        self._take_entries(response)

    def _reclaim_delivered(self) -> None:
        """After a reconnection: take the entries Redis delivered to this node that it
        never received (the reply was lost with the old connection)."""
        response = self.redis.xreadgroup(
            keys.QUEUE_GROUP, self.node_id, {self._queue_key: "0"}, count=100_000
        )
        self._take_entries(response, skip=self._unacked)

    def _take_entries(self, response: Any, skip: set[Any] | None = None) -> None:
        streams = (
            response.values() if isinstance(response, dict) else [e for _, e in response or []]
        )
        for entries in streams:
            for entry_id, fields in entries:
                if skip is not None and entry_id in skip:
                    continue
                self._unacked.add(entry_id)
                message = decode_node_message(_as_dict(fields))
                if type(message) is not TaskMessage:
                    self._to_ack.append(entry_id)
                    self._on_request(message)
                    continue
                spec: TaskSpec = pickle.loads(message.payload)
                self._execute(self.core.task_arrived(QueuedTask(spec, entry_id, message.payload)))

    def _on_request(self, message: NodeMessage) -> None:
        """A queue entry that is not a task: cancel, kill, placement group bundles."""
        if isinstance(message, CancelMessage):
            self._execute(self.core.cancel(message.task_id, message.force))
        elif isinstance(message, KillMessage):
            self._execute(self.core.kill_actor(message.actor_id))
        elif isinstance(message, ReserveMessage):
            self.placement_groups.reserve(message)
        elif isinstance(message, ReleaseMessage):
            self._execute(self.core.release_bundles(message.pg_id))

    def _flush_acks(self) -> None:
        if not self._to_ack:
            return
        pipe = self.redis.pipeline(transaction=False)
        pipe.xack(self._queue_key, keys.QUEUE_GROUP, *self._to_ack)
        pipe.xdel(self._queue_key, *self._to_ack)
        self._add_task_events(pipe)
        pipe.execute()
        self._unacked.difference_update(self._to_ack)
        self._to_ack = []

    # ---- workers ---------------------------------------------------------------------

    def _execute(self, actions: list[NodeAction]) -> None:
        """Perform what the node core decided."""
        for action in actions:
            if isinstance(action, Dispatch):
                worker = self.pool.workers[action.worker_id]
                try:
                    worker.channel.send(("task", action.task.payload, action.gpu_ids))
                except OSError:
                    pass  # its death is handled when the channel reports EOF
            elif isinstance(action, Ack):
                self._to_ack.append(action.entry_id)
            elif isinstance(action, QueuedTaskCancelled):
                fields = task_events.error_fields(b"", "cancelled")
                spec = action.task.spec
                self.task_events.record(spec, task_events.FAILED, None, NODE, **fields)
            elif isinstance(action, StartWorkers):
                for _ in range(action.count):
                    worker = self.pool.start()
                    self.selector.register(
                        worker.channel.sock, selectors.EVENT_READ, worker.worker_id
                    )
            elif isinstance(action, Kill):
                self.pool.kill(action.worker_id, signal.SIGKILL if action.force else signal.SIGINT)
            elif isinstance(action, (RetryTask, FailTask)):
                self._task_lost_worker(action.task, action.how, isinstance(action, RetryTask))
            elif isinstance(action, ActorExited):
                self._on_actor_exit(action.actor_id, action.task, action.how)
            elif isinstance(action, GroupRemoved):
                self.placement_groups.fail(action.task.spec)
            elif isinstance(action, ActorOfGroupDead):
                self.placement_groups.actor_dead(action.actor_id)

    def _on_worker_readable(self, worker_id: str) -> None:
        worker = self.pool.workers[worker_id]
        try:
            messages = worker.channel.recv_ready()
        except (EOFError, OSError):
            self._on_worker_exit(worker_id)
            return
        for message in messages:
            kind = message[0]
            if kind == "ready":
                self._execute(self.core.worker_ready(worker_id))
            elif kind == "done":
                if self.metrics is not None and self.scheduler.task_of(worker_id) is not None:
                    self.metrics.task_finished()
                self._execute(self.core.task_done(worker_id, retire=message[2]))
            elif kind == "blocked":
                self._execute(self.core.worker_blocked(worker_id))
            elif kind == "unblocked":
                self._execute(self.core.worker_unblocked(worker_id))
            elif kind == "actor_started":
                keep_warm = self.config.prestart_workers
                self._execute(self.core.actor_started(worker_id, message[1], message[2], keep_warm))

    def _on_worker_exit(self, worker_id: str) -> None:
        worker = self.pool.workers[worker_id]
        self.selector.unregister(worker.channel.sock)
        actor_id = self.core.actor_of_worker(worker_id)
        if actor_id is not None:  # its callers' marker goes with this incarnation
            started_marker(self.store.directory, actor_id, worker.pid).unlink(missing_ok=True)
        how = self.pool.reap(worker_id)
        self.owners.release_dead()
        self._execute(self.core.worker_died(worker_id, how))

    def _task_lost_worker(self, task: QueuedTask, how: str, retry: bool) -> None:
        """Retry a task whose worker died (`retry`), or fail it."""
        spec = task.spec
        error = WorkerCrashedError(
            f"The worker running task {spec.name} (task {spec.task_id}, attempt "
            f"{spec.attempt + 1}) on node {self.node_id} died: {how}."
        )
        data = dumps(error)
        failure = results.error_entries(data, 1)[0]
        pipe = self.redis.pipeline(transaction=False)
        results.record_failure(pipe, spec, failure, self.node_id, retrying=retry, cause=how)
        error_fields = task_events.describe_error(error)
        if retry:
            self.task_events.retrying(spec, error_fields, NODE)
        else:
            self.task_events.record(spec, task_events.FAILED, None, NODE, **error_fields)
        self._add_task_events(pipe)
        if retry:  # a copy: a lost connection runs this again (_redo_after_reconnect)
            payload = pickle.dumps(dataclasses.replace(spec, attempt=spec.attempt + 1), protocol=5)
            self.commands.call("requeue_task", spec.task_id, self.node_id, payload, pipe=pipe)
        else:
            results.fail_returns(
                self.commands, pipe, spec.task_id, spec.owner, spec.return_ids, data
            )
        pipe.execute()

    def _add_task_events(self, pipe: redis.client.Pipeline) -> None:
        command = self.task_events.drain()
        if command is not None:
            pipe.execute_command(*command)

    # ---- actors ----------------------------------------------------------------------

    def _on_actor_exit(self, actor_id: str, task: QueuedTask, how: str) -> None:
        """An actor's worker died: restart the actor if it may (Lua actor_restart decides
        with its restart count), else mark it dead."""
        spec = task.spec
        class_name = spec.extra.get("class_name", "Actor")
        status = self.commands.call(
            "actor_restart", actor_id, spec.extra.get("max_restarts", 0), how
        )
        if status == 1:
            spec.attempt += 1
            payload = pickle.dumps(spec, protocol=5)
            self.redis.execute_command(*xadd(self._queue_key, TaskMessage(payload)))
        elif status == -1:
            error = ActorDiedError(
                f"The actor {actor_id} ({class_name}) died unexpectedly: its worker process "
                f"(on node {self.node_id}) {how}, and it has no restarts left (max_restarts).",
                actor_id=actor_id,
            )
            self.commands.call("actor_dead", actor_id, dumps(error), "0")


def _as_dict(fields: Any) -> dict[bytes, bytes]:
    """Stream entry fields as a dict (the raw reply may be a flat list)."""
    if isinstance(fields, dict):
        return fields
    pairs = iter(fields)
    return dict(zip(pairs, pairs))


def main(argv: list[str] | None = None) -> None:
    """`python -m redray.node.daemon '<NodeConfig as JSON>'`."""
    config = NodeConfig(**json.loads((argv or sys.argv[1:])[0]))
    # `redray start` passes the Redis password in the environment: argv is visible to all users.
    config.redis_kwargs.setdefault("password", os.environ.get("REDRAY_REDIS_PASSWORD"))
    NodeDaemon(config).run()


if __name__ == "__main__":
    main()
