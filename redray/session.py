"""The process's current client: the one CoreClient that the public API and every object
(ObjectRef futures, generators, actor handles, placement groups) talk through.

This is the bottom of the package: it imports nothing of redray at run time, so any layer
can ask for the current client without importing `api.py`. `api.init()` / `shutdown()` set
and clear it in a driver, `worker/main.py` in a worker. `api.py` registers `init` as the
connector: the first use of the API without `init()` starts an embedded cluster, as Ray
does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redray.client.core import CoreClient

_client: CoreClient | None = None
_address = ""
_connect: Callable[[], object] | None = None


def current_client() -> CoreClient:
    """The process's client, connecting (api.init()) on first use as Ray does."""
    client = _client
    if client is None:
        if _connect is None:
            raise RuntimeError("redray is not initialized: call redray.init() first.")
        _connect()
        client = _client
        assert client is not None, "the connector did not set a client"
    return client


def current_address() -> str:
    """The cluster address init() connected to ("" in a worker or before init)."""
    return _address


def is_connected() -> bool:
    return _client is not None


def client_if_connected() -> CoreClient | None:
    """The current client, or None (never connects)."""
    return _client


def set_client(client: CoreClient | None, address: str = "") -> None:
    """Make `client` the process's current client (None: disconnected)."""
    global _client, _address
    _client = client
    _address = address if client is not None else ""


def set_connector(connect: Callable[[], object]) -> None:
    """What current_client() calls when no client is set (api.init, registered by api)."""
    global _connect
    _connect = connect
