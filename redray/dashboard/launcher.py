"""Starting the dashboard's server process and waiting until it answers."""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from redray.dashboard.server import TOKEN_ENV

DEFAULT_PORT = 8265  # Ray's
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
_START_TIMEOUT_S = 30.0


def start_dashboard(
    redis_kwargs: dict[str, Any],
    password: str | None,
    host: str,
    port: int,
    log_file: Path,
    owner_pid: int | None = None,
) -> tuple[subprocess.Popen, str, str | None]:
    """(the server process, its URL as Ray gives it ("host:port"), the token it requires or
    None). Bound beyond loopback it requires the cluster's password, or a new token."""
    if importlib.util.find_spec("aiohttp") is None:
        raise RuntimeError(
            "The dashboard needs aiohttp: pip install 'redray[dashboard]' (or aiohttp)."
        )
    token = None
    if host not in LOOPBACK_HOSTS:
        token = password or secrets.token_urlsafe(24)
    config = {
        "redis_kwargs": {k: v for k, v in redis_kwargs.items() if k != "password"},
        "host": host,
        "port": port,
        "owner_pid": owner_pid,
    }
    env = dict(os.environ)
    if password:
        env["REDRAY_REDIS_PASSWORD"] = password
    if token:
        env[TOKEN_ENV] = token
    with open(log_file, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "redray.dashboard.server", json.dumps(config)],
            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    _wait_until_listening(process, host, port, log_file)
    return process, f"{host}:{port}", token


def _wait_until_listening(process: subprocess.Popen, host: str, port: int, log: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    target = "127.0.0.1" if host in ("0.0.0.0", "") else host
    while True:
        try:
            with socket.create_connection((target, port), timeout=1):
                return
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError(f"The dashboard did not start on {host}:{port}: {' / '.join(tail)}")
        time.sleep(0.02)
