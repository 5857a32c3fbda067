"""Starting an embedded cluster, and finding the one to join."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import redis

from redray import ids
from redray.client.node_view import read_nodes
from redray.control import keys
from redray.node import leftovers
from redray.node.redis_launcher import RedisServer, start_redis
from redray.objectstore.shm_store import spill_directory, store_directory

#: Overrides the directory where `redray start` keeps its state file and session logs.
STATE_DIR_ENV = "REDRAY_STATE_DIR"

_STARTUP_TIMEOUT = 60.0


def state_dir() -> Path:
    """Where `redray start` records the cluster of this machine (and keeps its logs)."""
    return Path(os.environ.get(STATE_DIR_ENV) or Path(tempfile.gettempdir()) / "redray")


def current_cluster_file() -> Path:
    return state_dir() / "current_cluster.json"


def recorded_cluster() -> dict[str, Any] | None:
    """What `redray start` recorded about the cluster of this machine, if anything."""
    try:
        return json.loads(current_cluster_file().read_text())
    except FileNotFoundError:
        return None


def detect_gpus() -> int:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([gpu for gpu in visible.split(",") if gpu.strip()])
    return len(list(Path("/dev").glob("nvidia[0-9]*")))


def node_resources(
    num_cpus: float | None,
    num_gpus: float | None,
    resources: dict[str, float] | None,
    object_store_memory: int | None,
    is_head: bool,
    node_ip: str,
) -> dict[str, float]:
    """A node's total resources, named as Ray names them."""
    cpus = float(num_cpus if num_cpus is not None else (os.cpu_count() or 1))
    gpus = float(num_gpus if num_gpus is not None else detect_gpus())
    memory = psutil.virtual_memory().available
    total = {
        "CPU": cpus,
        "memory": float(int(memory * 0.7)),
        "object_store_memory": float(object_store_capacity(object_store_memory, memory)),
        f"node:{node_ip}": 1.0,
    }
    if gpus:
        total["GPU"] = gpus
    if is_head:
        total["node:__internal_head__"] = 1.0
    total.update({name: float(amount) for name, amount in (resources or {}).items()})
    return total


def object_store_capacity(requested: int | None, available_memory: int) -> int:
    """The node store's cap: as requested, else 30% of free RAM bounded by /dev/shm's free
    space. Warns when /dev/shm cannot hold it (objects beyond it then fail or spill)."""
    from redray.objectstore.shm_store import SHM_ROOT

    shm_free = shutil.disk_usage(SHM_ROOT).free
    if requested is None:
        capacity = min(int(available_memory * 0.3), int(shm_free * 0.9))
        if shm_free < 2 * 2**30:
            _warn_small_shm(
                f"{SHM_ROOT} has only {shm_free / 2**20:.0f} MiB free, so the object store is "
                f"limited to {capacity / 2**20:.0f} MiB; larger working sets spill to disk."
            )
        return capacity
    if requested > shm_free:
        _warn_small_shm(
            f"object_store_memory={requested} bytes is more than the {shm_free} bytes free in "
            f"{SHM_ROOT}: storing that much will fail before the store is full."
        )
    return requested


def _warn_small_shm(message: str) -> None:
    import logging
    import warnings

    message += " In a container, give it a larger /dev/shm (docker run --shm-size=...)."
    warnings.warn(message, stacklevel=4)
    logging.getLogger(__name__).warning(message)


def start_node_process(
    config: dict[str, Any], log_file: str | None = None
) -> tuple[subprocess.Popen, str]:
    """Start a node daemon and wait until it has registered; returns (process, node id)."""
    read_end, write_end = os.pipe()
    config = {**config, "ready_fd": write_end}
    output = open(log_file, "ab") if log_file else None
    process = subprocess.Popen(
        [sys.executable, "-m", "redray.node.daemon", json.dumps(config)],
        pass_fds=[write_end],
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT if output else None,
        start_new_session=log_file is not None,
    )
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], _STARTUP_TIMEOUT)
        line = os.read(read_end, 4096).decode() if ready else ""
    finally:
        os.close(read_end)
    if not line.startswith("ready"):
        process.kill()
        raise RuntimeError(
            f"The redray node daemon did not start (exit code {process.poll()}); "
            + (f"see {log_file}." if log_file else "its errors are printed above.")
        )
    return process, line.split()[1]


@dataclass
class EmbeddedCluster:
    """A private Redis and one node daemon, owned by this driver."""

    redis_server: RedisServer
    daemon: subprocess.Popen
    node_id: str
    session_dir: str

    @property
    def redis_kwargs(self) -> dict[str, Any]:
        return self.redis_server.client_kwargs(local=True)

    @property
    def address(self) -> str:
        return self.redis_server.address

    def stop(self) -> None:
        if self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)
            try:
                self.daemon.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()
        self.redis_server.stop()
        shutil.rmtree(store_directory(self.node_id), ignore_errors=True)
        shutil.rmtree(spill_directory(self.node_id), ignore_errors=True)
        shutil.rmtree(self.session_dir, ignore_errors=True)


def start_embedded_cluster(
    *,
    num_cpus: float | None,
    num_gpus: float | None,
    resources: dict[str, float] | None,
    object_store_memory: int | None,
    metrics_export_port: int | None = None,
) -> EmbeddedCluster:
    leftovers.sweep()  # what clusters killed earlier left behind
    session_dir = tempfile.mkdtemp(prefix=leftovers.SESSION_PREFIX)
    leftovers.claim(session_dir)
    # Linux ties PR_SET_PDEATHSIG to the starting thread: only the main thread lives as long
    # as the driver (otherwise the daemon's pidfd watch still stops Redis with the driver).
    server = start_redis(
        unix_socket=os.path.join(session_dir, "redis.sock"),
        die_with_parent=threading.current_thread() is threading.main_thread(),
    )
    node_id = ids.new_node_id()
    from redray.host import node_ip

    total = node_resources(num_cpus, num_gpus, resources, object_store_memory, True, node_ip())
    config = {
        "node_id": node_id,
        "redis_kwargs": server.client_kwargs(local=True),
        "resources": total,
        "is_head": True,
        "prestart_workers": max(1, int(total["CPU"])),
        "owner_pid": os.getpid(),
        "owned_redis_pid": server.process.pid,
        "session_dir": session_dir,
        "log_dir": os.path.join(session_dir, "logs"),
        "metrics_export_port": metrics_export_port,
    }
    try:
        daemon, _ = start_node_process(config)
    except BaseException:
        server.stop()
        raise
    return EmbeddedCluster(server, daemon, node_id, session_dir)


def resolve_address(address: str | None) -> str | None:
    """The host:port to join, or None to start an embedded cluster."""
    address = address or os.environ.get("REDRAY_ADDRESS") or os.environ.get("RAY_ADDRESS")
    if not address or address == "local":
        return None
    if address == "auto":
        recorded = recorded_cluster()
        if recorded is None:
            raise ConnectionError(
                "address='auto' found no running redray cluster on this machine: start one "
                "with `redray start --head`, or pass its address."
            )
        return recorded["address"]
    if address.startswith("ray://"):
        raise ValueError(
            f"The address {address!r} is a Ray Client (ray://) address, and redray has no "
            "Ray Client server. A redray driver connects to the cluster's Redis directly: pass "
            "its host:port (what `redray start --head` printed, e.g. init(address="
            "'head-host:6379')), or address='auto' on a machine of the cluster."
        )
    for scheme in ("redis://", "redray://"):
        if address.startswith(scheme):
            address = address[len(scheme) :]
    return address


def connect_kwargs(address: str, password: str | None) -> dict[str, Any]:
    """How to reach the cluster at `address`; without a password, the one `redray start`
    recorded for that address on this machine (in a file only its user can read) is used."""
    recorded = recorded_cluster()
    if password is None and recorded is not None and recorded.get("address") == address:
        password = recorded.get("password")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"Invalid cluster address {address!r}: expected 'host:port'.")
    kwargs: dict[str, Any] = {"host": host, "port": int(port), "password": password}
    client = redis.Redis(**kwargs)
    try:
        client.ping()
    except redis.AuthenticationError as error:
        raise ConnectionError(
            f"The redray cluster at {address} requires a password (or a different one): "
            "pass redray.init(_redis_password=...) or `redray ... --redis-password`, or set "
            "REDRAY_REDIS_PASSWORD."
        ) from error
    except redis.ConnectionError as error:
        raise ConnectionError(
            f"Could not connect to a redray cluster at {address}: {error}"
        ) from error
    # On the head's own machine, its Unix socket is the faster way in.
    unix_socket = client.hget(keys.CLUSTER, "unix_socket")
    if unix_socket and os.path.exists(unix_socket):
        return {"unix_socket_path": unix_socket.decode(), "password": password}
    return kwargs


def local_node_id(redis_kwargs: dict[str, Any]) -> str | None:
    """The node on this machine a driver belongs to (the head's, if there are several)."""
    explicit = os.environ.get("REDRAY_NODE_ID")
    if explicit:
        return explicit
    here = [
        state
        for state, _ in read_nodes(redis.Redis(**redis_kwargs))
        if store_directory(state.node_id).exists()
    ]
    here.sort(key=lambda state: (not state.is_head, state.extra.get("started", 0)))
    return here[0].node_id if here else None
