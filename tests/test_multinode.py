"""Two node daemons on one machine make a two-node cluster: placement by custom resources,
SPREAD, node affinity, and tasks no node can run yet.

The head (1 CPU) and a second node (1 CPU, {"special": 1}) are started with the CLI;
see test_cli.py for CliCluster and the `cli` fixture, which stops them even on failure.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from test_cli import CliCluster, cli  # noqa: F401  (cli is a fixture)

import redray
from redray.client.node_view import REFRESH_SECONDS
from redray.exceptions import GetTimeoutError, TaskUnschedulableError
from redray.util.scheduling_strategies import NodeAffinitySchedulingStrategy


class TwoNodes:
    def __init__(self, cluster: CliCluster) -> None:
        self.cli = cluster
        self.head = cluster.start_head()["nodes"][0]["node_id"]
        self.second = cluster.add_node("--resources", '{"special": 1}')


@pytest.fixture
def two_nodes(cli: CliCluster) -> Iterator[TwoNodes]:  # noqa: F811
    nodes = TwoNodes(cli)
    redray.init(address="auto")
    yield nodes  # the cli fixture shuts the driver down and stops both nodes


@redray.remote
def where() -> str:
    return redray.get_runtime_context().get_node_id()


@redray.remote
def where_after(seconds: float) -> str:
    time.sleep(seconds)
    return redray.get_runtime_context().get_node_id()


def _wait_until(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.1)


@pytest.mark.timeout(300)
def test_nodes_and_resources(two_nodes: TwoNodes) -> None:
    listed = {node["NodeID"]: node for node in redray.nodes()}
    assert set(listed) == {two_nodes.head, two_nodes.second}
    assert all(node["Alive"] for node in listed.values())
    assert listed[two_nodes.head]["IsHead"] and not listed[two_nodes.second]["IsHead"]
    assert listed[two_nodes.second]["Resources"]["special"] == 1
    assert "special" not in listed[two_nodes.head]["Resources"]

    total = redray.cluster_resources()
    assert total["CPU"] == 2
    assert total["special"] == 1
    assert total["memory"] == sum(n["Resources"]["memory"] for n in listed.values())
    _wait_until(lambda: redray.available_resources().get("CPU") == 2, "both CPUs are free")

    status = two_nodes.cli.run("status").stdout
    assert "Nodes: 2 alive" in status
    assert two_nodes.head in status and two_nodes.second in status


@pytest.mark.timeout(300)
def test_custom_resource_runs_on_the_node_that_has_it(two_nodes: TwoNodes) -> None:
    special = where.options(resources={"special": 1})
    assert set(redray.get([special.remote() for _ in range(4)])) == {two_nodes.second}
    # The driver belongs to the head node; the head runs a plain task while it has room.
    assert redray.get(where.remote()) == two_nodes.head


@pytest.mark.timeout(300)
def test_spread_uses_both_nodes(two_nodes: TwoNodes) -> None:
    spread = where_after.options(scheduling_strategy="SPREAD")
    used = redray.get([spread.remote(0.2) for _ in range(6)])
    assert set(used) == {two_nodes.head, two_nodes.second}


@redray.remote
def meet(directory: str, me: str, other: str) -> str:
    """Arrive, then wait (bounded) until the other task has arrived too: only two tasks
    running at the same time can both return."""
    Path(directory, me).touch()
    deadline = time.monotonic() + 60
    while not Path(directory, other).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{other} never ran while {me} was running")
        time.sleep(0.01)
    return redray.get_runtime_context().get_node_id()


@pytest.mark.timeout(300)
def test_default_spreads_a_burst_that_one_node_cannot_hold(two_nodes: TwoNodes, tmp_path) -> None:
    # Two 1-CPU nodes: a second task submitted while the first runs goes to the other node
    # (DEFAULT counts what this driver placed), so the two can meet.
    refs = [meet.remote(str(tmp_path), "a", "b"), meet.remote(str(tmp_path), "b", "a")]
    assert set(redray.get(refs, timeout=120)) == {two_nodes.head, two_nodes.second}


@pytest.mark.timeout(300)
def test_node_affinity(two_nodes: TwoNodes) -> None:
    for node_id in (two_nodes.second, two_nodes.head):
        pinned = where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, False))
        assert set(redray.get([pinned.remote() for _ in range(3)])) == {node_id}

    unknown = os.urandom(14).hex()
    soft = where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(unknown, soft=True))
    assert redray.get(soft.remote(), timeout=60) in {two_nodes.head, two_nodes.second}
    hard = where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(unknown, soft=False))
    with pytest.raises(TaskUnschedulableError):
        redray.get(hard.remote(), timeout=60)

    # Once the second node is gone, tasks pinned softly to it run on the head.
    daemon = psutil.Process(two_nodes.cli.node_pid(two_nodes.second))
    daemon.send_signal(signal.SIGTERM)
    daemon.wait(timeout=30)
    _wait_until(
        lambda: two_nodes.second not in {n["NodeID"] for n in redray.nodes() if n["Alive"]},
        "the second node has left",
    )
    # Placement uses a node cache at most REFRESH_SECONDS old: let it forget the node.
    time.sleep(REFRESH_SECONDS + 0.5)
    dead = two_nodes.second
    soft = where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(dead, soft=True))
    assert redray.get(soft.remote(), timeout=60) == two_nodes.head
    hard = where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(dead, soft=False))
    with pytest.raises(TaskUnschedulableError):
        redray.get(hard.remote(), timeout=60)


@pytest.mark.timeout(300)
def test_infeasible_task_waits_for_a_node_that_can_run_it(two_nodes: TwoNodes) -> None:
    with pytest.warns(UserWarning, match="no node in the cluster can"):
        ref = where.options(resources={"gizmo": 1}).remote()
    with pytest.raises(GetTimeoutError):
        redray.get(ref, timeout=2)
    gizmo_node = two_nodes.cli.add_node("--resources", '{"gizmo": 1}')
    assert redray.get(ref, timeout=120) == gizmo_node
    assert redray.cluster_resources()["gizmo"] == 1
