"""RawConnection against a real redis-server: telling an idle open connection from one the
server closed."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from redray.control.raw import RawConnection
from redray.node.redis_launcher import RedisServer, start_redis, wait_until_up


@pytest.fixture
def server() -> Iterator[RedisServer]:
    started = start_redis()
    try:
        wait_until_up(started.client_kwargs(local=False))
        yield started
    finally:
        started.stop()


def test_an_idle_open_connection_is_kept(server):
    # With a socket timeout, peeking an idle socket used to wait for the timeout and then
    # take the timeout for a closed connection, dropping it with its unread replies.
    client = redis.Redis(**server.client_kwargs(local=False), socket_timeout=0.2)
    connection = RawConnection(client)
    assert connection.execute([("PING",)]) == [b"PONG"]
    assert connection.drop_if_closed() is False
    assert connection.execute([("SET", "k", "v"), ("GET", "k")]) == [b"OK", b"v"]


def test_a_connection_the_server_closed_is_dropped(server):
    client = redis.Redis(**server.client_kwargs(local=False), socket_timeout=0.2)
    connection = RawConnection(client)
    assert connection.execute([("CLIENT", "SETNAME", "victim")]) == [b"OK"]
    admin = redis.Redis(**server.client_kwargs(local=False))
    admin.client_kill_filter(_type="normal", skipme=True)
    deadline = time.monotonic() + 30
    while not connection.drop_if_closed():  # the close reaches our socket within a moment
        assert time.monotonic() < deadline, "the closed connection was never noticed"
        time.sleep(0.01)
