"""Prometheus metrics: a node's endpoint (`--metrics-export-port`, `_metrics_export_port`),
its node gauges, and user metrics (redray.util.metrics, Ray's API) recorded in tasks,
actors and the driver. The endpoint is scraped with urllib, as Prometheus would."""

from __future__ import annotations

import os
import urllib.request
from typing import Any

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from target_ray import TESTING_RAY, ray, redray_only, wait_until
from test_cli import CliCluster, cli  # noqa: F401  (cli is a fixture)

if TESTING_RAY:
    from ray.util import metrics
else:
    from redray.util import metrics

MB = 1024 * 1024


def node_ip() -> str:
    from redray.node.daemon import node_ip as address

    return address()


def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    """Every sample on the endpoint: (name, labels) -> value."""
    url = f"http://{node_ip()}:{port}/metrics"  # the exporter listens on the node's address
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(port: int, name: str, **labels: str) -> float | None:
    """The value of the one sample `name` whose labels include `labels` (None if absent)."""
    wanted = set(labels.items())
    found = [value for (n, got), value in scrape(port).items() if n == name and wanted <= got]
    return found[0] if found else None


def metrics_port() -> int:
    (node,) = [node for node in ray.nodes() if node["Alive"]]
    return node["MetricsExportPort"]


@ray.remote
def record_in_a_task(i: int) -> int:
    done = metrics.Counter("test_done", description="Tasks done.", tag_keys=("kind",))
    done.set_default_tags({"kind": "task"})
    done.inc()
    metrics.Gauge("test_last", description="Last index.").set(i)
    metrics.Histogram("test_seconds", boundaries=[0.1, 1.0]).observe(0.5)
    return i


@ray.remote
class Recorder:
    def __init__(self) -> None:
        self.calls = metrics.Counter("test_calls", tag_keys=("actor",))

    def call(self) -> None:
        self.calls.inc(2.0, tags={"actor": "recorder"})


@redray_only  # Ray's metric names and labels differ (and its agent exports with a delay)
@pytest.mark.timeout(120)
def test_user_metrics_from_tasks_actors_and_the_driver_reach_the_endpoint(ray_fresh: Any):
    ray_fresh(_metrics_export_port=0)
    port = metrics_port()
    ray.get([record_in_a_task.remote(i) for i in range(6)])
    recorder = Recorder.remote()
    ray.get([recorder.call.remote() for _ in range(3)])
    metrics.Counter("test_driver").inc(5)
    samples = scrape(port)
    assert samples[("ray_test_done_total", frozenset({("kind", "task")}))] == 6  # all workers
    assert samples[("ray_test_calls_total", frozenset({("actor", "recorder")}))] == 6
    assert samples[("ray_test_driver_total", frozenset())] == 5
    assert samples[("ray_test_seconds_count", frozenset())] == 6
    assert samples[("ray_test_seconds_bucket", frozenset({("le", "1.0")}))] == 6
    assert samples[("ray_test_seconds_bucket", frozenset({("le", "0.1")}))] == 0
    assert samples[("ray_test_last", frozenset())] in range(6)


@redray_only  # Ray's node metrics have other names and labels
@pytest.mark.timeout(120)
def test_node_metrics_show_resources_tasks_and_workers(ray_fresh: Any):
    ray_fresh(_metrics_export_port=0)
    port = metrics_port()
    assert wait_until(lambda: sample(port, "ray_resources", Name="CPU", State="AVAILABLE") == 2)
    assert sample(port, "ray_resources", Name="CPU", State="USED") == 0
    ray.get([record_in_a_task.remote(i) for i in range(4)])
    assert wait_until(lambda: (sample(port, "ray_tasks_finished_total") or 0) >= 4)
    assert wait_until(lambda: sample(port, "ray_workers", State="idle") is not None)
    assert sample(port, "ray_tasks", State="RUNNING") is not None
    assert sample(port, "ray_scheduler_queued_tasks") is not None


@ray.remote
def first(array: np.ndarray) -> int:
    return int(array[0])


@redray_only
@pytest.mark.timeout(180)
def test_object_store_metrics_count_used_spilled_and_restored_bytes(ray_fresh: Any):
    ray_fresh(num_cpus=1, object_store_memory=200 * MB, _metrics_export_port=0)
    port = metrics_port()
    refs = [ray.put(np.full(50 * MB // 8, i, dtype=np.int64)) for i in range(6)]
    assert wait_until(
        lambda: (sample(port, "ray_spill_manager_objects_bytes", Type="Spilled") or 0) >= 100 * MB
    )
    assert sample(port, "ray_object_store_memory", Location="SPILLED") >= 100 * MB
    assert sample(port, "ray_object_store_memory", Location="MMAP_SHM") > 0
    # Reading them all back restores the spilled ones (some from disk into the store).
    assert [ray.get(first.remote(ref)) for ref in refs] == list(range(6))
    assert wait_until(
        lambda: (sample(port, "ray_spill_manager_objects_bytes", Type="Restored") or 0) >= 50 * MB
    )


@redray_only  # the redray CLI
@pytest.mark.timeout(180)
def test_redray_start_serves_metrics_on_the_port_given(
    cli: CliCluster,  # noqa: F811
    ray_fresh: Any,  # stops the module's cluster first: this driver joins the CLI's
):
    from redray.node.redis_launcher import free_port

    port = free_port()
    cli.start_head("--metrics-export-port", str(port))
    assert wait_until(lambda: sample(port, "ray_resources", Name="CPU", State="AVAILABLE") == 1)
    ray.init(address="auto")
    assert metrics_port() == port


@redray_only  # Ray always starts a metrics agent
@pytest.mark.timeout(120)
def test_metrics_are_off_by_default(ray_start: Any):
    assert metrics_port() is None
    # An earlier cluster's metrics directory is not left to this one's processes.
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    metrics.Counter("test_unexported").inc()  # recorded in the process, exported nowhere
    assert ray.get(record_in_a_task.remote(3)) == 3


# ---- the API's checks (no cluster needed) -------------------------------------------------


def test_missing_tag_values_are_refused() -> None:
    counter = metrics.Counter("test_tags", tag_keys=("a", "b"))
    counter.set_default_tags({"a": "1"})
    with pytest.raises(ValueError, match="Missing value for tag key"):
        counter.inc()


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(TypeError, match="tag_keys should be a tuple"):
        metrics.Counter("test_bad", tag_keys=["a"])
    with pytest.raises(ValueError, match="Unrecognized tag key"):
        metrics.Gauge("test_bad_gauge", tag_keys=("a",)).set_default_tags({"z": "1"})
    with pytest.raises(TypeError, match="Tag values must be str"):
        metrics.Gauge("test_bad_gauge2", tag_keys=("a",)).set_default_tags({"a": 1})
    with pytest.raises(ValueError, match="value must be >0"):
        metrics.Counter("test_bad_counter").inc(0)
    with pytest.raises(ValueError, match="boundaries argument should be provided"):
        metrics.Histogram("test_bad_histogram")
    with pytest.raises(ValueError, match="Empty name"):
        metrics.Counter("")


def test_set_default_tags_returns_the_metric_and_info_describes_it() -> None:
    gauge = metrics.Gauge("test_info", description="A gauge.", tag_keys=("k",))
    assert gauge.set_default_tags({"k": "v"}) is gauge
    assert gauge.info == {
        "name": "test_info",
        "description": "A gauge.",
        "tag_keys": ("k",),
        "default_tags": {"k": "v"},
    }


@redray_only
@pytest.mark.timeout(120)
def test_a_metrics_port_in_use_fails_init_clearly(ray_fresh: Any, capfd: Any):
    import socket

    with socket.socket() as taken:
        taken.bind((node_ip(), 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match="did not start"):
            ray_fresh(_metrics_export_port=port)
    assert f"could not serve on {node_ip()}:{port}" in capfd.readouterr().err
