"""Choosing a node for a task (`Placement`), without processes: DEFAULT, SPREAD and node
affinity over node snapshots, and DEFAULT counting what this process has placed."""

from __future__ import annotations

import pytest

from redray.exceptions import TaskUnschedulableError
from redray.scheduler.placement import NodeState, Placement
from redray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

CPU = {"CPU": 1.0}


def node(node_id: str, cpus: float = 1.0, free: float | None = None, queued: int = 0) -> NodeState:
    free = cpus if free is None else free
    return NodeState(node_id, {"CPU": cpus}, {"CPU": free}, queued=queued)


def place_burst(placement: Placement, nodes: list[NodeState], count: int) -> list[str]:
    chosen = []
    for _ in range(count):
        node_id = placement.choose(CPU, "DEFAULT", nodes, "local")
        placement.placed(node_id, CPU)
        chosen.append(node_id)
    return chosen


def test_default_keeps_work_local_while_the_local_node_has_room():
    placement = Placement()
    nodes = [node("local", cpus=4), node("other", cpus=4)]
    assert place_burst(placement, nodes, 4) == ["local"] * 4


def test_default_counts_its_own_placements_in_a_burst():
    # Both snapshots say "1 CPU free"; without counting, all 8 would queue locally.
    placement = Placement()
    chosen = place_burst(placement, [node("local"), node("other")], 8)
    assert chosen.count("local") == 4 and chosen.count("other") == 4
    assert chosen[:2] == ["local", "other"]


def test_default_shares_a_backlog_by_node_size():
    placement = Placement()
    chosen = place_burst(placement, [node("local", cpus=1), node("big", cpus=3)], 8)
    assert chosen.count("big") == 6 and chosen.count("local") == 2


def test_default_avoids_a_node_whose_heartbeat_shows_a_queue():
    placement = Placement()
    nodes = [node("local", free=0, queued=5), node("other", free=0, queued=1)]
    assert placement.choose(CPU, "DEFAULT", nodes, "local") == "other"


def test_finished_tasks_make_room_again():
    placement = Placement()
    nodes = [node("local"), node("other")]
    assert place_burst(placement, nodes, 2) == ["local", "other"]
    placement.finished("local", CPU)
    assert placement.choose(CPU, "DEFAULT", nodes, "local") == "local"


def test_default_ignores_nodes_that_can_never_fit_the_task():
    placement = Placement()
    nodes = [node("local", cpus=1), node("big", cpus=8)]
    assert placement.choose({"CPU": 4.0}, "DEFAULT", nodes, "local") == "big"
    assert placement.choose({"CPU": 16.0}, "DEFAULT", nodes, "local") is None


def test_zero_cpu_tasks_stay_local():
    placement = Placement()
    nodes = [node("local", free=0, queued=10), node("other")]
    assert placement.choose({}, "DEFAULT", nodes, "local") == "local"


def test_spread_round_robins_over_feasible_nodes():
    placement = Placement()
    nodes = [node("b"), node("a"), node("c", cpus=0)]
    chosen = [placement.choose(CPU, "SPREAD", nodes, "a") for _ in range(4)]
    assert chosen == ["a", "b", "a", "b"]


def test_hard_node_affinity_fails_when_the_node_is_gone():
    placement = Placement()
    strategy = NodeAffinitySchedulingStrategy("dead00", soft=False)
    with pytest.raises(TaskUnschedulableError, match="dead00"):
        placement.choose(CPU, strategy, [node("local")], "local")


def test_soft_node_affinity_falls_back_to_default():
    placement = Placement()
    strategy = NodeAffinitySchedulingStrategy("dead00", soft=True)
    assert placement.choose(CPU, strategy, [node("local"), node("other")], "local") == "local"
