"""Fault injection: Redis killed, paused (SIGSTOP) and restarted empty, the last node daemon
killed, drivers killed by signals (a daemon paused past its heartbeat rejoining as a new
node is in test_node_death.py). Each case is bounded, checks the
results or the error, and checks that nothing is left behind (processes, /dev/shm stores,
session directories).

The grace period before a lost Redis becomes an error is set short here
(REDRAY_REDIS_GRACE_S, inherited by every process a cluster starts).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from target_ray import redray_only
from test_cli import CliCluster, cli  # noqa: F401  (cli is a fixture)

import redray
from redray.exceptions import GetTimeoutError, NodeDiedError, RaySystemError
from redray.node import leftovers
from redray.node.redis_launcher import start_redis
from redray.objectstore.shm_store import store_directory

pytestmark = redray_only

GRACE = 2.0


@redray.remote
def add(a: int, b: int) -> int:
    return a + b


@redray.remote
def sleeper(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@pytest.fixture
def short_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDRAY_REDIS_GRACE_S", str(GRACE))


def _wait_until(condition: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def _embedded() -> Any:
    """The running embedded cluster (its redis-server, daemon, node id, session dir)."""
    from redray import api

    assert api._cluster is not None
    return api._cluster


def _cluster_processes(cluster: Any) -> list[psutil.Process]:
    daemon = psutil.Process(cluster.daemon.pid)
    redis_server = psutil.Process(cluster.redis_server.process.pid)
    return [daemon, *daemon.children(recursive=True), redis_server]


def _gone(process: psutil.Process) -> bool:
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _assert_nothing_left(processes: list[psutil.Process], node_id: str, session: str) -> None:
    _wait_until(
        lambda: (
            all(map(_gone, processes))
            and not store_directory(node_id).exists()
            and not Path(session).exists()
        ),
        "the cluster's processes, store and session directory are gone",
    )


@pytest.mark.timeout(90)
def test_redis_killed_get_raises_system_error_not_hang(short_grace: None, ray_fresh: Any) -> None:
    ray_fresh(num_cpus=1)
    cluster = _embedded()
    processes = _cluster_processes(cluster)
    assert redray.get(add.remote(1, 2)) == 3
    pending = sleeper.remote(60)
    cluster.redis_server.process.kill()
    with pytest.raises(GetTimeoutError):
        redray.get(pending, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(RaySystemError, match="control store .*Redis at"):
        redray.get(pending)
    assert time.monotonic() - started < GRACE + 15
    # A submit during the outage fails with the same clear error, never a redis-py one.
    with pytest.raises(RaySystemError, match="cannot reach"):
        redray.get(add.remote(1, 1))
    node_id, session = cluster.node_id, cluster.session_dir
    redray.shutdown()
    _assert_nothing_left(processes, node_id, session)


@pytest.mark.timeout(90)
def test_redis_paused_briefly_loses_nothing(short_grace: None, ray_fresh: Any) -> None:
    ray_fresh(num_cpus=1)
    redis_pid = _embedded().redis_server.process.pid
    assert redray.get(add.remote(1, 1)) == 2
    os.kill(redis_pid, signal.SIGSTOP)
    try:
        refs = [add.remote(i, i) for i in range(5)]
        time.sleep(1.0)  # the pause being tested: shorter than the grace period
    finally:
        os.kill(redis_pid, signal.SIGCONT)
    assert redray.get(refs, timeout=30) == [0, 2, 4, 6, 8]


@pytest.mark.timeout(120)
def test_redis_paused_past_grace_raises_then_recovers(short_grace: None, ray_fresh: Any) -> None:
    ray_fresh(num_cpus=1)
    redis_pid = _embedded().redis_server.process.pid
    assert redray.get(add.remote(1, 1)) == 2
    running = sleeper.remote(3.0)
    os.kill(redis_pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(RaySystemError, match="cannot reach"):
            redray.get(running)
        assert time.monotonic() - started < GRACE + 15
    finally:
        os.kill(redis_pid, signal.SIGCONT)
    assert redray.get(add.remote(2, 2), timeout=60) == 4
    assert redray.get(running, timeout=30) == 3.0


@pytest.mark.timeout(180)
def test_redis_restarted_empty_pending_fail_clearly_and_node_rejoins(
    short_grace: None,
    cli: CliCluster,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDRAY_REDIS_GRACE_S", "30")  # long enough to restart Redis in
    state = cli.start_head()
    old_node = state["nodes"][0]["node_id"]
    redray.init(address="auto")
    assert redray.get(add.remote(1, 1), timeout=60) == 2
    pending = sleeper.remote(60)
    psutil.Process(state["redis"]["pid"]).kill()
    port = int(state["address"].rpartition(":")[2])
    servers = []
    restart = threading.Timer(
        1.0, lambda: servers.append(start_redis(port=port, unix_socket=state["unix_socket"]))
    )
    restart.start()
    try:
        during_outage = add.remote(2, 3)  # waits for Redis (within the grace period)
        restart.join()
        with pytest.raises(RaySystemError, match="restarted without its data"):
            redray.get(pending, timeout=60)
        # Written into the dead connection it is lost, and says so; else it runs.
        try:
            assert redray.get(during_outage, timeout=60) == 5
        except RaySystemError as error:
            assert "restarted without its data" in str(error)
        assert redray.get(add.remote(3, 4), timeout=60) == 7
        alive = [n["NodeID"] for n in redray.nodes() if n["Alive"]]
        assert len(alive) == 1 and alive[0] != old_node  # the same daemon, as a new node
        assert not store_directory(old_node).exists()
    finally:
        redray.shutdown()
        cli.cleanup()
        restart.join()
        for server in servers:
            server.stop()


@pytest.mark.timeout(90)
def test_last_node_killed_tasks_fail_with_node_died(ray_fresh: Any) -> None:
    ray_fresh(num_cpus=1)
    cluster = _embedded()
    processes = _cluster_processes(cluster)
    assert redray.get(add.remote(1, 1)) == 2
    running, queued = sleeper.remote(60), sleeper.remote(60)
    cluster.daemon.kill()
    started = time.monotonic()
    for ref in (running, queued):
        with pytest.raises(NodeDiedError, match="died"):
            redray.get(ref, timeout=60)
    assert time.monotonic() - started < 30
    with pytest.warns(UserWarning, match="died"):
        new = add.remote(1, 2)
    with pytest.raises(NodeDiedError):
        redray.get(new, timeout=30)
    node_id, session = cluster.node_id, cluster.session_dir
    redray.shutdown()
    _assert_nothing_left(processes, node_id, session)


_DRIVER = textwrap.dedent(
    """
    import json, time, redray
    from redray import api
    redray.init(num_cpus=1)
    c = api._cluster
    @redray.remote
    def sleeper():
        time.sleep(60)
    ref = sleeper.remote()
    print(json.dumps({"node": c.node_id, "session": c.session_dir,
                      "redis": c.redis_server.process.pid, "daemon": c.daemon.pid}), flush=True)
    time.sleep(120)
    """
)


@pytest.fixture
def driver() -> Iterator[Callable[[], tuple[subprocess.Popen, dict[str, Any]]]]:
    started: list[subprocess.Popen] = []

    def start() -> tuple[subprocess.Popen, dict[str, Any]]:
        process = subprocess.Popen(
            [sys.executable, "-c", _DRIVER], stdout=subprocess.PIPE, text=True
        )
        started.append(process)
        assert process.stdout is not None
        return process, json.loads(process.stdout.readline())

    yield start
    for process in started:
        process.kill()
        process.wait()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGKILL])
def test_killed_driver_leaves_nothing_behind(
    driver: Callable[[], tuple[subprocess.Popen, dict[str, Any]]], sig: int
) -> None:
    process, info = driver()
    daemon = psutil.Process(info["daemon"])
    processes = [daemon, *daemon.children(recursive=True), psutil.Process(info["redis"])]
    process.send_signal(sig)
    process.wait(timeout=30)
    _assert_nothing_left(processes, info["node"], info["session"])


@pytest.mark.timeout(60)
def test_sigterm_driver_after_its_daemon_died_leaves_nothing(
    driver: Callable[[], tuple[subprocess.Popen, dict[str, Any]]],
) -> None:
    process, info = driver()
    daemon = psutil.Process(info["daemon"])
    processes = [daemon, *daemon.children(recursive=True), psutil.Process(info["redis"])]
    daemon.kill()
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)
    _assert_nothing_left(processes, info["node"], info["session"])


def test_sweep_removes_directories_of_dead_owners_only(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_started = psutil.Process(dead.pid).create_time()
    dead.wait()
    orphan = Path(tempfile.mkdtemp(prefix=leftovers.SESSION_PREFIX))
    (orphan / leftovers.OWNER_FILE).write_text(f"{dead.pid} {dead_started}")
    store = store_directory(f"test{os.getpid()}")
    store.mkdir()
    (store / leftovers.OWNER_FILE).write_text(f"{dead.pid} {dead_started}")
    mine = Path(tempfile.mkdtemp(prefix=leftovers.SESSION_PREFIX))
    leftovers.claim(mine)
    try:
        removed = leftovers.sweep()
        assert orphan in removed and store in removed
        assert not orphan.exists() and not store.exists() and mine.exists()
    finally:
        for directory in (orphan, store, mine):
            if directory.exists():
                for child in directory.iterdir():
                    child.unlink()
                directory.rmdir()


@pytest.mark.timeout(180)
def test_persisted_redis_killed_and_restarted_loses_nothing(
    short_grace: None,
    cli: CliCluster,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDRAY_REDIS_GRACE_S", "60")
    state = cli.start_head("--persist")
    redray.init(address="auto")
    assert redray.get(add.remote(1, 1), timeout=60) == 2
    refs = [sleeper.remote(0.5) for _ in range(6)]
    redray.wait(refs, num_returns=1, timeout=60)
    psutil.Process(state["redis"]["pid"]).kill()
    cli.run("start", "--head", "--persist")  # the same command starts it again
    assert redray.get(refs, timeout=90) == [0.5] * 6
    assert redray.get(add.remote(2, 3), timeout=60) == 5
    assert [n["Alive"] for n in redray.nodes()] == [True]  # the same node carried on
