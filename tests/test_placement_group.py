"""Placement groups: creation, readiness, the table, scheduling tasks and actors into bundles,
reservations that keep other tasks out, removal, validation, pending (infeasible) groups, and
STRICT_SPREAD across the two nodes of a CLI cluster.

The single-node tests run on the module's shared 2-CPU cluster (`ray_start`) and work against
real Ray too (REDRAY_TEST_AGAINST=ray); every test removes the groups it creates.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from target_ray import redray_only
from test_cli import CliCluster, cli  # noqa: F401  (cli is a fixture)

import redray


@pytest.fixture
def ray(ray_start: Any) -> Iterator[Any]:
    created: list[Any] = []
    original = ray_start.util.placement_group

    def tracked(*args: Any, **kwargs: Any) -> Any:
        pg = original(*args, **kwargs)
        created.append(pg)
        return pg

    ray_start._test_pg = tracked
    yield ray_start
    for pg in created:
        try:
            ray_start.util.remove_placement_group(pg)
        except Exception:
            pass


def _strategy(ray: Any, pg: Any, index: int = -1, capture: bool | None = None) -> Any:
    from_module = ray.util.scheduling_strategies.PlacementGroupSchedulingStrategy
    return from_module(pg, placement_group_bundle_index=index,
                       placement_group_capture_child_tasks=capture)  # fmt: skip


@pytest.mark.timeout(120)
def test_create_ready_and_table(ray: Any) -> None:
    pg = ray._test_pg([{"CPU": 1}, {"CPU": 1}], strategy="PACK", name="pg-table")
    assert pg.bundle_count == 2
    assert pg.bundle_specs == [{"CPU": 1}, {"CPU": 1}]
    assert isinstance(pg.id.hex(), str) and pg.id.hex()
    assert ray.get(pg.ready(), timeout=60) == pg
    ready, _ = ray.wait([pg.ready()], timeout=60)
    assert len(ready) == 1
    assert pg.wait(timeout_seconds=60)

    entry = ray.util.placement_group_table(pg)
    assert entry["placement_group_id"] == pg.id.hex()
    assert entry["state"] == "CREATED"
    assert entry["strategy"] == "PACK"
    assert entry["name"] == "pg-table"
    assert entry["bundles"] == {0: {"CPU": 1.0}, 1: {"CPU": 1.0}}
    node = ray.get_runtime_context().get_node_id()
    assert entry["bundles_to_node_id"] == {0: node, 1: node}
    assert pg.id.hex() in ray.util.placement_group_table()
    assert ray.util.get_placement_group("pg-table") == pg
    assert ray.util.get_current_placement_group() is None

    ray.util.remove_placement_group(pg)
    assert ray.util.placement_group_table(pg)["state"] == "REMOVED"
    with pytest.raises(ValueError):
        ray.util.get_placement_group("pg-table")


@pytest.mark.timeout(120)
def test_tasks_and_actor_run_in_bundles(ray: Any) -> None:
    pg = ray._test_pg([{"CPU": 1}, {"CPU": 1}])
    assert pg.wait(60)

    @ray.remote(num_cpus=1)
    def in_group() -> Any:
        current = ray.util.get_current_placement_group()
        return current.id.hex() if current is not None else None

    refs = [
        in_group.options(scheduling_strategy=_strategy(ray, pg, i % 2)).remote() for i in range(4)
    ]
    refs += [
        in_group.options(scheduling_strategy=_strategy(ray, pg, -1)).remote() for _ in range(4)
    ]
    assert ray.get(refs, timeout=60) == [pg.id.hex()] * 8

    @ray.remote
    class Counter:
        def __init__(self) -> None:
            self.count = 0

        def add(self) -> int:
            self.count += 1
            return self.count

        def group(self) -> Any:
            return ray.util.get_current_placement_group().id.hex()

    counter = Counter.options(scheduling_strategy=_strategy(ray, pg, 1)).remote()
    assert ray.get([counter.add.remote() for _ in range(3)], timeout=60) == [1, 2, 3]
    assert ray.get(counter.group.remote(), timeout=60) == pg.id.hex()

    ray.util.remove_placement_group(pg)
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(counter.add.remote(), timeout=60)


@pytest.mark.timeout(120)
def test_reserved_resources_keep_other_tasks_out_until_removal(ray: Any) -> None:
    pg = ray._test_pg([{"CPU": 2}])
    assert ray.get(pg.ready(), timeout=60) == pg

    @ray.remote(num_cpus=1)
    def plain() -> str:
        return "ran"

    deadline = time.monotonic() + 60  # available_resources() lags by a heartbeat
    while ray.available_resources().get("CPU", 0) > 0:
        assert time.monotonic() < deadline, "the reservation never showed"
        time.sleep(0.1)

    ref = plain.remote()
    ready, not_ready = ray.wait([ref], timeout=3)
    assert ready == [] and not_ready == [ref]  # both CPUs are the group's

    # ... but the group's own tasks run, even two at once.
    @ray.remote(num_cpus=1)
    def in_group() -> str:
        return "in group"

    strategy = _strategy(ray, pg, 0)
    assert ray.get([in_group.options(scheduling_strategy=strategy).remote() for _ in range(2)],
                   timeout=60) == ["in group"] * 2  # fmt: skip

    ray.util.remove_placement_group(pg)
    assert ray.get(ref, timeout=60) == "ran"


@pytest.mark.timeout(120)
def test_child_tasks_captured_in_the_group(ray: Any) -> None:
    pg = ray._test_pg([{"CPU": 2}])
    assert pg.wait(60)

    @ray.remote(num_cpus=1)
    def child() -> Any:
        current = ray.util.get_current_placement_group()
        return current.id.hex() if current is not None else None

    @ray.remote(num_cpus=1)
    def parent() -> Any:
        # The node's CPUs are all in the group: the child runs only if it is captured.
        return ray.get(child.remote(), timeout=60)

    captured = parent.options(scheduling_strategy=_strategy(ray, pg, capture=True))
    assert ray.get(captured.remote(), timeout=90) == pg.id.hex()

    # The deprecated options say the same as the strategy.
    with pytest.warns(DeprecationWarning):
        old_style = parent.options(placement_group=pg, placement_group_capture_child_tasks=True)
    assert ray.get(old_style.remote(), timeout=90) == pg.id.hex()


@pytest.mark.timeout(120)
def test_invalid_groups_and_requests_raise_value_error(ray: Any) -> None:
    invalid: list[Any] = [[], [{}], [{"CPU": 0}], [{"CPU": "1"}], {"CPU": 1}, ["CPU"]]
    if ray is redray:  # Ray accepts negative quantities here (and never schedules them)
        invalid.append([{"CPU": -1}])
    for bundles in invalid:
        with pytest.raises(ValueError):
            ray.util.placement_group(bundles)
    with pytest.raises(ValueError):
        ray.util.placement_group([{"CPU": 1}], strategy="TIGHT")
    with pytest.raises(ValueError):
        ray.util.placement_group([{"CPU": 1}], lifetime="forever")

    pg = ray._test_pg([{"CPU": 1}])

    @ray.remote(num_cpus=2)
    def too_big() -> None:
        pass

    with pytest.raises(ValueError):
        too_big.options(scheduling_strategy=_strategy(ray, pg)).remote()
    with pytest.raises(ValueError):
        too_big.options(num_cpus=1, scheduling_strategy=_strategy(ray, pg, 5)).remote()


@pytest.mark.timeout(120)
def test_infeasible_group_stays_pending(ray: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # redray warns that no node can ever hold it
        pg = ray._test_pg([{"CPU": 1}, {"CPU": 64}])
    assert not pg.wait(timeout_seconds=2)
    ready, _ = ray.wait([pg.ready()], timeout=1)
    assert ready == []
    assert ray.util.placement_group_table(pg)["state"] == "PENDING"

    # Tasks for a pending group wait with it; removing the group fails them.
    @ray.remote(num_cpus=1)
    def in_group() -> None:
        pass

    ref = in_group.options(scheduling_strategy=_strategy(ray, pg, 0)).remote()
    ray.util.remove_placement_group(pg)
    with pytest.raises(ray.exceptions.RayError):  # the exact class differs from Ray's
        ray.get(ref, timeout=60)


@redray_only  # Ray reports an infeasible group through its autoscaler, not a warning
def test_redray_warns_about_an_infeasible_group(ray: Any) -> None:
    with pytest.warns(UserWarning, match="can ever hold it"):
        ray._test_pg([{"CPU": 1}, {"CPU": 1}, {"CPU": 1}], strategy="STRICT_SPREAD")


# ---- two nodes -------------------------------------------------------------------------------


@redray.remote(num_cpus=1)
def node_of_task() -> str:
    return redray.get_runtime_context().get_node_id()


@pytest.mark.timeout(300)
def test_strict_spread_across_two_nodes(cli: CliCluster) -> None:  # noqa: F811
    redray.shutdown()  # the shared single-node cluster of the tests above
    head = cli.start_head()["nodes"][0]["node_id"]
    second = cli.add_node()
    redray.init(address="auto")
    pg = redray.util.placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_SPREAD")
    assert pg.wait(120)
    table = redray.util.placement_group_table(pg)
    assert set(table["bundles_to_node_id"].values()) == {head, second}

    Strategy = redray.util.scheduling_strategies.PlacementGroupSchedulingStrategy
    on_bundle = [
        redray.get(node_of_task.options(scheduling_strategy=Strategy(pg, i)).remote(), timeout=120)
        for i in range(2)
    ]
    assert on_bundle[0] != on_bundle[1]
    assert on_bundle == [table["bundles_to_node_id"][0], table["bundles_to_node_id"][1]]

    # Three bundles cannot be spread over two nodes: that group stays pending.
    with pytest.warns(UserWarning, match="can ever hold it"):
        pending = redray.util.placement_group([{"CPU": 0.1}] * 3, strategy="STRICT_SPREAD")
    assert not pending.wait(2)
    redray.util.remove_placement_group(pending)

    # Every CPU of the cluster is reserved; removing the group frees both nodes.
    redray.util.remove_placement_group(pg)
    spread = node_of_task.options(scheduling_strategy="SPREAD")
    assert redray.get([spread.remote() for _ in range(4)], timeout=120)
