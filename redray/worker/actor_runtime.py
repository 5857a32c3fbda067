"""The life of an actor inside its worker: create the instance, then serve the mailbox.

The worker that received an actor's creation task becomes that actor's for good. It tells
its node daemon ("actor_started"), so the scheduler swaps the placement demand for what the
actor holds while it lives and never gives this worker a task again. Then it reads the
actor's mailbox stream itself, through the "actor" consumer group:

* a call is taken from the group (XREADGROUP, not blocking) only when it can start, so what
  the group lists as pending is what was running (or about to run) if the worker dies; an
  idle worker waits with a plain XREAD for entries after the last one delivered;
* calls run in order (max_concurrency=1), on a thread pool (max_concurrency=N), or on an
  asyncio loop for classes with async methods;
* each result is committed with `commit_objects` in the same round trip as the XACK/XDEL of
  its entry;
* a restarted actor first claims the entries its dead predecessor had taken: re-run if
  max_task_retries allows, else failed with ActorDiedError.

Running one call (arguments, the method, its results) is worker/actor_calls.py.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import pickle
import threading
from collections.abc import Callable
from typing import Any

import redis

from redray import runtime_context
from redray.client.core import CoreClient
from redray.control import keys, reconnect, results
from redray.control.channel import Channel
from redray.control.direct_marker import direct_address, started_marker
from redray.control.entry import Entry
from redray.control.messages import (
    CallMessage,
    CancelCallMessage,
    TerminateMessage,
    decode_mailbox_message,
)
from redray.control.raw import RawConnection, stream_entries
from redray.exceptions import ActorDiedError
from redray.objectstore.serialization import dumps, serialize
from redray.task_spec import TaskSpec
from redray.worker.actor_calls import ActorCalls
from redray.worker.direct_server import DirectCallServer
from redray.worker.executor import TaskExecutor
from redray.worker.result_writer import CommandRecorder

logger = logging.getLogger(__name__)

_IDLE_BLOCK_MS = 2000
#: How many queued calls an in-order actor takes from its mailbox at once.
_TAKE_BATCH = 16


def run_actor(
    client: CoreClient,
    executor: TaskExecutor,
    channel: Channel,
    spec: TaskSpec,
    gpu_ids: list[int],
    worker_id: str,
) -> None:
    """Create the actor of creation task `spec` and serve it until it ends."""
    actor_id = spec.extra["actor_id"]
    client.on_block = None
    client.on_unblock = None
    server, direct = _direct_server(client, spec)
    creation = pickle.dumps(spec, protocol=5)
    registered = client.commands.call(
        "actor_register", actor_id, client.node_id or "", os.getpid(), worker_id, direct, creation
    )
    if not registered:  # killed before it could start
        death = client.redis.hget(keys.actor(actor_id), "death") or dumps(
            ActorDiedError(f"The actor {actor_id} was killed before it started.", actor_id=actor_id)
        )
        client.commit_results(spec, results.error_entries(death, 1), record_failure=False)
        channel.send(("done", spec.task_id, True))
        if server is not None:
            server.close()
        return
    channel.send(("actor_started", actor_id, spec.extra.get("held", {})))
    if client.output is not None:  # its output's prefix: (MyActor pid=...)
        client.output.actor_label = spec.extra.get("class_name", "Actor")
    executor._enter(spec, gpu_ids)
    current = runtime_context.current
    current.actor_id = actor_id
    current.actor_name = spec.extra.get("name", "")
    current.assigned_resources = {
        name: float(amount) for name, amount in spec.extra.get("held", {}).items() if amount
    }
    try:
        executor.code_env.apply(spec.runtime_env)
        cls = executor._functions.load(spec.function_id)
        args = [executor._value(arg) for arg in spec.args]
        kwargs = {name: executor._value(arg) for name, arg in spec.kwargs.items()}
        instance = cls(*args, **kwargs)
    except Exception as error:
        entries = executor._error_entries(spec, error)
        client.commit_results(spec, entries, record_failure=True)
        task_error = pickle.loads(entries[0].data)
        died = ActorDiedError(task_error, actor_id=actor_id)
        died.error_msg = f"The actor {actor_id} ({spec.extra.get('class_name')}) died: " + str(died)
        client.commands.call("actor_dead", actor_id, dumps(died), "0")
        if server is not None:
            server.close()
        return
    finally:
        current.task_id = None
        current.task_name = None
    if client.output is not None and type(instance).__repr__ is not object.__repr__:
        client.output.actor_label = repr(instance)  # as Ray: a custom __repr__ names the actor
    ready = client.store_serialized(spec.return_ids[0], serialize(None))
    client.commit_results(spec, [ready], record_failure=False)
    ActorRuntime(client, executor, spec, instance, worker_id, server).serve()


def _direct_server(client: CoreClient, spec: TaskSpec) -> tuple[DirectCallServer | None, str]:
    """An in-order actor's socket for callers of its node, and the record that tells them
    (worker/direct_server.py); none for threaded and async actors."""
    store = client.local_objects.store
    if (
        store is None
        or spec.extra.get("is_asyncio")
        or (spec.extra.get("max_concurrency") or 1) > 1
    ):
        return None, ""
    actor_id = spec.extra["actor_id"]
    address = direct_address(actor_id, os.getpid())
    marker = started_marker(store.directory, actor_id, os.getpid())
    record = {
        "address": address,
        "marker": str(marker),
        "max_task_retries": spec.extra.get("max_task_retries", 0),
    }
    return DirectCallServer(address, marker), json.dumps(record)


class ActorRuntime:
    """The mailbox protocol of one actor: which calls to take and when, in what order,
    committing, cancelling, terminating and recovering; ActorCalls runs each call."""

    def __init__(
        self,
        client: CoreClient,
        executor: TaskExecutor,
        spec: TaskSpec,
        instance: Any,
        worker_id: str,
        server: DirectCallServer | None = None,
    ) -> None:
        self.client = client
        self.actor_id: str = spec.extra["actor_id"]
        self.class_name: str = spec.extra.get("class_name", "Actor")
        self.calls = ActorCalls(client, executor, instance, self.actor_id, self.class_name)
        self.max_task_retries: int = spec.extra.get("max_task_retries", 0)
        self.is_asyncio: bool = spec.extra.get("is_asyncio", False)
        self.max_concurrency: int = spec.extra.get("max_concurrency") or 1
        self.mailbox = keys.actor_mailbox(self.actor_id)
        self.consumer = worker_id
        self.reader = reconnect.client(client.redis_kwargs)
        self._inflight = 0
        self._cond = threading.Condition()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._async_slots: asyncio.Semaphore | None = None
        #: Calls from the mailbox and from the direct socket never overlap (in-order actor).
        self._server = server
        self._exec_lock = threading.Lock()
        #: Calls cancel() reached before they started (client/actor_cancel.py), and the
        #: coroutines of running calls of an async actor, by task id.
        self._cancelled: set[str] = set()
        self._coroutines: dict[str, asyncio.Task] = {}

    # ---- the loop ----------------------------------------------------------------------

    def serve(self) -> None:
        if self.is_asyncio:
            self._start_loop()
        elif self.max_concurrency > 1:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                self.max_concurrency, thread_name_prefix="redray-actor"
            )
        last_delivered = self._recover()
        if last_delivered is None:  # terminated while recovering
            return
        if self._server is not None:
            connection = RawConnection(reconnect.client(self.client.redis_kwargs))
            self._server.start_serving(self._run_direct, self._cancel, connection)
        if self._pool is None and self._loop is None:
            self._serve_in_order(last_delivered)
            return
        while True:
            with self._cond:
                while self._inflight >= self.max_concurrency:
                    self._cond.wait()
                free = self.max_concurrency - self._inflight
            try:
                response = self.reader.xreadgroup(
                    keys.ACTOR_GROUP, self.consumer, {self.mailbox: ">"}, count=min(free, 64)
                )
            except redis.ResponseError:  # the mailbox is gone: the actor is dead
                return
            entries = response[0][1] if response else []
            if not entries:
                self.reader.xread({self.mailbox: last_delivered}, block=_IDLE_BLOCK_MS, count=1)
                continue
            for entry_id, fields in entries:
                last_delivered = entry_id
                message = decode_mailbox_message(fields)
                if isinstance(message, TerminateMessage):
                    self._terminate(entry_id)
                    return
                if isinstance(message, CancelCallMessage):
                    self._cancel(message.task_id)
                    self._discard(entry_id)
                    continue
                self._start(entry_id, message)

    def _serve_in_order(self, last_delivered: str) -> None:
        """One call at a time, in mailbox order, with as few round trips as possible.

        Each call's commit is written as soon as it finishes (replies read later); taking the
        next calls (a batch: they are sent to this actor, so in flight as Ray counts them)
        shares one round trip with waiting when there are none. A call that wakes an idle
        actor runs at once: the take that records it as in flight is written first, and its
        reply is read with the next batch.
        """
        connection = RawConnection(self.reader)

        def take(count: int) -> tuple[Any, ...]:
            return (
                "XREADGROUP", "GROUP", keys.ACTOR_GROUP, self.consumer,
                "COUNT", count, "STREAMS", self.mailbox, ">",
            )  # fmt: skip

        unread = 0
        claimed: bytes | None = None  # the call we woke on; its take's reply is read first
        while True:
            # When calls were taken the wait returns at once; else it blocks until one comes.
            wait = ("XREAD", "COUNT", 1, "BLOCK", _IDLE_BLOCK_MS, "STREAMS", self.mailbox,
                    last_delivered)  # fmt: skip
            connection.send([take(_TAKE_BATCH), wait])
            replies = connection.read(unread + 2)
            unread = 0
            to_run: list[tuple[bytes, dict[bytes, bytes]]] = []  # (entry id, fields)
            if claimed is not None:
                claim, replies = replies[0], replies[1:]
                to_run += [entry for entry in _entries(claim) if entry[0] != claimed]
                claimed = None
            for reply in replies[:-2]:
                if isinstance(reply, Exception):
                    raise reply
            if isinstance(replies[-2], Exception):  # the mailbox is gone: the actor is dead
                return
            to_run += _entries(replies[-2])
            if not to_run:
                woke = _entries(replies[-1])
                if not woke:
                    continue
                connection.send([take(1)])
                unread += 1
                claimed = woke[0][0]
                to_run = woke[:1]
            messages = [(entry_id, decode_mailbox_message(f)) for entry_id, f in to_run]
            for _, message in messages:  # cancels first: a call they name must not start
                if isinstance(message, CancelCallMessage):
                    self._cancel(message.task_id)
            for entry_id, message in messages:
                last_delivered = entry_id
                if isinstance(message, TerminateMessage):
                    self._terminate(entry_id)
                    return
                if isinstance(message, CancelCallMessage):
                    connection.send(self._discard_commands(entry_id))
                    unread += 2
                    continue
                with self._exec_lock:
                    with self._cond:
                        self._inflight += 1
                    try:
                        finished = self._run(entry_id, message, defer=True)
                    finally:
                        self._finished(None)
                if finished:
                    connection.send(finished)
                    unread += len(finished)

    def _recover(self) -> str | None:
        """Claim the calls a previous incarnation had taken; returns the last delivered id."""
        groups = self.reader.xinfo_groups(self.mailbox)
        last_delivered = "0-0"
        for group in groups:
            name = group["name"]
            if (name.decode() if isinstance(name, bytes) else name) == keys.ACTOR_GROUP:
                value = group["last-delivered-id"]
                last_delivered = value.decode() if isinstance(value, bytes) else value
        pending = self.reader.xpending_range(
            self.mailbox, keys.ACTOR_GROUP, min="-", max="+", count=1_000_000
        )
        if not pending:
            return last_delivered
        cause = self.client.redis.hget(keys.actor(self.actor_id), "last_cause")
        cause_text = cause.decode() if cause else "its worker died"
        delivered = {p["message_id"]: p["times_delivered"] for p in pending}
        claimed = self.reader.xclaim(
            self.mailbox, keys.ACTOR_GROUP, self.consumer, 0, list(delivered)
        )
        for entry_id, fields in claimed:
            if not fields:
                continue
            message = decode_mailbox_message(fields)
            if isinstance(message, TerminateMessage):
                self._wait_idle()
                self._terminate(entry_id)
                return None
            if isinstance(message, CancelCallMessage):
                self._cancel(message.task_id)
                self._discard(entry_id)
                continue
            attempts = delivered.get(entry_id, 1)
            if self.max_task_retries == -1 or attempts <= self.max_task_retries:
                with self._cond:
                    while self._inflight >= self.max_concurrency:
                        self._cond.wait()
                self._start(entry_id, message)
            else:
                spec: TaskSpec = pickle.loads(message.payload)
                error = ActorDiedError(
                    f"The actor {self.actor_id} ({self.class_name}) died while running "
                    f"{spec.name} ({cause_text}); it was restarted, but the call is not retried "
                    "(max_task_retries).",
                    actor_id=self.actor_id,
                )
                entries = results.error_entries(dumps(error), len(spec.return_ids))
                self._commit(entry_id, spec, entries, failed=True)
        return last_delivered

    def _start(self, entry_id: bytes, call: CallMessage) -> None:
        with self._cond:
            self._inflight += 1
        if self._loop is not None:
            future = asyncio.run_coroutine_threadsafe(self._run_async(entry_id, call), self._loop)
            future.add_done_callback(self._finished)
        elif self._pool is not None:
            self._pool.submit(self._run, entry_id, call).add_done_callback(self._finished)
        else:
            try:
                self._run(entry_id, call)
            finally:
                self._finished(None)

    def _finished(self, future: Any) -> None:
        if future is not None and future.exception() is not None:
            logger.error("redray: actor call failed internally: %s", future.exception())
        with self._cond:
            self._inflight -= 1
            self._cond.notify_all()

    def _cancel(self, task_id: str) -> None:
        """cancel() of a call: skip it if it has not started, stop its coroutine if it runs
        on the event loop (a running sync call goes on, as in Ray)."""
        self._cancelled.add(task_id)
        coroutine = self._coroutines.get(task_id)
        if coroutine is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(coroutine.cancel)

    def _discard_commands(self, entry_id: bytes) -> list[tuple[Any, ...]]:
        return [
            ("XACK", self.mailbox, keys.ACTOR_GROUP, entry_id),
            ("XDEL", self.mailbox, entry_id),
        ]

    def _discard(self, entry_id: bytes) -> None:
        """Drop a mailbox entry that needs no commit (a cancel, or a cancelled call)."""
        pipe = self.client.redis.pipeline(transaction=False)
        for command in self._discard_commands(entry_id):
            pipe.execute_command(*command)
        pipe.execute()

    def _wait_idle(self) -> None:
        with self._cond:
            while self._inflight:
                self._cond.wait()

    def _terminate(self, entry_id: bytes) -> None:
        """The last handle is gone: finish the calls already sent, then end."""
        if self._server is not None:
            self._server.finish()
        self._wait_idle()
        error = ActorDiedError(
            f"The actor {self.actor_id} ({self.class_name}) is dead because all references to "
            "it went out of scope.",
            actor_id=self.actor_id,
        )
        pipe = self.client.redis.pipeline(transaction=False)
        pipe.xack(self.mailbox, keys.ACTOR_GROUP, entry_id)
        self.client.commands.call("actor_dead", self.actor_id, dumps(error), "0", pipe=pipe)
        pipe.execute()

    # ---- one call (executed by ActorCalls) ----------------------------------------------

    def _run(
        self, entry_id: bytes, call: CallMessage, defer: bool = False
    ) -> list[tuple[Any, ...]]:
        """Run one call and commit it; with `defer`, return the commit's commands instead."""
        spec: TaskSpec = pickle.loads(call.payload)
        if spec.task_id in self._cancelled:  # its canceller committed TaskCancelledError
            self._cancelled.discard(spec.task_id)
            if defer:
                return self._discard_commands(entry_id)
            self._discard(entry_id)
            return []
        entries, failed = self.calls.outputs_of(spec)
        if defer:
            return self._commit_commands(entry_id, spec, entries, failed)
        self._commit(entry_id, spec, entries, failed)
        return []

    def _run_direct(self, spec: TaskSpec) -> tuple[tuple[Any, ...], Callable[[], list[Any]]]:
        """Run a call that came over the direct socket: the caller's reply, and what makes
        its commit's commands (sent right after the reply)."""
        if spec.task_id in self._cancelled:
            self._cancelled.discard(spec.task_id)
            return ("done", spec.task_id, []), lambda: []
        with self._exec_lock:
            with self._cond:
                self._inflight += 1
            try:
                entries, failed = self.calls.outputs_of(spec)
            finally:
                self._finished(None)
        committed = [(o, tuple(e)) for o, e in zip(spec.return_ids, entries)]
        return ("done", spec.task_id, committed), lambda: self._commit_commands(
            None, spec, entries, failed
        )

    def _commit_commands(
        self, entry_id: bytes | None, spec: TaskSpec, entries: list[Entry], failed: bool
    ) -> list[tuple[Any, ...]]:
        """The commit of a call; a direct call (no `entry_id`) has no mailbox entry, and its
        caller has the results from the reply."""
        count = len(spec.return_ids)
        recorder = CommandRecorder()
        self.client.commit_results(
            spec,
            entries[:count],
            record_failure=failed and count > 0,
            pipe=recorder,
            notify_owner=entry_id is not None,
        )
        if entry_id is not None:
            recorder.xack(self.mailbox, keys.ACTOR_GROUP, entry_id)
            recorder.xdel(self.mailbox, entry_id)
        return recorder.commands

    async def _run_async(self, entry_id: bytes, call: CallMessage) -> None:
        spec: TaskSpec = pickle.loads(call.payload)
        if spec.task_id in self._cancelled:
            self._cancelled.discard(spec.task_id)
            self._discard(entry_id)
            return
        current = asyncio.current_task()
        assert current is not None
        self._coroutines[spec.task_id] = current
        try:
            entries, failed = await self.calls.outputs_of_async(spec)
        except asyncio.CancelledError:  # cancel(): its canceller committed the error
            self._discard(entry_id)
            return
        finally:
            self._coroutines.pop(spec.task_id, None)
        self._commit(entry_id, spec, entries, failed)

    def _commit(self, entry_id: bytes, spec: TaskSpec, entries: list[Entry], failed: bool) -> None:
        count = len(spec.return_ids)
        pipe = self.client.redis.pipeline(transaction=False)
        self.client.commit_results(
            spec, entries[:count], record_failure=failed and count > 0, pipe=pipe
        )
        pipe.xack(self.mailbox, keys.ACTOR_GROUP, entry_id)
        pipe.xdel(self.mailbox, entry_id)
        pipe.execute()

    # ---- asyncio ------------------------------------------------------------------------

    def _start_loop(self) -> None:
        loop = asyncio.new_event_loop()
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            started.set()
            loop.run_forever()

        threading.Thread(target=run, name="redray-actor-loop", daemon=True).start()
        started.wait()
        self._loop = loop


def _entries(reply: Any) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """The entries of a one-stream XREAD/XREADGROUP reply."""
    streams = stream_entries(reply) if not isinstance(reply, Exception) else []
    return streams[0][1] if streams else []
