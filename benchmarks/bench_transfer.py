"""Cross-node object transfer: a 100 MB array put on the head node and read by a task on a
second node (its own daemon / raylet and object store, on the same machine), plus a raw
loopback TCP baseline (the upper limit for any transfer that copies the bytes over a socket).

The second node is started for the benchmark only, with the backend's own command line
(``redray start --block`` / ``ray start --block``) as a subprocess we own, and stopped by
terminating that subprocess: the benchmark's own cluster is never touched.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bench_harness as h
import numpy as np
from bench_objects import MB, _array

#: A custom resource only the second node has; tasks ask for a sliver of it to land there.
SECOND_NODE_RESOURCE = "bench_second_node"
#: The head node's resource in both frameworks (Ray's name).
HEAD_RESOURCE = "node:__internal_head__"
NODE_START_TIMEOUT_S = 60.0  # Ray joins in 2-3 s on the project machine, more under load
NODE_STOP_TIMEOUT_S = 30.0
SECOND_NODE_STORE_BYTES = 1 << 30  # plenty for one 100 MB object at a time
SETTLE_S = 0.2


# --------------------------------------------------------------------------- the second node


def _second_node_command(backend: str, address: str, tmp: Path, num_cpus: int) -> list[str]:
    """The command that starts the second node in the foreground; ``tmp`` is ours to use.

    Both frameworks record the cluster they joined in a machine-wide file (Ray:
    ``/tmp/ray/ray_current_cluster``, which a later plain ``ray.init()`` would try to join;
    redray: its state file), so the node gets a private directory for that and its logs.
    """
    resources = json.dumps({SECOND_NODE_RESOURCE: 1})
    if backend == "ray":
        return [
            sys.executable,
            "-m",
            "ray.scripts.scripts",
            "start",
            f"--address={address}",
            f"--num-cpus={num_cpus}",
            f"--resources={resources}",
            f"--object-store-memory={SECOND_NODE_STORE_BYTES}",
            f"--temp-dir={tmp / 'ray'}",
            "--block",
        ]
    if backend == "redray":
        return [
            sys.executable,
            "-m",
            "redray.cli",
            "start",
            "--address",
            address,
            "--num-cpus",
            str(num_cpus),
            "--resources",
            resources,
            "--object-store-memory",
            str(SECOND_NODE_STORE_BYTES),
            "--block",
        ]
    raise NotImplementedError(f"no way known to start a second node for backend {backend!r}")


def _tail(path: Path, n: int = 8) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " / ".join(ln.strip() for ln in lines[-n:])


def _wait_for_node(
    rt: Any, proc: subprocess.Popen, known: set[str], log_path: Path, timeout: float
) -> str:
    """The id of the new alive node that has ``SECOND_NODE_RESOURCE``; bounded wait.

    The node must also count in ``cluster_resources()``: redray's driver places tasks with
    a node list it refreshes about once a second (``cluster_resources()`` refreshes it), and
    would otherwise warn that the first task is infeasible.
    """
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(
                f"the second node's process exited with code {proc.returncode}: {_tail(log_path)}"
            )
        new = [
            node["NodeID"]
            for node in rt.nodes()
            if node.get("Alive")
            and node["NodeID"] not in known
            and SECOND_NODE_RESOURCE in node.get("Resources", {})
        ]
        if new and rt.cluster_resources().get(SECOND_NODE_RESOURCE, 0) >= 1:
            return new[0]
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"the second node did not show up in nodes() within {timeout:.0f} s: "
                f"{_tail(log_path)}"
            )
        time.sleep(0.2)


def _stop(proc: subprocess.Popen) -> dict[str, Any]:
    """Terminate the ``start --block`` process (it stops what it started), then make sure
    every process below it is gone; returns how long it took and what had to be killed."""
    ps = h._psutil()
    below = []
    for pid in h.descendants(proc.pid):
        with contextlib.suppress(ps.Error):
            below.append(ps.Process(pid))
    t0 = h.now()
    killed: list[str] = []
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=NODE_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            killed.append(f"start --block({proc.pid})")
            proc.kill()
            proc.wait()
    _, alive = ps.wait_procs(below, timeout=10)
    if alive:
        killed += h.kill_pids(p.pid for p in alive)
    return {"stop_s": h.now() - t0, "processes": len(below) + 1, "had_to_kill": killed}


@contextlib.contextmanager
def second_node(ctx: h.Ctx, num_cpus: int = 1) -> Iterator[dict[str, Any]]:
    """Start a second node joined to the running cluster; yields facts about it (its
    ``node_id``, start time) and fills in how it stopped afterwards."""
    rt = ctx.rt
    address = rt.get_runtime_context().gcs_address
    known = {node["NodeID"] for node in rt.nodes()}
    tmp = Path(tempfile.mkdtemp(prefix="bench-node2-"))  # short: Ray puts sockets below it
    command = _second_node_command(ctx.backend, address, tmp, num_cpus)
    log_path = tmp / "node.log"
    env = dict(os.environ)
    env["REDRAY_STATE_DIR"] = str(tmp / "state")  # see _second_node_command
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
    info: dict[str, Any] = {"address": address, "pid": proc.pid}
    try:
        t0 = h.now()
        info["node_id"] = _wait_for_node(rt, proc, known, log_path, NODE_START_TIMEOUT_S)
        info["start_s"] = h.now() - t0
        yield info
    finally:
        info.update(_stop(proc))
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- benchmarks


def cross_node_transfer(ctx: h.Ctx) -> dict[str, Any]:
    """``put`` 100 MB on the head, then ``get`` the result of a task on the second node
    that reads it (every repetition puts a fresh object, so every one pulls it again)."""
    rt = ctx.rt

    def touch(a: np.ndarray) -> tuple[int, str]:
        # A strided sum reads one byte per page: cheap, but the whole object must be there.
        return int(a[::4096].sum(dtype=np.uint64)), rt.get_runtime_context().get_node_id()

    arr = _array(100 * MB)
    expected = int(arr[::4096].sum(dtype=np.uint64))
    tiny = np.zeros(8, dtype=np.uint8)
    reps = ctx.n(5, 2)
    with second_node(ctx) as node:
        there = rt.remote(touch).options(resources={SECOND_NODE_RESOURCE: 0.001})
        here = rt.remote(touch).options(resources={HEAD_RESOURCE: 0.001})
        # Warm-up: the second node's worker starts and the function is exported.
        _, where = rt.get(there.remote(tiny), timeout=NODE_START_TIMEOUT_S)
        assert where == node["node_id"], f"ran on {where}, not on the second node"

        small = []
        for _ in range(ctx.n(20, 5)):
            t0 = h.now()
            rt.get(there.remote(tiny))
            small.append(h.now() - t0)

        def once(f: Any) -> float:
            ref = rt.put(arr)  # a fresh object: nothing is cached on the second node
            # Let the asynchronous work of the put and of freeing the previous object
            # settle: on 2 cores it would otherwise add 10-50 ms of noise to the transfer.
            time.sleep(SETTLE_S)
            t0 = h.now()
            total, _ = rt.get(f.remote(ref))
            elapsed = h.now() - t0
            assert total == expected, (total, expected)
            del ref
            gc.collect()
            return elapsed

        remote_s = [once(there) for _ in range(reps)]
        local_s = [once(here) for _ in range(ctx.n(3, 1))]

    best = min(remote_s)
    small_s = statistics.median(small)
    return {
        "metrics": {"cross_node_transfer.rate": arr.nbytes / best / 1e9},
        "details": {
            "bytes": arr.nbytes,
            "remote_task_s": remote_s,
            "small_task_on_second_node_median_ms": small_s * 1e3,
            "small_task_on_second_node_ms": [s * 1e3 for s in small],
            "rate_minus_small_task_GB_per_s": arr.nbytes / max(best - small_s, 1e-9) / 1e9,
            "same_task_on_head_node_s": local_s,
            "second_node": node,
        },
    }


_SENDER = """
import socket, sys
port, nbytes, reps = map(int, sys.argv[1:4])
data = bytes(range(251)) * (nbytes // 251 + 1)
data = memoryview(data)[:nbytes]
with socket.create_connection(("127.0.0.1", port)) as sock:
    for _ in range(reps):
        if sock.recv(1) != b"g":
            break
        sock.sendall(data)
"""


def loopback_tcp(ctx: h.Ctx) -> dict[str, Any]:
    """100 MB over a loopback TCP socket from another process into a preallocated buffer
    (the metric), then into a fresh buffer each time (details: a transfer into a new object
    also pays for allocating and faulting in its pages)."""
    nbytes = 100 * MB
    warm_reps = 6  # into one buffer; the first rep faults it in and is not counted
    fresh_reps = 3
    reps = warm_reps + fresh_reps
    buf = bytearray(nbytes)
    chunk = 8 * MB
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        sender = subprocess.Popen(
            [sys.executable, "-c", _SENDER, str(port), str(nbytes), str(reps)],
            stdin=subprocess.DEVNULL,
        )
        try:
            server.settimeout(30)
            conn, _ = server.accept()
            with conn:
                conn.settimeout(30)
                times = []
                for i in range(reps):
                    t0 = h.now()
                    if i >= warm_reps:
                        buf = bytearray(nbytes)
                    view = memoryview(buf)
                    conn.sendall(b"g")
                    got = 0
                    while got < nbytes:
                        n = conn.recv_into(view[got:], min(chunk, nbytes - got))
                        if n == 0:
                            raise ConnectionError("sender closed early")
                        got += n
                    times.append(h.now() - t0)
                    view.release()
        finally:
            try:
                sender.wait(timeout=10)
            except subprocess.TimeoutExpired:
                sender.kill()
                sender.wait()
    assert buf[251 * 1000 + 7] == 7
    warm, fresh = times[1:warm_reps], times[warm_reps:]
    return {
        "metrics": {"loopback_tcp.rate": nbytes / min(warm) / 1e9},
        "details": {
            "bytes": nbytes,
            "times_s": times[:warm_reps],
            "fresh_buffer_times_s": fresh,
            "fresh_buffer_GB_per_s": nbytes / min(fresh) / 1e9,
        },
    }
