"""init() and shutdown() end to end: reinit rules, restarts, and that no process is left over.

Runs against redray, or against Ray 2.x with REDRAY_TEST_AGAINST=ray (the /dev/shm store
directory checks are redray's).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest
from target_ray import AGAINST, CONDITION_TIMEOUT, INIT_EXTRA, TESTING_RAY, ray, wait_until

SHM_ROOT = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path("/tmp")


@ray.remote
def square(x):
    return x * x


@ray.remote
def get_pid():
    return os.getpid()


def _process_key(process: psutil.Process) -> tuple[int, float] | None:
    try:
        return process.pid, process.create_time()
    except psutil.Error:
        return None


def _children() -> set[tuple[int, float]]:
    """(pid, start time) of every live descendant of this process."""
    keys = {_process_key(p) for p in psutil.Process().children(recursive=True)}
    return {key for key in keys if key is not None}


def _is_gone(key: tuple[int, float]) -> bool:
    """True once that process has exited (a zombie nobody reaped counts as exited)."""
    pid, started = key
    try:
        process = psutil.Process(pid)
        return process.create_time() != started or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _store_dir(node_id: str) -> Path:
    return SHM_ROOT / f"redray-{node_id}"


def test_is_initialized(ray_fresh):
    assert not ray.is_initialized()
    ray_fresh()
    assert ray.is_initialized()
    ray.shutdown()
    assert not ray.is_initialized()


def test_second_init_raises_unless_ignore_reinit_error(ray_fresh):
    ray_fresh()
    with pytest.raises(RuntimeError):
        ray.init(num_cpus=2, **INIT_EXTRA)
    assert ray.is_initialized()
    context = ray.init(num_cpus=2, ignore_reinit_error=True, **INIT_EXTRA)
    assert context is not None
    assert ray.is_initialized()
    assert ray.get(square.remote(4)) == 16  # the first cluster is still the one in use


def test_init_returns_address_info(ray_fresh):
    context = ray_fresh()
    info = context.address_info
    assert info["node_id"] == ray.get_runtime_context().get_node_id()
    assert info["address"]


def test_shutdown_then_init_again(ray_fresh):
    ray_fresh()
    first_node = ray.get_runtime_context().get_node_id()
    assert ray.get(square.remote(3)) == 9
    ray.shutdown()
    assert not ray.is_initialized()
    ray_fresh()
    assert ray.get_runtime_context().get_node_id() != first_node  # a new cluster
    # Remote functions defined (and used) before the restart work in the new cluster.
    assert ray.get([square.remote(i) for i in range(4)]) == [0, 1, 4, 9]
    ref = ray.put("after restart")
    assert ray.get(ref) == "after restart"


def test_shutdown_is_idempotent(ray_fresh):
    ray.shutdown()  # nothing running: no error
    ray_fresh()
    ray.shutdown()
    ray.shutdown()
    assert not ray.is_initialized()


@pytest.mark.timeout(180)
def test_shutdown_leaves_no_cluster_process_behind(ray_fresh):
    before = _children()
    ray_fresh()
    node_id = ray.get_runtime_context().get_node_id()

    @ray.remote
    def nested_pids():
        return os.getpid(), ray.get([get_pid.remote() for _ in range(3)])

    # Make the cluster start workers, including some for nested tasks.
    worker_pids = set(ray.get([get_pid.remote() for _ in range(4)]))
    parent, children = ray.get(nested_pids.remote())
    worker_pids |= {parent, *children}
    started = _children() - before
    assert started, "init() started no process?"
    started_pids = {pid for pid, _ in started}
    assert worker_pids <= started_pids, (worker_pids, started_pids)
    if not TESTING_RAY:
        assert _store_dir(node_id).is_dir()

    ray.shutdown()

    assert wait_until(lambda: all(_is_gone(key) for key in started), 90), [
        psutil.Process(pid).cmdline() for pid, _ in started if not _is_gone((pid, _))
    ]
    if not TESTING_RAY:
        assert not _store_dir(node_id).exists()


_DRIVER_SCRIPT = """
import json, os, sys
import psutil
import {module} as ray

ray.init(num_cpus=2{extra})

@ray.remote
def get_pid():
    return os.getpid()

@ray.remote
def nested():
    return ray.get([get_pid.remote() for _ in range(2)])

ray.get([get_pid.remote() for _ in range(4)])
ray.get(nested.remote())
ray.put(b"x" * (4 * 1024 * 1024))  # something in the shared-memory store
processes = psutil.Process().children(recursive=True)
print(json.dumps({{
    "node_id": ray.get_runtime_context().get_node_id(),
    "processes": [[p.pid, p.create_time()] for p in processes],
}}), flush=True)
sys.stdin.read()  # until killed
"""


@pytest.mark.timeout(180)
def test_driver_killed_with_sigkill_leaves_nothing_behind(tmp_path):
    script = tmp_path / "driver.py"
    extra = ", include_dashboard=False" if TESTING_RAY else ""
    script.write_text(textwrap.dedent(_DRIVER_SCRIPT.format(module=AGAINST, extra=extra)))
    driver = subprocess.Popen(
        [sys.executable, str(script)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        readable, _, _ = select.select([driver.stdout], [], [], 2 * CONDITION_TIMEOUT)
        assert readable, "the driver script never reported its cluster"
        line = driver.stdout.readline()
        assert line, f"the driver script exited early with code {driver.wait()}"
        report = json.loads(line)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        driver.stdin.close()
        driver.stdout.close()
    started = [tuple(key) for key in report["processes"]]
    assert started, "the driver's cluster has no process?"
    store = _store_dir(report["node_id"])

    def all_gone():
        return all(_is_gone(key) for key in started) and (TESTING_RAY or not store.exists())

    try:
        assert wait_until(all_gone, 90), {
            "left": [pid for pid, t in started if not _is_gone((pid, t))],
            "store_dir_exists": store.exists(),
        }
    finally:  # never leak what the test started, even when it fails
        for pid, created in started:
            if not _is_gone((pid, created)):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


# (init keywords, what redray raises, what Ray 2.x raises where it differs). redray raises
# ValueError/TypeError for every bad argument; Ray asserts for some and raises RuntimeError
# for unknown keywords, which the Ray column records so that the test also runs on Ray.
BAD_INIT_ARGUMENTS = {
    "negative-cpus": ({"num_cpus": -1}, (ValueError,), (ValueError,)),
    "negative-gpus": ({"num_gpus": -2}, (ValueError,), (ValueError,)),
    "cpus-not-a-number": ({"num_cpus": "two"}, (ValueError, TypeError), (AssertionError,)),
    "cpu-in-resources": ({"resources": {"CPU": 4}}, (ValueError,), (AssertionError,)),
    "gpu-in-resources": ({"resources": {"GPU": 1}}, (ValueError,), (AssertionError,)),
    "unknown-keyword": ({"not_an_init_argument": 1}, (TypeError,), (RuntimeError,)),
}


@pytest.mark.parametrize(
    "kwargs, errors, ray_errors", list(BAD_INIT_ARGUMENTS.values()), ids=list(BAD_INIT_ARGUMENTS)
)
def test_bad_init_arguments_raise(ray_fresh, kwargs, errors, ray_errors):
    with pytest.raises(ray_errors if TESTING_RAY else errors):
        ray.init(**{**INIT_EXTRA, **kwargs})
    assert not ray.is_initialized()
    # And a correct init works afterwards.
    ray_fresh()
    assert ray.get(square.remote(5)) == 25


@pytest.mark.skipif(TESTING_RAY, reason="Ray connects to a Ray Client server at ray://")
@pytest.mark.parametrize("where", ["argument", "RAY_ADDRESS"])
def test_a_ray_client_address_is_refused_with_what_to_use_instead(
    ray_fresh, monkeypatch, where: str
) -> None:
    address = "ray://head-host:10001"
    if where == "RAY_ADDRESS":
        monkeypatch.setenv("RAY_ADDRESS", address)
    with pytest.raises(ValueError, match="Ray Client") as raised:
        ray.init(address=address if where == "argument" else None)
    assert "Redis" in str(raised.value) and "host:port" in str(raised.value)
    assert not ray.is_initialized()
