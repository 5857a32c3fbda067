"""The node queue and mailbox messages (redray/control/messages.py): each kind survives
encoding, Redis's byte strings, and decoding; the Lua writers' fields decode too."""

from __future__ import annotations

from typing import Any

import pytest
from target_ray import redray_only

from redray.control.messages import (
    CallMessage,
    CancelCallMessage,
    CancelMessage,
    KillMessage,
    ReleaseMessage,
    ReserveMessage,
    TaskMessage,
    TerminateMessage,
    decode_mailbox_message,
    decode_node_message,
    encode_mailbox_message,
    encode_node_message,
    xadd,
)

pytestmark = redray_only


def _as_redis_returns(fields: tuple[Any, ...]) -> dict[bytes, bytes]:
    """What XRANGE gives back for XADD's fields: every name and value as bytes."""

    def to_bytes(value: Any) -> bytes:
        return value if isinstance(value, bytes) else str(value).encode()

    pairs = iter(fields)
    return {to_bytes(name): to_bytes(value) for name, value in zip(pairs, pairs)}


@pytest.mark.parametrize(
    "message",
    [
        TaskMessage(b"\x80pickled spec"),
        CancelMessage("ab" * 12, force=False),
        CancelMessage("ab" * 12, force=True),
        KillMessage("actor1"),
        ReserveMessage("pg1", [(0, {"CPU": 1.0}), (2, {"GPU": 0.5})], "redray:pg:pg1:reply:1"),
        ReleaseMessage("pg1"),
    ],
)
def test_node_queue_message_round_trip(message: Any) -> None:
    assert decode_node_message(_as_redis_returns(encode_node_message(message))) == message


@pytest.mark.parametrize(
    "message",
    [
        CallMessage(b"\x80spec", "cd" * 12, "owner1", ["cd" * 12 + "0001", "cd" * 12 + "0002"]),
        CallMessage(b"\x80spec", "cd" * 12, "owner1", []),
        CancelCallMessage("cd" * 12),
        TerminateMessage(),
    ],
)
def test_mailbox_message_round_trip(message: Any) -> None:
    assert decode_mailbox_message(_as_redis_returns(encode_mailbox_message(message))) == message


def test_what_the_lua_commands_write_decodes() -> None:
    # requeue_task / actor_dead on node queues; actor_call / actor_handle_release on mailboxes.
    assert decode_node_message({b"s": b"spec"}) == TaskMessage(b"spec")
    assert decode_node_message({b"kill": b"a1"}) == KillMessage("a1")
    call = {b"s": b"spec", b"t": b"t1", b"o": b"o1", b"r": b"r1,r2"}
    assert decode_mailbox_message(call) == CallMessage(b"spec", "t1", "o1", ["r1", "r2"])
    assert decode_mailbox_message({b"terminate": b"1"}) == TerminateMessage()


def test_unknown_messages_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unknown node queue message"):
        decode_node_message({b"what": b"1"})
    with pytest.raises(ValueError, match="unknown mailbox message"):
        decode_mailbox_message({b"what": b"1"})
    with pytest.raises(TypeError, match="not a node queue message"):
        encode_node_message(TerminateMessage())  # type: ignore[arg-type]


def test_xadd_builds_the_command_for_either_stream() -> None:
    assert xadd("q", TaskMessage(b"p")) == ("XADD", "q", "*", "s", b"p")
    assert xadd("m", CancelCallMessage("t")) == ("XADD", "m", "*", "cancel", "t")
