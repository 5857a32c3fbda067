"""A node's Prometheus metrics (`redray start --metrics-export-port N`).

prometheus_client's multiprocess mode does the collecting: every process of the node (the
daemon, its workers, a driver on the node) writes its metric values into memory-mapped
files of one directory (`PROMETHEUS_MULTIPROC_DIR`, set by the daemon before it forks any
worker), and a small exporter process (node/metrics_exporter.py) merges them for each
scrape. Writing a value is a store into a mapping: no thread, no syscall, no round trip;
the daemon stays single-threaded and safe to fork from.

The daemon sets its node's gauges on each heartbeat (`NodeMetrics.update`); user metrics
(redray.util.metrics) are written by the processes that record them.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from redray.objectstore import spill_stats
from redray.objectstore.spill_stats import SpillTotals

if TYPE_CHECKING:
    from redray.node.daemon import NodeDaemon

#: The variable prometheus_client reads to write values into files (multiprocess mode).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_EXPORTER_START_SECONDS = 30.0


class NodeMetrics:
    """The daemon's side: the exporter process and the node's own gauges."""

    def __init__(self, node_id: str, directory: str, host: str, port: int) -> None:
        self.node_id = node_id
        self.directory = Path(directory)
        shutil.rmtree(self.directory, ignore_errors=True)  # values of an earlier run
        self.directory.mkdir(parents=True)
        os.environ[MULTIPROC_ENV] = str(self.directory)  # before prometheus_client loads
        from prometheus_client import Counter, Gauge, values

        values.ValueClass = values.get_value_class()  # in case it was imported before
        labels = ("NodeId",)
        self._tasks = Gauge("ray_tasks", "Tasks on this node by state.", (*labels, "State"),
                            registry=None, multiprocess_mode="mostrecent")  # fmt: skip
        self._actors = Gauge("ray_actors", "Actors on this node by state.", (*labels, "State"),
                             registry=None, multiprocess_mode="mostrecent")  # fmt: skip
        self._workers = Gauge("ray_workers", "Worker processes on this node by state.",
                              (*labels, "State"), registry=None,
                              multiprocess_mode="mostrecent")  # fmt: skip
        self._queued = Gauge("ray_scheduler_queued_tasks",
                             "Tasks queued on this node waiting for resources or a worker.",
                             labels, registry=None, multiprocess_mode="mostrecent")  # fmt: skip
        self._store = Gauge("ray_object_store_memory",
                            "Object store bytes used, in shared memory or spilled to disk.",
                            (*labels, "Location"), registry=None,
                            multiprocess_mode="mostrecent")  # fmt: skip
        self._store_capacity = Gauge("ray_object_store_available_memory",
                                     "Object store bytes still free on this node.", labels,
                                     registry=None, multiprocess_mode="mostrecent")  # fmt: skip
        self._spill = Gauge("ray_spill_manager_objects_bytes",
                            "Bytes spilled to disk and restored from it since the node started.",
                            (*labels, "Type"), registry=None,
                            multiprocess_mode="mostrecent")  # fmt: skip
        self._resources = Gauge("ray_resources", "Logical resources of this node.",
                                (*labels, "Name", "State"), registry=None,
                                multiprocess_mode="mostrecent")  # fmt: skip
        self._finished = Counter("ray_tasks_finished", "Tasks this node's workers finished.",
                                 labels, registry=None)  # fmt: skip
        self._spill_totals: SpillTotals | None = None
        self._process, self.port = _start_exporter(str(self.directory), host, port)

    def task_finished(self) -> None:
        self._finished.labels(self.node_id).inc()

    def update(self, daemon: NodeDaemon) -> None:
        """Set the node's gauges from the daemon's state (called on each heartbeat)."""
        node = self.node_id
        scheduler = daemon.scheduler
        running = scheduler.running_count
        actors = scheduler.actor_count
        self._tasks.labels(node, "RUNNING").set(running)
        self._tasks.labels(node, "PENDING_NODE_ASSIGNMENT").set(scheduler.queued_count)
        self._queued.labels(node).set(scheduler.queued_count)
        self._actors.labels(node, "ALIVE").set(actors)
        total_workers = len(daemon.pool.workers)
        self._workers.labels(node, "busy").set(running)
        self._workers.labels(node, "actor").set(actors)
        self._workers.labels(node, "idle").set(max(0, total_workers - running - actors))
        store = daemon.store
        used = store.used_bytes()
        spilled = _directory_bytes(store.spill_directory)
        self._store.labels(node, "MMAP_SHM").set(used)
        self._store.labels(node, "SPILLED").set(spilled)
        capacity = store.capacity()
        if capacity:
            self._store_capacity.labels(node).set(max(0, capacity - used))
        if self._spill_totals is None:
            self._spill_totals = SpillTotals(store.directory)
        totals = self._spill_totals.refresh()
        self._spill.labels(node, "Spilled").set(totals[spill_stats.SPILLED])
        self._spill.labels(node, "Restored").set(totals[spill_stats.RESTORED])
        available = scheduler.available
        for name, total in daemon.config.resources.items():
            free = available.get(name, 0.0)
            self._resources.labels(node, name, "USED").set(total - free)
            self._resources.labels(node, name, "AVAILABLE").set(free)

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


def _directory_bytes(directory: Path) -> int:
    total = 0
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                try:
                    total += entry.stat().st_size
                except FileNotFoundError:
                    pass
    except FileNotFoundError:
        pass
    return total


def _start_exporter(directory: str, host: str, port: int) -> tuple[subprocess.Popen, int]:
    """Start the exporter process and wait until it listens; returns it and its port."""
    read_end, write_end = os.pipe()
    process = subprocess.Popen(
        [sys.executable, "-m", "redray.node.metrics_exporter", directory, host, str(port),
         str(write_end)],
        pass_fds=[write_end], stdin=subprocess.DEVNULL,
    )  # fmt: skip
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], _EXPORTER_START_SECONDS)
        line = os.read(read_end, 4096).decode() if ready else ""
    finally:
        os.close(read_end)
    if not line.startswith("ready "):
        process.kill()
        process.wait()
        reason = line.strip() or "it did not start in time"
        raise RuntimeError(f"The metrics exporter could not serve on {host}:{port}: {reason}")
    return process, int(line.split()[1])
