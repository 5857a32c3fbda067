"""The `redray` command line: start/status/errors/stop, passwords, and joining with init().

Every test runs the CLI in subprocesses against its own state directory (REDRAY_STATE_DIR),
so it never sees another run's cluster; the `cli` fixture kills whatever its CLI started,
even when a test fails half-way. test_multinode.py reuses `CliCluster` and `cli`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

import redray
from redray.node.redis_launcher import RedisServer, free_port, start_redis, wait_until_up
from redray.objectstore.shm_store import store_directory

_CLI_TIMEOUT = 120


class CliCluster:
    """Runs `redray ...` against a private state directory and remembers every process it
    records, so that cleanup() can kill them even if `redray stop` fails."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.env = {**os.environ, "REDRAY_STATE_DIR": str(state_dir)}
        for name in ("REDRAY_ADDRESS", "RAY_ADDRESS", "REDRAY_REDIS_PASSWORD"):
            self.env.pop(name, None)
        self.processes: dict[int, float] = {}
        self.node_ids: set[str] = set()
        self.ports: set[int] = set()

    @property
    def state_file(self) -> Path:
        return self.state_dir / "current_cluster.json"

    def state(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return None

    def run(self, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-m", "redray.cli", *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=_CLI_TIMEOUT,
        )
        self.remember()
        if check and result.returncode != 0:
            raise AssertionError(
                f"`redray {' '.join(args)}` exited with {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    def remember(self) -> None:
        state = self.state() or {"nodes": []}
        helpers = [state.get(name) for name in ("redis", "job_manager", "dashboard")]
        for record in [*helpers, *state["nodes"]]:
            if record:
                self.processes[record["pid"]] = record["created"]
        self.node_ids.update(node["node_id"] for node in state["nodes"])

    def start_head(self, *extra: str) -> dict[str, Any]:
        port = free_port()
        self.ports.add(port)
        self.run("start", "--head", "--port", str(port), "--num-cpus", "1", *extra)
        state = self.state()
        assert state is not None
        return state

    def add_node(self, *extra: str) -> str:
        """Start one more node daemon; returns its node id."""
        state = self.state()
        assert state is not None
        before = {node["node_id"] for node in state["nodes"]}
        self.run("start", "--address", state["address"], "--num-cpus", "1", *extra)
        (added,) = {node["node_id"] for node in self.state()["nodes"]} - before
        return added

    def node_pid(self, node_id: str) -> int:
        return next(n["pid"] for n in self.state()["nodes"] if n["node_id"] == node_id)

    def running(self) -> list[psutil.Process]:
        """Every process this CLI started that still runs (daemons, their workers, Redis)."""
        found = []
        redis_ends = tuple(f":{port}" for port in self.ports)  # redis-server's process title
        for process in psutil.process_iter(["pid", "cmdline", "create_time", "status"]):
            info = process.info
            if info["status"] == psutil.STATUS_ZOMBIE:
                continue
            cmdline = " ".join(info["cmdline"] or [])
            recorded = self.processes.get(info["pid"])
            if (
                (recorded is not None and abs(recorded - info["create_time"]) < 0.01)
                or str(self.state_dir) in cmdline  # daemons and workers: the socket path
                or ("redis-server" in cmdline and cmdline.endswith(redis_ends))
            ):
                found.append(process)
        return found

    def cleanup(self) -> None:
        try:
            self.run("stop", check=False)
        finally:
            leftovers = self.running()
            for process in leftovers:
                try:
                    process.kill()
                except psutil.Error:
                    pass
            psutil.wait_procs(leftovers, timeout=10)
            for node_id in self.node_ids:
                shutil.rmtree(store_directory(node_id), ignore_errors=True)


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliCluster]:
    """A CliCluster; this process's drivers see the same state directory."""
    state_dir = tmp_path / "state"
    monkeypatch.setenv("REDRAY_STATE_DIR", str(state_dir))
    for name in ("REDRAY_ADDRESS", "RAY_ADDRESS", "REDRAY_REDIS_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    cluster = CliCluster(state_dir)
    try:
        yield cluster
    finally:
        redray.shutdown()
        cluster.cleanup()


@redray.remote
def where() -> str:
    return redray.get_runtime_context().get_node_id()


@redray.remote
def add_one(x: int) -> int:
    return x + 1


@redray.remote(max_retries=0)
def explode(message: str) -> None:
    raise ValueError(message)


@pytest.mark.timeout(300)
def test_start_status_run_and_stop(cli: CliCluster) -> None:
    state = cli.start_head("--num-cpus", "2")
    head = state["nodes"][0]
    assert head["is_head"]
    assert stat.S_IMODE(cli.state_file.stat().st_mode) == 0o600
    assert store_directory(head["node_id"]).is_dir()

    status = cli.run("status").stdout
    assert head["node_id"] in status
    assert "ALIVE" in status and "2 CPU" in status

    again = cli.run("start", "--head", "--port", str(free_port()), check=False)
    assert again.returncode == 1 and "already running" in again.stderr

    redray.init(address=state["address"])
    assert redray.get(add_one.remote(1)) == 2
    assert redray.get(where.remote()) == head["node_id"]
    assert redray.cluster_resources()["CPU"] == 2
    redray.shutdown()

    stopped = cli.run("stop")
    assert "Stopped" in stopped.stdout
    assert cli.running() == []
    assert not store_directory(head["node_id"]).exists()
    assert cli.state() is None
    assert "nothing to stop" in cli.run("stop").stdout  # idempotent


@pytest.mark.timeout(300)
def test_init_finds_the_cluster(cli: CliCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    address = cli.start_head()["address"]
    joins = [
        lambda: redray.init(address="auto"),
        lambda: redray.init(redis_address=address),
        lambda: redray.init(address=f"redis://{address}"),
    ]
    for join in joins:
        context = join()
        assert context["address"] == address
        assert redray.get(add_one.remote(41)) == 42
        redray.shutdown()
    for variable, value in (("RAY_ADDRESS", address), ("REDRAY_ADDRESS", "auto")):
        monkeypatch.setenv(variable, value)
        redray.init()
        assert redray.get(add_one.remote(1)) == 2
        redray.shutdown()
        monkeypatch.delenv(variable)


def test_init_auto_without_a_cluster(cli: CliCluster) -> None:
    with pytest.raises(ConnectionError, match="redray start --head"):
        redray.init(address="auto")


def test_start_needs_head_or_address(cli: CliCluster) -> None:
    result = cli.run("start", check=False)
    assert result.returncode == 1 and "--head" in result.stderr


@pytest.mark.timeout(120)
def test_joining_an_unreachable_cluster_fails_clearly(cli: CliCluster) -> None:
    result = cli.run("start", "--address", f"127.0.0.1:{free_port()}", check=False)
    assert result.returncode == 1
    assert "Could not connect" in result.stderr
    assert cli.state() is None


@pytest.mark.timeout(300)
def test_public_host_gets_a_password(
    cli: CliCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    cli.ports.add(port)
    started = cli.run(
        "start", "--head", "--host", "0.0.0.0", "--port", str(port), "--num-cpus", "1"
    )
    state = cli.state()
    password, address = state["password"], state["address"]
    assert password and f"requires a password: {password}" in started.stdout
    assert f"_redis_password='{password}'" in started.stdout

    # On this machine, the recorded password is used for the recorded address.
    assert "ALIVE" in cli.run("status").stdout

    # From "another machine" (nothing recorded there), the password is needed.
    elsewhere = tmp_path / "elsewhere"
    monkeypatch.setenv("REDRAY_STATE_DIR", str(elsewhere))
    with pytest.raises(ConnectionError, match="requires a password"):
        redray.init(address=address)
    assert not redray.is_initialized()
    redray.init(address=address, _redis_password=password)
    assert redray.get(add_one.remote(1)) == 2
    redray.shutdown()

    monkeypatch.setenv("REDRAY_REDIS_PASSWORD", password)
    redray.init(address=address)
    assert redray.get(add_one.remote(2)) == 3
    redray.shutdown()

    no_password = cli.run(
        "status", "--address", address, check=False, REDRAY_STATE_DIR=str(elsewhere)
    )
    assert no_password.returncode == 1 and "requires a password" in no_password.stderr
    with_env = cli.run(
        "status", "--address", address, REDRAY_STATE_DIR=str(elsewhere),
        REDRAY_REDIS_PASSWORD=password,
    )  # fmt: skip
    assert "ALIVE" in with_env.stdout


@pytest.mark.timeout(300)
def test_errors_lists_failed_tasks(cli: CliCluster) -> None:
    cli.start_head()
    assert "No errors" in cli.run("errors").stdout
    redray.init(address="auto")
    for message in ("first failure", "second failure"):
        with pytest.raises(ValueError, match=message):
            redray.get(explode.remote(message))
    output = cli.run("errors").stdout
    assert "ValueError in task explode" in output
    assert output.index("second failure") < output.index("first failure")  # newest first
    latest = cli.run("errors", "--limit", "1").stdout
    assert "second failure" in latest and "first failure" not in latest


def _start_blocking(cli: CliCluster, *args: str, nodes: int) -> subprocess.Popen:
    """`redray start ... --block` in the background, once the state file lists `nodes` nodes."""
    blocking = subprocess.Popen(
        [sys.executable, "-m", "redray.cli", "start", "--block", *args],
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + _CLI_TIMEOUT
    while len((cli.state() or {"nodes": []})["nodes"]) < nodes:
        if blocking.poll() is not None or time.monotonic() > deadline:
            blocking.kill()
            raise AssertionError(f"`redray start --block` failed: {blocking.communicate()[0]}")
        time.sleep(0.1)
    cli.remember()
    return blocking


def _stop_blocking(blocking: subprocess.Popen) -> int:
    """SIGTERM, as `docker stop` sends; returns the exit code."""
    try:
        blocking.send_signal(signal.SIGTERM)
        return blocking.wait(timeout=60)
    finally:
        if blocking.poll() is None:
            blocking.kill()
        blocking.communicate()


@pytest.mark.timeout(300)
def test_block_stops_everything_on_sigterm(cli: CliCluster) -> None:
    port = free_port()
    cli.ports.add(port)
    blocking = _start_blocking(cli, "--head", "--port", str(port), nodes=1)
    try:
        redray.init(address="auto")
        assert redray.get(add_one.remote(1)) == 2
        redray.shutdown()
    finally:
        assert _stop_blocking(blocking) == 0
    assert cli.state() is None
    assert cli.running() == []
    assert not any(store_directory(node_id).exists() for node_id in cli.node_ids)


@pytest.mark.timeout(300)
def test_blocking_node_leaves_on_sigterm(cli: CliCluster) -> None:
    state = cli.start_head()
    blocking = _start_blocking(cli, "--address", state["address"], nodes=2)
    (node,) = [n for n in cli.state()["nodes"] if not n["is_head"]]
    assert _stop_blocking(blocking) == 0
    assert [n["node_id"] for n in cli.state()["nodes"]] == [state["nodes"][0]["node_id"]]
    assert not store_directory(node["node_id"]).exists()
    redray.init(address="auto")
    assert [n["NodeID"] for n in redray.nodes()] == [state["nodes"][0]["node_id"]]


@pytest.fixture
def external_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis this test owns, as docker-compose's redis service is."""
    server = start_redis(password="s3cret", log_file=str(tmp_path / "external-redis.log"))
    try:
        wait_until_up(server.client_kwargs(local=False))
        yield server
    finally:
        server.stop()


@pytest.mark.timeout(300)
def test_head_on_an_external_redis(cli: CliCluster, external_redis: RedisServer) -> None:
    address = external_redis.address
    cli.run(
        "start", "--head", "--address", address, "--num-cpus", "1", REDRAY_REDIS_PASSWORD="s3cret"
    )
    assert cli.state()["redis"] is None
    redray.init(address=address, _redis_password="s3cret")
    assert redray.get(add_one.remote(1)) == 2
    redray.shutdown()
    cli.run("stop")
    assert cli.running() == []
    assert external_redis.process.poll() is None  # not ours to stop
