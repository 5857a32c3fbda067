"""`redray list/get/summary/memory/timeline` and the demand part of `redray status`, run
as subprocesses against a cluster started with `redray start` (test_cli.CliCluster)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from target_ray import redray_only, wait_until
from test_cli import CliCluster, cli  # noqa: F401  (the `cli` fixture)

import redray

pytestmark = redray_only


@redray.remote
def cli_listed(x: int) -> int:
    return x * 2


@redray.remote(num_cpus=64)
def cli_too_big() -> int:
    return 1


def _json(cli: CliCluster, *args: str) -> Any:  # noqa: F811
    return json.loads(cli.run(*args, "--format", "json").stdout)


def test_state_commands_without_a_cluster_say_how_to_start_one(cli: CliCluster) -> None:  # noqa: F811
    for command in (["list", "tasks"], ["summary", "tasks"], ["memory"], ["timeline"]):
        result = cli.run(*command, check=False)
        assert result.returncode == 1
        assert "redray start --head" in result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.timeout(300)
def test_list_get_summary_memory_timeline(cli: CliCluster, tmp_path: Path) -> None:  # noqa: F811
    cli.start_head("--num-cpus", "2")
    redray.init(address="auto")
    refs = [cli_listed.remote(i) for i in range(4)]
    assert redray.get(refs) == [0, 2, 4, 6]
    big = redray.put(b"m" * 300_000)
    with pytest.warns(UserWarning, match="no node in the cluster"):
        pending = cli_too_big.remote()
    client = redray.api.current_client()
    client.task_events.flush()
    client.batcher.flush()

    listed = wait_until(
        lambda: len(_json(cli, "list", "tasks", "--filter", "name=cli_listed")) == 4
    )
    assert listed
    tasks = _json(cli, "list", "tasks", "--filter", "name=cli_listed", "--limit", "2")
    assert len(tasks) == 2 and all(task["state"] == "FINISHED" for task in tasks)
    assert "events" not in tasks[0]  # base columns only without --detail
    detailed = _json(cli, "list", "tasks", "--filter", "name=cli_listed", "--detail")
    assert all(task["events"] for task in detailed)
    others = _json(cli, "list", "tasks", "--filter", "name!=cli_listed")
    assert [task["name"] for task in others] == ["cli_too_big"]

    table = cli.run("list", "tasks").stdout
    assert "TASK_ID" in table and "cli_listed" in table

    task_id = refs[0].task_id()
    got = _json(cli, "get", "tasks", task_id)
    assert got["task_id"] == task_id and got["state"] == "FINISHED"
    missing = cli.run("get", "tasks", "f" * 24, check=False)
    assert missing.returncode == 1 and "No task with id" in missing.stderr

    bad = cli.run("list", "tasks", "--filter", "colour=red", check=False)
    assert bad.returncode == 1 and "Supported filter columns" in bad.stderr

    summary = _json(cli, "summary", "tasks")["cluster"]["summary"]
    assert summary["cli_listed"]["state_counts"] == {"FINISHED": 4}
    assert "cli_listed" in cli.run("summary", "tasks").stdout

    memory = cli.run("memory").stdout
    assert big.hex() in memory and "DRIVER" in memory

    status = cli.run("status").stdout
    assert "{'CPU': 64}: 1+ pending" in status and "infeasible" in status

    trace = tmp_path / "trace.json"
    assert "Wrote" in cli.run("timeline", "-o", str(trace)).stdout
    events = json.loads(trace.read_text())
    assert sum(event["name"] == "cli_listed" for event in events) == 4
    redray.cancel(pending)
