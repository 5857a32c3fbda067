"""Custom metrics for user code, with Ray's API: `Counter`, `Gauge`, `Histogram`.

    from redray.util.metrics import Counter
    requests = Counter("requests", description="Requests served.", tag_keys=("route",))
    requests.set_default_tags({"route": "/"})
    requests.inc()                                  # on any task, actor or driver

Values recorded in a worker (or in a driver on a node) appear on that node's metrics
endpoint (`redray start --metrics-export-port N`, node/metrics.py) as `ray_<name>`
(counters as `ray_<name>_total`), summed across the node's processes for counters and
histograms, the most recent value for gauges. On a node without metrics the values are
kept in the process and exported nowhere, as Ray does without a metrics agent.
"""

from __future__ import annotations

import json
import os
import re
import threading
import warnings
from typing import Any

_VALID_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_configure_lock = threading.Lock()
_configured = False
#: The node metrics directory this driver chose (and put in its environment), if any.
_chosen_directory: str | None = None


class Metric:
    """What Counter, Gauge and Histogram share: name, tags and their checks."""

    def __init__(
        self, name: str, description: str = "", tag_keys: tuple[str, ...] | None = None
    ) -> None:
        if not name:
            raise ValueError("Empty name is not allowed. Please provide a metric name.")
        self._discard = not _VALID_NAME.match(name)
        if self._discard:
            warnings.warn(
                f"Invalid metric name: {name}. Metric will be discarded and data will not be "
                "collected or published. Metric names can only contain letters, numbers, _, "
                "and :. Metric names cannot start with numbers.",
                UserWarning,
                stacklevel=3,
            )
        self._name = name
        self._description = description
        self._tag_keys: tuple[str, ...] = tag_keys or ()
        if not isinstance(self._tag_keys, tuple):
            raise TypeError(f"tag_keys should be a tuple type, got: {type(self._tag_keys)}")
        for key in self._tag_keys:
            if not isinstance(key, str):
                raise TypeError(f"Tag keys must be str, got {type(key)}.")
        self._default_tags: dict[str, str] = {}
        self._metric: Any = None
        self._metric_lock = threading.Lock()

    def set_default_tags(self, default_tags: dict[str, str]) -> Metric:
        """Tags used by every record that does not give them; returns the metric itself."""
        for key, value in default_tags.items():
            if key not in self._tag_keys:
                raise ValueError(f"Unrecognized tag key {key}.")
            if not isinstance(value, str):
                raise TypeError(f"Tag values must be str, got {type(value)}.")
        self._default_tags = dict(default_tags)
        return self

    @property
    def info(self) -> dict[str, Any]:
        return {
            "name": self._name,
            "description": self._description,
            "tag_keys": self._tag_keys,
            "default_tags": self._default_tags,
        }

    def _child(self, tags: dict[str, str] | None) -> Any:
        """The prometheus_client child for these tags (None for a discarded metric)."""
        if self._discard:
            return None
        if tags:
            for value in tags.values():
                if not isinstance(value, str):
                    raise TypeError(f"Tag values must be str, got {type(value)}.")
            final = {**self._default_tags, **tags}
        else:
            final = self._default_tags
        missing = [key for key in self._tag_keys if key not in final]
        if missing:
            raise ValueError(f"Missing value for tag key(s): {','.join(missing)}.")
        metric = self._metric
        if metric is None:
            with self._metric_lock:
                if self._metric is None:
                    self._metric = _shared_metric(self)
                metric = self._metric
        if not self._tag_keys:
            return metric
        return metric.labels(*(final[key] for key in self._tag_keys))

    def _create(self) -> Any:
        raise NotImplementedError

    def __reduce__(self) -> tuple[Any, ...]:
        """A metric passed to a task records in the task's process (its values there)."""
        return _rebuild, (type(self), self._init_args(), self._default_tags)

    def _init_args(self) -> tuple[Any, ...]:
        return (self._name, self._description, self._tag_keys)


def _rebuild(cls: type[Metric], args: tuple[Any, ...], default_tags: dict[str, str]) -> Metric:
    metric = cls(*args)
    metric._default_tags = default_tags
    return metric


class Counter(Metric):
    """A cumulative count: `inc(value, tags)`; exported as `ray_<name>_total`."""

    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
        if not isinstance(value, (int, float)):
            raise TypeError(f"value must be int or float, got {type(value)}.")
        if value <= 0:
            raise ValueError(f"value must be >0, got {value}")
        child = self._child(tags)
        if child is not None:
            child.inc(value)

    def _create(self) -> Any:
        from prometheus_client import Counter as PromCounter

        return PromCounter("ray_" + self._name, self._description, self._tag_keys, registry=None)


class Gauge(Metric):
    """The current value of something: `set(value, tags)`."""

    def set(self, value: float | None, tags: dict[str, str] | None = None) -> None:
        if value is None:
            return
        if not isinstance(value, (int, float)):
            raise TypeError(f"value must be int or float, got {type(value)}.")
        child = self._child(tags)
        if child is not None:
            child.set(value)

    def _create(self) -> Any:
        from prometheus_client import Gauge as PromGauge

        return PromGauge(
            "ray_" + self._name,
            self._description,
            self._tag_keys,
            registry=None,
            multiprocess_mode="mostrecent",
        )


class Histogram(Metric):
    """A distribution over `boundaries` (bucket upper bounds): `observe(value, tags)`."""

    def __init__(
        self,
        name: str,
        description: str = "",
        boundaries: list[float] | None = None,
        tag_keys: tuple[str, ...] | None = None,
    ) -> None:
        super().__init__(name, description, tag_keys)
        if not boundaries:
            raise ValueError(
                "boundaries argument should be provided when using the Histogram class. "
                'e.g., Histogram("name", boundaries=[1.0, 2.0])'
            )
        for index, boundary in enumerate(boundaries):
            if boundary <= 0:
                raise ValueError(
                    f"Invalid `boundaries` argument at index {index}, {boundaries}. Use "
                    "positive values for the arguments."
                )
        self.boundaries = list(boundaries)

    def observe(self, value: float, tags: dict[str, str] | None = None) -> None:
        if not isinstance(value, (int, float)):
            raise TypeError(f"value must be int or float, got {type(value)}.")
        child = self._child(tags)
        if child is not None:
            child.observe(value)

    @property
    def info(self) -> dict[str, Any]:
        return {**super().info, "boundaries": self.boundaries}

    def _create(self) -> Any:
        from prometheus_client import Histogram as PromHistogram

        return PromHistogram(
            "ray_" + self._name,
            self._description,
            self._tag_keys,
            registry=None,
            buckets=sorted(self.boundaries),
        )

    def _init_args(self) -> tuple[Any, ...]:
        return (self._name, self._description, self.boundaries, self._tag_keys)


#: One prometheus_client metric per name in a process, whichever objects record into it
#: (Ray users create the same metric in several places, e.g. in each actor's __init__).
_shared: dict[str, tuple[type[Metric], tuple[str, ...], Any]] = {}


def _shared_metric(metric: Metric) -> Any:
    with _configure_lock:
        known = _shared.get(metric._name)
    if known is not None:
        kind, tag_keys, created = known
        if kind is not type(metric) or tag_keys != metric._tag_keys:
            raise ValueError(
                f"Metric {metric._name!r} already exists in this process as a {kind.__name__} "
                f"with tag_keys={tag_keys}; a metric name has one type and one set of tag keys."
            )
        return created
    _configure_process()
    created = metric._create()
    with _configure_lock:
        return _shared.setdefault(metric._name, (type(metric), metric._tag_keys, created))[2]


def _configure_process() -> None:
    """Make a driver on a node with metrics write its values into the node's directory
    (workers inherit it from their daemon)."""
    global _configured
    from redray.node.metrics import MULTIPROC_ENV

    with _configure_lock:
        if _configured or os.environ.get(MULTIPROC_ENV):
            _configured = True
            return
        _configured = True
        directory = _local_metrics_directory()
        if directory is None:
            return
        global _chosen_directory
        _chosen_directory = directory
        os.environ[MULTIPROC_ENV] = directory
        from prometheus_client import values

        values.ValueClass = values.get_value_class()


def _local_metrics_directory() -> str | None:
    from redray import api
    from redray.control import keys

    if not api.is_initialized():
        return None
    client = api.current_client()
    if not client.node_id:
        return None
    raw = client.redis.hget(keys.NODES, client.node_id)
    record = json.loads(raw) if raw else {}
    if record.get("metrics_export_port") is None or not record.get("log_dir"):
        return None
    directory = os.path.join(record["log_dir"], "metrics")
    return directory if os.path.isdir(directory) else None


def forget_node_directory() -> None:
    """The driver left its cluster (shutdown): stop writing into that node's directory,
    and keep it out of the environment of the next cluster's processes."""
    global _configured, _chosen_directory
    from redray.node.metrics import MULTIPROC_ENV

    with _configure_lock:
        _configured = False
        _shared.clear()
        if _chosen_directory is not None and os.environ.get(MULTIPROC_ENV) == _chosen_directory:
            del os.environ[MULTIPROC_ENV]
            from prometheus_client import values

            values.ValueClass = values.get_value_class()
        _chosen_directory = None
