"""How a node finds the address other hosts reach it by, and what a failed transfer says."""

from __future__ import annotations

import json
import socket

import pytest
from target_ray import redray_only
from test_cli import CliCluster, cli  # noqa: F401  (cli is a fixture)

import redray
from redray.api import current_client
from redray.cli import _warn_if_loopback
from redray.control import keys
from redray.exceptions import ObjectLostError
from redray.node.daemon import node_ip

pytestmark = redray_only


def test_node_ip_is_explicit_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDRAY_NODE_IP", "10.1.2.3")
    assert node_ip({"host": "127.0.0.1", "port": 6379}) == "10.1.2.3"


def test_node_ip_is_the_local_address_of_the_route_to_redis(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("REDRAY_NODE_IP", raising=False)
    # A Redis on loopback is reached from loopback; one reached by a Unix socket says nothing.
    assert node_ip({"host": "127.0.0.1", "port": 6379}) == "127.0.0.1"
    assert node_ip({"unix_socket_path": "/tmp/x.sock"}) == node_ip(None)


def test_start_warns_when_advertising_loopback_to_a_remote_head(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _warn_if_loopback("127.0.0.1", "10.0.0.5:6379")
    assert "loopback address 127.0.0.1" in capsys.readouterr().err
    _warn_if_loopback("127.0.0.1", "127.0.0.1:6379")
    _warn_if_loopback("10.0.0.7", "10.0.0.5:6379")
    assert capsys.readouterr().err == ""


@redray.remote(resources={"second": 1})
def large() -> bytes:
    return b"x" * 2_000_000


@pytest.mark.timeout(120)
def test_unreachable_transfer_server_is_named(cli: CliCluster) -> None:  # noqa: F811
    cli.start_head()
    second = cli.add_node("--resources", '{"second": 1}')
    redray.init(address="auto")
    ref = large.remote()
    redray.wait([ref], timeout=60)
    client = current_client()
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    record = json.loads(client.redis.hget(keys.NODES, second))
    record["transfer"] = f"{record['transfer'].rpartition('@')[0]}@127.0.0.1:{port}"
    client.redis.hset(keys.NODES, second, json.dumps(record))
    client.nodes.refresh()
    with pytest.raises(
        ObjectLostError, match=f"cannot reach node {second} at 127.0.0.1:{port}: connection refused"
    ):
        redray.get(ref, timeout=60)
