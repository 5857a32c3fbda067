"""`timeline()`: the task history as Chrome trace events (chrome://tracing, Perfetto)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from target_ray import ray, wait_until

_TRACE_KEYS = {"name", "ph", "ts", "dur", "pid", "tid", "cat", "args"}


@ray.remote
def traced_step(x: int) -> int:
    return x + 1


def _task_events(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """The complete events of tasks named `name` (Ray also adds events per phase)."""
    return [
        event
        for event in events
        if event.get("ph") == "X" and name in (event.get("cat", "") + event.get("name", ""))
        and event.get("args", {}).get("task_id")
    ]  # fmt: skip


def test_timeline_returns_a_complete_event_per_task(ray_start: Any) -> None:
    assert ray.get([traced_step.remote(i) for i in range(3)]) == [1, 2, 3]
    events = wait_until(lambda: len(_task_events(ray.timeline(), "traced_step")) >= 3)
    assert events
    for event in _task_events(ray.timeline(), "traced_step"):
        assert _TRACE_KEYS <= set(event)
        assert event["dur"] >= 0 and event["ts"] > 0


def test_timeline_writes_json_to_a_file(ray_start: Any, tmp_path: Path) -> None:
    ray.get(traced_step.remote(10))
    wait_until(lambda: _task_events(ray.timeline(), "traced_step"))
    path = tmp_path / "trace.json"
    assert ray.timeline(filename=str(path)) is None
    written = json.loads(path.read_text())
    assert isinstance(written, list) and _task_events(written, "traced_step")
