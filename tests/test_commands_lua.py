"""Each Lua command of redray/control/commands.lua, against a real redis-server: one test
per command (more where a command has two outcomes), plus the generated key table."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from target_ray import redray_only

from redray.control import keys
from redray.control.scripts import _SOURCES, Commands, key_preamble
from redray.node.redis_launcher import start_redis, wait_until_up

pytestmark = [redray_only, pytest.mark.timeout(60)]

TASK = "ab" * 12
OID = TASK + "0001"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    log = tmp_path_factory.mktemp("redis") / "redis.log"
    process = start_redis(log_file=str(log))
    try:
        kwargs = process.client_kwargs(local=False)
        wait_until_up(kwargs)
        yield kwargs
    finally:
        process.stop()


@pytest.fixture
def r(server: dict) -> Iterator[redis.Redis]:
    client = redis.Redis(**server)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def cmd(r: redis.Redis) -> Commands:
    return Commands(r)


def _commit(cmd: Commands, task_id: str, owner: str, oid: str, data: bytes, state: str) -> int:
    return cmd.call("commit_objects", task_id, owner, state, 1, oid, "v", len(data), "", data)


def _notifications(r: redis.Redis, client: str) -> list[dict[bytes, bytes]]:
    return [fields for _, fields in r.xrange(keys.notify(client))]


def test_every_command_is_covered_here() -> None:
    tested = {name[len("test_") :].split("__")[0] for name in globals() if name.startswith("test_")}
    assert set(_SOURCES) <= tested, sorted(set(_SOURCES) - tested)


def test_key_table__matches_keys_py(r: redis.Redis) -> None:
    script = key_preamble() + (
        "return {key.NODES, key.JOB_COUNTER, key.obj('x'), key.node_queue('n'), "
        "key.placement_group_reply('g', 3), key.QUEUE_GROUP, key['function']('f')}"
    )
    got = [v.decode() for v in r.eval(script, 0, keys.PREFIX)]
    assert got == [
        keys.NODES, keys.JOB_COUNTER, keys.obj("x"), keys.node_queue("n"),
        keys.placement_group_reply("g", 3), keys.QUEUE_GROUP, keys.function("f"),
    ]  # fmt: skip


def test_commit_objects(r: redis.Redis, cmd: Commands) -> None:
    r.sadd(keys.obj_waiters(OID), "waiter")
    assert _commit(cmd, TASK, "owner", OID, b"1", "finished") == 1
    assert r.hmget(keys.obj(OID), "k", "s", "d", "o") == [b"v", b"1", b"1", b"owner"]
    assert r.hget(keys.task(TASK), "state") == b"finished"
    assert r.sismember(keys.owned("owner"), OID)
    assert _notifications(r, "owner")[0][b"o"] == OID.encode()
    assert _notifications(r, "waiter")[0][b"d"] == b"1"
    assert not r.exists(keys.obj_waiters(OID))


def test_commit_objects__exactly_once(r: redis.Redis, cmd: Commands) -> None:
    assert _commit(cmd, TASK, "owner", OID, b"late", "cancelled") == 1
    assert _commit(cmd, TASK, "owner", OID, b"again", "finished") == 0
    assert r.hget(keys.obj(OID), "d") == b"late"
    assert r.hget(keys.task(TASK), "state") == b"cancelled"


def test_commit_objects__after_the_owner_died_is_kind_x(r: redis.Redis, cmd: Commands) -> None:
    r.sadd(keys.DEAD_OWNERS, "owner")
    _commit(cmd, TASK, "owner", OID, b"1", "finished")
    assert r.hmget(keys.obj(OID), "k", "d") == [b"x", b""]


def test_publish_object(r: redis.Redis, cmd: Commands) -> None:
    r.sadd(keys.obj_waiters(OID), "waiter")
    assert cmd.call("publish_object", OID, "owner", "v", 1, "", b"7") == 1
    assert r.hmget(keys.obj(OID), "k", "o") == [b"v", b"owner"]
    assert r.sismember(keys.owned("owner"), OID)
    assert _notifications(r, "waiter")[0][b"d"] == b"7"
    assert not r.exists(keys.notify("owner"))  # the owner has the value


def test_watch_objects(r: redis.Redis, cmd: Commands) -> None:
    cmd.call("publish_object", OID, "owner", "v", 1, "", b"7")
    other = TASK + "0002"
    entries = cmd.call("watch_objects", "me", OID, other)
    assert entries == [[b"v", b"1", b"", b"7"], None]
    assert r.smembers(keys.obj_waiters(other)) == {b"me"}


def _create_actor(cmd: Commands, actor_id: str = "a1", name_key: str = "") -> bytes:
    return cmd.call("actor_create", actor_id, name_key, "meta", "m", "refcounted", "1")


def test_actor_create(r: redis.Redis, cmd: Commands) -> None:
    assert _create_actor(cmd, "a1", "ns\x00x") == b""
    assert r.hget(keys.actor("a1"), "state") == b"pending"
    assert r.hget(keys.NAMED_ACTORS, "ns\x00x") == b"a1"
    assert r.xinfo_groups(keys.actor_mailbox("a1"))[0]["name"] == keys.ACTOR_GROUP.encode()
    assert _create_actor(cmd, "a2", "ns\x00x") == b"a1"  # the name is taken


def test_actor_call(r: redis.Redis, cmd: Commands) -> None:
    _create_actor(cmd)
    assert cmd.call("actor_call", "a1", TASK, "owner", b"spec", b"", OID) == 1
    [(_, fields)] = r.xrange(keys.actor_mailbox("a1"))
    assert fields == {b"s": b"spec", b"t": TASK.encode(), b"o": b"owner", b"r": OID.encode()}


def test_actor_call__on_a_dead_actor_fails_the_call(r: redis.Redis, cmd: Commands) -> None:
    assert cmd.call("actor_call", "unknown", TASK, "owner", b"spec", b"died", OID) == 0
    assert r.hmget(keys.obj(OID), "k", "d") == [b"e", b"died"]


def test_actor_dead(r: redis.Redis, cmd: Commands) -> None:
    _create_actor(cmd, "a1", "ns\x00x")
    cmd.call("actor_register", "a1", "n1", 1, "w", "", b"creation")
    cmd.call("actor_call", "a1", TASK, "owner", b"spec", b"", OID)
    assert cmd.call("actor_dead", "a1", b"boom", "1") == 1
    assert r.hget(keys.actor("a1"), "state") == b"dead"
    assert not r.hexists(keys.NAMED_ACTORS, "ns\x00x")
    assert not r.sismember(keys.node_actors("n1"), "a1")
    assert [f for _, f in r.xrange(keys.node_queue("n1"))] == [{b"kill": b"a1"}]
    assert r.hmget(keys.obj(OID), "k", "d") == [b"e", b"boom"]  # its queued call failed
    assert cmd.call("actor_dead", "a1", b"again", "0") == 0  # the first cause wins


def test_actor_register(r: redis.Redis, cmd: Commands) -> None:
    _create_actor(cmd)
    assert cmd.call("actor_register", "a1", "n1", 42, "w", "", b"creation") == 1
    assert r.hmget(keys.actor("a1"), "state", "node", "pid") == [b"alive", b"n1", b"42"]
    assert r.sismember(keys.node_actors("n1"), "a1")
    assert cmd.call("actor_register", "a1", "n2", 43, "w", "", b"creation") == 1
    assert not r.sismember(keys.node_actors("n1"), "a1")
    cmd.call("actor_dead", "a1", b"x", "0")
    assert cmd.call("actor_register", "a1", "n1", 44, "w", "", b"creation") == 0


def test_actor_restart(r: redis.Redis, cmd: Commands) -> None:
    _create_actor(cmd)
    assert cmd.call("actor_restart", "a1", 1, "killed") == 1
    assert r.hmget(keys.actor("a1"), "state", "restarts") == [b"restarting", b"1"]
    assert cmd.call("actor_restart", "a1", 1, "killed") == -1  # no restarts left
    cmd.call("actor_dead", "a1", b"x", "0")
    assert cmd.call("actor_restart", "a1", -1, "killed") == 0


def test_actor_handle_acquire(r: redis.Redis, cmd: Commands) -> None:
    _create_actor(cmd)
    r.sadd(keys.actor_tokens("a1"), "t")
    r.hincrby(keys.actor("a1"), "handles", 1)  # the pickler lent one
    assert cmd.call("actor_handle_acquire", "a1", "t") == 2  # adopted, not added
    assert cmd.call("actor_handle_acquire", "a1", "t") == 3  # token used: adds its own
    assert cmd.call("actor_handle_acquire", "gone", "") == 0


def test_actor_handle_release(r: redis.Redis, cmd: Commands) -> None:
    _create_actor(cmd)
    assert cmd.call("actor_handle_release", "a1") == 0
    assert [f for _, f in r.xrange(keys.actor_mailbox("a1"))] == [{b"terminate": b"1"}]
    assert r.hget(keys.actor("a1"), "terminating") == b"1"


def test_obj_refs(r: redis.Redis, cmd: Commands) -> None:
    inner = TASK + "0002"
    cmd.call("publish_object", OID, "owner", "s", 9, "n1", b"")
    cmd.call("publish_object", inner, "owner", "v", 1, "", b"1")
    r.sadd(keys.obj_locations(OID), "n2")
    assert cmd.call("obj_refs", "c", OID, 1, inner, "o", inner, "+", OID) == []
    assert r.hget(keys.obj(inner), "r") == b"1"  # released by its owner, still contained
    assert cmd.call("obj_refs", "o", OID) == []  # borrowed: kept
    freed = cmd.call("obj_refs", "-", OID)
    assert freed == [[OID.encode(), b"n1", b"n2"]]  # its stored copies, for the caller
    assert not r.exists(keys.obj(OID), keys.obj(inner), keys.obj_locations(OID))


def test_owner_died(r: redis.Redis, cmd: Commands) -> None:
    borrowed = TASK + "0002"
    r.hset(keys.CLIENTS, "owner", json.dumps({"node": "n1"}))
    r.sadd(keys.node_clients("n1"), "owner")
    cmd.call("publish_object", OID, "owner", "s", 9, "n1", b"")
    cmd.call("publish_object", borrowed, "owner", "v", 1, "", b"1")
    cmd.call("obj_refs", "+", borrowed)
    assert cmd.call("owner_died", "owner") == [[OID.encode(), b"n1"]]
    assert not r.exists(keys.obj(OID))
    assert r.hget(keys.obj(borrowed), "k") == b"x"
    assert r.sismember(keys.DEAD_OWNERS, "owner")
    assert not r.hexists(keys.CLIENTS, "owner") and not r.exists(keys.node_clients("n1"))
    [(_, event)] = r.xrange(keys.NODE_EVENTS)
    assert event == {b"event": b"owner_died", b"client": b"owner"}


def test_obj_add_location(r: redis.Redis, cmd: Commands) -> None:
    assert cmd.call("obj_add_location", OID, "n2") == 0  # freed (or never there)
    cmd.call("publish_object", OID, "owner", "s", 9, "n1", b"")
    assert cmd.call("obj_add_location", OID, "n2") == 1
    assert r.smembers(keys.obj_locations(OID)) == {b"n2"}


def test_requeue_task(r: redis.Redis, cmd: Commands) -> None:
    assert cmd.call("requeue_task", TASK, "n1", b"spec") == 1
    assert [f for _, f in r.xrange(keys.node_queue("n1"))] == [{b"s": b"spec"}]
    _commit(cmd, TASK, "owner", OID, b"1", "finished")
    assert cmd.call("requeue_task", TASK, "n1", b"spec") == 0  # a finished task never reruns


def test_node_tick(r: redis.Redis, cmd: Commands) -> None:
    for node in ("me", "gone"):
        r.hset(keys.NODES, node, json.dumps({"node_id": node}))
    r.xadd(keys.node_queue("gone"), {"s": b"spec"})
    assert cmd.call("node_tick", "me", "{}", 30, 5) == [b"ok", b"gone"]
    assert r.get(keys.node_alive("me")) == b"{}"
    assert json.loads(r.hget(keys.NODES, "gone"))["dead"] is True
    [(_, event)] = r.xrange(keys.NODE_EVENTS)
    assert event[b"event"] == b"left" and event[b"node"] == b"gone"
    r.delete(keys.node_queue("gone"))
    assert cmd.call("node_tick", "me", "{}", 30, 6) == [b"ok"]
    assert cmd.call("node_tick", "gone", "{}", 30, 7) == [b"dead"]


def test_pg_mark_created(r: redis.Redis, cmd: Commands) -> None:
    r.hset(keys.placement_group("g"), "state", "pending")
    assert cmd.call("pg_mark_created", "g", '["n1"]') == 1
    assert r.hmget(keys.placement_group("g"), "state", "nodes") == [b"created", b'["n1"]']
    assert cmd.call("pg_mark_created", "g", '["n2"]') == 0  # no longer pending


def test_pg_mark_removed(r: redis.Redis, cmd: Commands) -> None:
    record = {"state": "created", "nodes": '["n1"]', "name_key": "ns\x00g"}
    r.hset(keys.placement_group("g"), mapping=record)
    r.hset(keys.NAMED_PLACEMENT_GROUPS, "ns\x00g", "g")
    assert cmd.call("pg_mark_removed", "g") == [b"created", b'["n1"]']
    assert r.hget(keys.placement_group("g"), "state") == b"removed"
    assert not r.hexists(keys.NAMED_PLACEMENT_GROUPS, "ns\x00g")
    assert cmd.call("pg_mark_removed", "g") == [b"removed", b""]
    assert cmd.call("pg_mark_removed", "unknown") == [b"", b""]


def test_no_key_name_is_spelled_in_commands_lua() -> None:
    source = (Path(keys.__file__).parent / "commands.lua").read_text()
    code = "\n".join(line.split("--")[0] for line in source.splitlines())
    for fragment in ("'obj:", "'task:", "'node:", "'actor:", "'pg:", "'notify:", "'owned:"):
        assert fragment not in code


def test_task_events(r: redis.Redis, cmd: Commands) -> None:
    assert cmd.call("task_events", 2, 60, "job1", 2, "t1:0", "a", "t2:0", "b") == 1
    assert r.hgetall(keys.task_events("job1")) == {b"t1:0": b"a", b"t2:0": b"b"}
    assert r.sismember(keys.TASK_EVENT_JOBS, "job1")
    assert 0 < r.ttl(keys.task_events("job1")) <= 60
    # Over the cap (2 x 2 records), a new record is counted as dropped, never written.
    more = ("t1:0", "a2", "t3:0", "c", "t4:0", "d", "t5:0", "e")
    cmd.call("task_events", 2, 60, "job1", 4, *more)
    assert r.hget(keys.task_events("job1"), "t1:0") == b"a2"
    assert r.hlen(keys.task_events("job1")) == 4
    assert r.hget(keys.task_events_meta("job1"), "dropped") == b"1"
