"""A node daemon killed with SIGKILL: its tasks are re-run elsewhere or fail, never hang.

Two node daemons on one machine (see test_cli.py for the `cli` fixture): the head (1 CPU)
and a second node (1 CPU, {"special": 1}). Tasks running and queued on the second node
when it is killed must be recovered by the head (redray/node/recovery.py).
"""

from __future__ import annotations

import json
import pickle
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
import redis
from test_cli import CliCluster, cli  # noqa: F401  (cli is a fixture)

import redray
from redray.api import current_client
from redray.control import keys
from redray.control.scripts import Commands
from redray.exceptions import NodeDiedError
from redray.node.recovery import NodeRecovery
from redray.node.redis_launcher import start_redis, wait_until_up
from redray.task_spec import TaskSpec
from redray.util.scheduling_strategies import NodeAffinitySchedulingStrategy


@redray.remote
def where_when_released(started: str, release: str) -> str:
    """Says it started (on which node), waits for the test's release file, returns its node."""
    node = redray.get_runtime_context().get_node_id()
    with open(started, "a") as file:
        file.write(node + "\n")
    while not Path(release).exists():
        time.sleep(0.05)
    return node


@redray.remote
def where() -> str:
    return redray.get_runtime_context().get_node_id()


def _wait_until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def _started_on(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


@pytest.mark.timeout(300)
def test_tasks_of_a_killed_node_rerun_elsewhere_or_fail(cli: CliCluster, tmp_path: Path) -> None:  # noqa: F811
    head = cli.start_head()["nodes"][0]["node_id"]
    second = cli.add_node("--resources", '{"special": 1}')
    redray.init(address="auto")
    release = tmp_path / "release"
    on_second = where_when_released.options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(second, soft=True)
    )
    running_started, queued_started = tmp_path / "running", tmp_path / "queued"
    running = on_second.remote(str(running_started), str(release))
    _wait_until(lambda: _started_on(running_started) == [second], "a task runs on node 2")
    # Node 2's only CPU is busy: this one waits in node 2's queue (read, not acknowledged).
    queued = on_second.remote(str(queued_started), str(release))
    special_started = tmp_path / "special"
    special = where_when_released.options(num_cpus=0, resources={"special": 1}).remote(
        str(special_started), str(release)
    )
    _wait_until(lambda: _started_on(special_started) == [second], "the special task runs")
    events = current_client().redis.xrevrange(keys.NODE_EVENTS, count=1)
    last_event = events[0][0] if events else "0-0"

    daemon = psutil.Process(cli.node_pid(second))
    daemon.kill()
    daemon.wait(timeout=30)
    # Sent while drivers may still see node 2 alive: it lands in the dead node's queue then.
    late = where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(second, soft=True))
    late_ref = late.remote()
    release.touch()

    assert redray.get(running, timeout=120) == head
    assert redray.get(queued, timeout=120) == head
    assert redray.get(late_ref, timeout=120) == head
    # No other node has {"special": 1}: the task fails instead of waiting forever.
    with pytest.raises(NodeDiedError, match="no live node can run it"):
        redray.get(special, timeout=120)
    assert _started_on(running_started) == [second, head]
    assert _started_on(queued_started) == [head]  # it had waited in node 2's queue

    listed = {node["NodeID"]: node for node in redray.nodes()}
    assert listed[second]["Alive"] is False and listed[head]["Alive"] is True
    left = _node_events_after(current_client().redis, last_event)
    assert ("left", second) in left
    # New tasks avoid the dead node, even pinned softly to it.
    assert redray.get(late.remote(), timeout=120) == head


def _node_events_after(client: redis.Redis, last: bytes | str) -> list[tuple[str, str]]:
    return [
        (fields[b"event"].decode(), fields[b"node"].decode())
        for _, fields in client.xrange(keys.NODE_EVENTS, min=f"({_text(last)}")
    ]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@pytest.mark.timeout(300)
def test_task_without_retries_on_a_killed_node_fails(cli: CliCluster, tmp_path: Path) -> None:  # noqa: F811
    cli.start_head()
    second = cli.add_node()
    redray.init(address="auto")
    started, release = tmp_path / "started", tmp_path / "release"
    pinned = where_when_released.options(
        max_retries=0, scheduling_strategy=NodeAffinitySchedulingStrategy(second, soft=True)
    )
    ref = pinned.remote(str(started), str(release))
    _wait_until(lambda: _started_on(started) == [second], "the task runs on node 2")
    daemon = psutil.Process(cli.node_pid(second))
    daemon.kill()
    daemon.wait(timeout=30)
    release.touch()
    with pytest.raises(NodeDiedError, match="no retries left"):
        redray.get(ref, timeout=120)


@pytest.mark.timeout(300)
def test_a_node_declared_dead_while_stopped_rejoins_as_a_new_node(cli: CliCluster) -> None:  # noqa: F811
    head = cli.start_head()["nodes"][0]["node_id"]
    second = cli.add_node()
    redray.init(address="auto")
    client = current_client().redis
    events = client.xrevrange(keys.NODE_EVENTS, count=1)
    last_event = events[0][0] if events else "0-0"
    daemon = psutil.Process(cli.node_pid(second))
    daemon.suspend()  # SIGSTOP: its heartbeat expires although the process lives
    try:
        _wait_until(
            lambda: ("left", second) in _node_events_after(client, last_event),
            "node 2 is declared dead",
        )
    finally:
        daemon.resume()
    # It learns it was declared dead on its next tick, and joins again under a new id.
    _wait_until(
        lambda: len({n["NodeID"] for n in redray.nodes() if n["Alive"]} - {head}) == 1,
        "the resumed daemon joins as a new node",
    )
    listed = {node["NodeID"]: node for node in redray.nodes()}
    assert listed[second]["Alive"] is False  # the old node stays dead
    assert daemon.is_running()
    (rejoined,) = {n for n, node in listed.items() if node["Alive"]} - {head}
    assert redray.get(where.remote(), timeout=120) in (head, rejoined)


# ---- the recovery of a dead node's queue, step by step, on a bare Redis ------------------


@pytest.fixture
def bare_redis(tmp_path: Path) -> Iterator[redis.Redis]:
    server = start_redis(log_file=str(tmp_path / "redis.log"))
    try:
        wait_until_up(server.client_kwargs(local=False))
        client = redis.Redis(**server.client_kwargs(local=False))
        yield client
        client.close()
    finally:
        server.stop()


def _spec(name: str, max_retries: int = 3) -> TaskSpec:
    task_id = name.encode().hex().ljust(24, "0")
    return TaskSpec(task_id, name, "fn", [], {}, [task_id + "0001"], "", {"CPU": 1.0},
                    max_retries=max_retries)  # fmt: skip


def _register(client: redis.Redis, node_id: str, alive: bool) -> None:
    record = {"node_id": node_id, "resources": {"CPU": 1.0}}
    client.hset(keys.NODES, node_id, json.dumps(record))
    client.xgroup_create(keys.node_queue(node_id), keys.QUEUE_GROUP, id="0", mkstream=True)
    if alive:
        client.set(keys.node_alive(node_id), json.dumps({"available": {"CPU": 1.0}}), ex=60)


def _queued_specs(client: redis.Redis, node_id: str) -> dict[str, int]:
    entries = client.xrange(keys.node_queue(node_id))
    specs = [pickle.loads(fields[b"s"]) for _, fields in entries if b"s" in fields]
    return {spec.name: spec.attempt for spec in specs}


def test_recovery_requeues_what_the_dead_node_did_not_finish(bare_redis: redis.Redis) -> None:
    client = bare_redis
    _register(client, "live", alive=True)
    _register(client, "dead", alive=False)
    queue = keys.node_queue("dead")
    for spec in (_spec("running"), _spec("finished"), _spec("last_try", max_retries=0)):
        client.xadd(queue, {"s": pickle.dumps(spec)})
    # The dead node had read those three; it never read the next ones.
    client.xreadgroup(keys.QUEUE_GROUP, "dead", {queue: ">"})
    client.xadd(queue, {"s": pickle.dumps(_spec("unread"))})
    client.xadd(queue, {"c": "abc", "f": "0"})
    client.hset(keys.task(_spec("finished").task_id), "state", "finished")

    recovery = NodeRecovery(client, Commands(client), "live")
    assert recovery.tick(json.dumps({"available": {"CPU": 1.0}}), 5)

    # Read attempts count; a finished task is not run again; nothing is left behind.
    assert _queued_specs(client, "live") == {"running": 1, "unread": 0}
    failed = client.hgetall(keys.obj(_spec("last_try").return_ids[0]))
    assert failed[b"k"] == b"e"
    assert isinstance(pickle.loads(failed[b"d"]), NodeDiedError)
    assert json.loads(client.hget(keys.NODES, "dead"))["dead"] is True
    events = [fields for _, fields in client.xrange(keys.NODE_EVENTS)]
    assert events == [{b"event": b"left", b"node": b"dead", b"cause": b"heartbeat expired"}]
    assert client.xlen(queue) == 0

    # A driver that still saw the node alive sends it one more task: the next tick takes it.
    client.xadd(queue, {"s": pickle.dumps(_spec("late"))})
    assert recovery.tick(json.dumps({"available": {"CPU": 1.0}}), 5)
    assert _queued_specs(client, "live") == {"running": 1, "unread": 0, "late": 0}
    assert recovery.tick(json.dumps({"available": {"CPU": 1.0}}), 5)
    assert not client.exists(queue)  # an emptied queue of a dead node is deleted
    assert len(client.xrange(keys.NODE_EVENTS)) == 1  # "left" is published once

    # The dead node itself, had it only been stopped, learns it must go.
    assert not NodeRecovery(client, Commands(client), "dead").tick("{}", 5)
    assert not client.exists(keys.node_alive("dead"))


@redray.remote
class Where:
    def node(self) -> str:
        return redray.get_runtime_context().get_node_id()


@pytest.mark.timeout(300)
def test_actors_of_a_killed_node_restart_elsewhere_or_die(cli: CliCluster) -> None:  # noqa: F811
    head = cli.start_head()["nodes"][0]["node_id"]
    second = cli.add_node()
    redray.init(address="auto")
    on_second = Where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(second, True))
    restartable = on_second.options(max_restarts=1).remote()
    mortal = on_second.remote()
    assert redray.get([restartable.node.remote(), mortal.node.remote()]) == [second, second]
    daemon = psutil.Process(cli.node_pid(second))
    daemon.kill()
    daemon.wait(timeout=30)
    assert redray.get(restartable.node.remote(), timeout=120) == head
    with pytest.raises(redray.exceptions.ActorDiedError, match=f"node {second} died"):
        redray.get(mortal.node.remote(), timeout=120)
