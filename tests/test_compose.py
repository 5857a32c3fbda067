"""docker-compose.yml: valid against the Compose Specification, and each service's command
and healthcheck work when run as local processes (these machines have no Docker engine).

What Docker would provide is provided by hand: the `redis` host name becomes 127.0.0.1 and a
free port, each container gets its own state directory (REDRAY_STATE_DIR) and /data
directory, and `redis-server` on PATH is the server redray itself would run.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from redray.control import keys
from redray.node.redis_launcher import find_redis_server, free_port

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
START_TIMEOUT_S = 60.0


def test_compose_file_follows_the_compose_specification():
    done = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(COMPOSE_FILE)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_file_orders_startup_by_health():
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    assert services["head"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["worker"]["depends_on"]["head"]["condition"] == "service_healthy"
    for name in ("redis", "head", "worker"):
        assert services[name]["healthcheck"]["test"], name
    assert "redis-data:/data" in services["redis"]["volumes"]
    assert "--appendonly yes" in services["redis"]["command"][-1]


class LocalCompose:
    """Runs the compose file's services as local processes, as Docker would run them."""

    def __init__(self, tmp_path: Path) -> None:
        self.spec = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
        self.tmp = tmp_path
        self.port = free_port()
        self.password = secrets.token_urlsafe(16)
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        (bin_dir / "redis-server").symlink_to(find_redis_server())
        redray_cli = bin_dir / "redray"
        redray_cli.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m redray.cli "$@"\n')
        redray_cli.chmod(0o755)
        self.env = {
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "REDRAY_REDIS_PASSWORD": self.password,
            "REDISCLI_AUTH": self.password,
        }
        self.processes: dict[str, subprocess.Popen] = {}

    def command(self, service: str, key: str = "command") -> list[str]:
        """A service's command (or healthcheck test) as it would run in its container."""
        spec = self.spec[service]
        words = spec["healthcheck"]["test"][1:] if key == "healthcheck" else spec[key]
        data = self.tmp / f"{service}-data"
        data.mkdir(exist_ok=True)
        return [
            word.replace("redis:6379", f"127.0.0.1:{self.port}")
            .replace("$$", "$")
            .replace("/data", str(data))
            .replace("exec redis-server", f"exec redis-server --port {self.port}")
            for word in words
        ]

    def container_env(self, service: str) -> dict[str, str]:
        return {**self.env, "REDRAY_STATE_DIR": str(self.tmp / f"{service}-state")}

    def start(self, service: str) -> None:
        log = open(self.tmp / f"{service}.log", "wb")
        self.processes[service] = subprocess.Popen(
            self.command(service), env=self.container_env(service), stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def healthy(self, service: str) -> bool:
        if service == "redis":  # its healthcheck is redis-cli, which redray does not ship
            try:
                return redis.Redis(port=self.port, password=self.password).ping()
            except redis.RedisError:
                return False
        done = subprocess.run(
            self.command(service, "healthcheck"), env=self.container_env(service),
            capture_output=True, timeout=30,
        )  # fmt: skip
        return done.returncode == 0

    def wait_healthy(self, service: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.healthy(service):
            process = self.processes[service]
            log = (self.tmp / f"{service}.log").read_text(errors="replace")
            assert process.poll() is None, f"{service} exited: {log}"
            assert time.monotonic() < deadline, f"{service} never became healthy: {log}"
            time.sleep(0.2)

    def stop(self, service: str, sig: int = signal.SIGTERM) -> int:
        """What `docker compose stop` does: SIGTERM, then SIGKILL after the grace period."""
        process = self.processes.pop(service)
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        return process.returncode

    def stop_all(self) -> None:
        for service in ("worker", "head", "redis"):
            if service in self.processes:
                self.stop(service)


@pytest.fixture
def compose(tmp_path: Path) -> Any:
    import redray

    local = LocalCompose(tmp_path)
    yield local
    if redray.is_initialized():
        redray.shutdown()
    local.stop_all()


@pytest.mark.timeout(240)
def test_services_start_in_order_run_tasks_and_keep_redis_data(compose: LocalCompose):
    import redray

    compose.start("redis")
    compose.wait_healthy("redis")
    assert not compose.healthy("head")  # nothing started yet: the check must say so
    compose.start("head")
    compose.wait_healthy("head")
    compose.start("worker")
    compose.wait_healthy("worker")

    redray.init(address=f"127.0.0.1:{compose.port}", _redis_password=compose.password)
    alive = [node for node in redray.nodes() if node["Alive"]]
    assert len(alive) == 2

    @redray.remote
    def double(x):
        return 2 * x

    assert redray.get([double.remote(i) for i in range(8)], timeout=60) == [2 * i for i in range(8)]
    redray.shutdown()

    assert compose.stop("worker") == 0
    assert compose.stop("head") == 0
    client = redis.Redis(port=compose.port, password=compose.password)
    head_node = client.hget(keys.CLUSTER, "head_node")
    assert head_node
    # Redis killed outright and started again with the same command and volume: the
    # append-only file brings the cluster's record back.
    compose.stop("redis", signal.SIGKILL)
    compose.start("redis")
    compose.wait_healthy("redis")
    assert client.hget(keys.CLUSTER, "head_node") == head_node


def test_health_check_fails_without_a_reachable_redis(tmp_path: Path):
    env = {**os.environ, "REDRAY_STATE_DIR": str(tmp_path / "state")}
    redray_cmd = [sys.executable, "-m", "redray.cli"]
    done = subprocess.run(
        [*redray_cmd, "health-check", "--address", f"127.0.0.1:{free_port()}"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert "health-check" in done.stderr
    assert shutil.which("sh")  # the compose file's Redis command runs through sh
