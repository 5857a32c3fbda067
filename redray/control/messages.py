"""The messages of the node queues and actor mailboxes: small dataclasses, one encoder and
one decoder per stream (the field codes are documented in keys.py).

A node daemon's queue stream (`node:<id>:queue`) carries a task to run, a cancel request, an
actor kill, and placement group reserve/release requests. An actor's mailbox
(`actor:<id>:mailbox`) carries method calls, call cancellations and a terminate request. Two
writers are Lua commands (commands.lua): `requeue_task` (task) and `actor_dead` (kill) on
node queues, `actor_call` (call) and `actor_handle_release` (terminate) on mailboxes; they
write the same fields.

    redis.execute_command(*xadd(keys.node_queue(node_id), CancelMessage(task_id, False)))
    ...
    match decode_node_message(fields):
        case TaskMessage(payload): ...

Encoders return the fields as a flat tuple (field, value, ...), what XADD takes after the
entry id: the submit path batches its XADDs as raw commands (client/batcher.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# ---- node queue --------------------------------------------------------------------------


@dataclass(slots=True)
class TaskMessage:
    """Run a task: `payload` is its pickled TaskSpec (kept as bytes: the daemon hands it to
    the worker unchanged)."""

    payload: bytes


@dataclass(slots=True)
class CancelMessage:
    """Drop a queued task, or interrupt (force: SIGKILL) the worker running it."""

    task_id: str
    force: bool


@dataclass(slots=True)
class KillMessage:
    """SIGKILL an actor's worker (kill(actor))."""

    actor_id: str


@dataclass(slots=True)
class ReserveMessage:
    """Reserve a placement group's bundles, all or none; answer on the `reply` list."""

    pg_id: str
    bundles: list[tuple[int, dict[str, float]]]
    reply: str


@dataclass(slots=True)
class ReleaseMessage:
    """Give a placement group's bundles back (failing and killing what runs in them)."""

    pg_id: str


NodeMessage = TaskMessage | CancelMessage | KillMessage | ReserveMessage | ReleaseMessage


Fields = tuple[Any, ...]


def xadd(stream: str, message: NodeMessage | MailboxMessage) -> tuple[Any, ...]:
    """The XADD command that appends `message` to `stream` (a node queue or a mailbox)."""
    if type(message) is TaskMessage:  # one per task submitted: the shortest way
        return ("XADD", stream, "*", "s", message.payload)
    if isinstance(message, (CallMessage, CancelCallMessage, TerminateMessage)):
        return ("XADD", stream, "*", *encode_mailbox_message(message))
    return ("XADD", stream, "*", *encode_node_message(message))


def encode_node_message(message: NodeMessage) -> Fields:
    """The stream fields of a node queue message."""
    if type(message) is TaskMessage:  # first: one per task submitted
        return ("s", message.payload)
    if isinstance(message, CancelMessage):
        return ("c", message.task_id, "f", int(message.force))
    if isinstance(message, KillMessage):
        return ("kill", message.actor_id)
    if isinstance(message, ReserveMessage):
        bundles = json.dumps(message.bundles)
        return ("pg", message.pg_id, "op", "reserve", "b", bundles, "reply", message.reply)
    if isinstance(message, ReleaseMessage):
        return ("pg", message.pg_id, "op", "release")
    raise TypeError(f"not a node queue message: {message!r}")


def decode_node_message(fields: dict[bytes, bytes]) -> NodeMessage:
    """The message of a node queue entry's fields (ValueError if they are none of them)."""
    payload = fields.get(b"s")
    if payload is not None:
        return TaskMessage(payload)
    if b"c" in fields:
        return CancelMessage(fields[b"c"].decode(), fields.get(b"f") == b"1")
    if b"kill" in fields:
        return KillMessage(fields[b"kill"].decode())
    if b"pg" in fields:
        pg_id = fields[b"pg"].decode()
        op = fields.get(b"op", b"")
        if op == b"reserve":
            bundles = [(int(i), dict(r)) for i, r in json.loads(fields[b"b"])]
            return ReserveMessage(pg_id, bundles, fields[b"reply"].decode())
        if op == b"release":
            return ReleaseMessage(pg_id)
    raise ValueError(f"unknown node queue message: {sorted(fields)}")


# ---- actor mailbox -----------------------------------------------------------------------


@dataclass(slots=True)
class CallMessage:
    """A method call: its pickled TaskSpec, task id, owner and return ids."""

    payload: bytes
    task_id: str
    owner: str
    return_ids: list[str]


@dataclass(slots=True)
class CancelCallMessage:
    """cancel() of a call: skip it if not started, cancel it if it runs as a coroutine."""

    task_id: str


@dataclass(slots=True)
class TerminateMessage:
    """The last handle is gone: end the actor after the calls before this message."""


MailboxMessage = CallMessage | CancelCallMessage | TerminateMessage


def encode_mailbox_message(message: MailboxMessage) -> Fields:
    """The stream fields of a mailbox message."""
    if isinstance(message, CallMessage):
        return (
            "s", message.payload, "t", message.task_id, "o", message.owner,
            "r", ",".join(message.return_ids),
        )  # fmt: skip
    if isinstance(message, CancelCallMessage):
        return ("cancel", message.task_id)
    if isinstance(message, TerminateMessage):
        return ("terminate", 1)
    raise TypeError(f"not a mailbox message: {message!r}")


def decode_mailbox_message(fields: dict[bytes, bytes]) -> MailboxMessage:
    """The message of a mailbox entry's fields (ValueError if they are none of them)."""
    payload = fields.get(b"s")
    if payload is not None:
        return_ids = fields.get(b"r", b"").decode()
        return CallMessage(
            payload, fields.get(b"t", b"").decode(), fields.get(b"o", b"").decode(),
            return_ids.split(",") if return_ids else [],
        )  # fmt: skip
    if b"cancel" in fields:
        return CancelCallMessage(fields[b"cancel"].decode())
    if b"terminate" in fields:
        return TerminateMessage()
    raise ValueError(f"unknown mailbox message: {sorted(fields)}")
