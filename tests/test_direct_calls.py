"""Actor calls from a process on the actor's node (redray sends them over the actor's own
socket, client/direct_calls.py): order, results shared with others, and what happens to
calls in flight when the actor dies.

Runs against redray, or against Ray 2.x with REDRAY_TEST_AGAINST=ray (but the last test).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from target_ray import ray, redray_only, wait_for_path, wait_until

pytestmark = pytest.mark.timeout(120)


@ray.remote
class Log:
    def __init__(self) -> None:
        self.items: list[int] = []

    def add(self, item: int) -> int:
        self.items.append(item)
        return len(self.items)

    def items_so_far(self) -> list[int]:
        return self.items

    def pid(self) -> int:
        return os.getpid()

    def hold(self, started: str, gate: str) -> int:
        """Tell the test it runs (and in which process), then wait for the gate."""
        Path(started).write_text(str(os.getpid()))
        assert wait_for_path(gate)
        return os.getpid()


@ray.remote
def total(box: list) -> int:
    return sum(ray.get(box))


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_calls_stay_in_order_across_bursts_and_single_calls(ray_start) -> None:
    log = Log.remote()
    burst = [log.add.remote(i) for i in range(200)]  # sent before the actor even started
    assert ray.get(burst[-1]) == 200
    for i in range(200, 220):  # one at a time, each waited for
        assert ray.get(log.add.remote(i)) == i + 1
    second = [log.add.remote(i) for i in range(220, 420)]
    assert ray.get(second) == list(range(221, 421))
    assert ray.get(log.items_so_far.remote()) == list(range(420))


def test_results_of_calls_are_usable_by_other_processes(ray_start) -> None:
    log = Log.remote()
    assert ray.get(log.add.remote(0)) == 1
    refs = [log.add.remote(i) for i in range(1, 4)]
    assert ray.get(total.remote(refs)) == 2 + 3 + 4


def test_calls_sent_before_the_last_handle_goes_still_run(ray_start) -> None:
    log = Log.remote()
    pid = ray.get(log.pid.remote())
    refs = [log.add.remote(i) for i in range(50)]
    del log
    assert ray.get(refs) == list(range(1, 51))
    assert wait_until(lambda: _process_gone(pid))


@pytest.mark.parametrize("retries", [0, 1], ids=["no-retries", "max_task_retries=1"])
def test_a_call_running_when_the_actor_is_killed(ray_start, tmp_path, retries: int) -> None:
    log = Log.options(max_restarts=1, max_task_retries=retries).remote()
    pid = ray.get(log.pid.remote())
    started, gate = tmp_path / "started", tmp_path / "gate"
    running = log.hold.remote(str(started), str(gate))
    assert wait_for_path(started)
    os.kill(pid, signal.SIGKILL)
    gate.write_text("open")
    if retries:
        assert ray.get(running) != pid  # run again by the restarted actor
    else:
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(running)
    assert ray.get(log.add.remote(7)) == 1  # later calls reach the new instance


@redray_only
def test_calls_from_the_actors_node_use_its_socket(ray_start) -> None:
    from redray.api import current_client

    log = Log.remote()
    assert ray.get(log.add.remote(0)) == 1  # the first call may go through the mailbox
    assert ray.get(log.add.remote(1)) == 2
    assert current_client().direct.is_linked(log._actor_id.hex())
