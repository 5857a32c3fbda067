"""Every Redis key redray uses, in one place.

All keys live under one cluster prefix so that a Redis shared with other software (or a
test's flushed database) is easy to reason about. Ids are lowercase hex strings.

| key                              | type   | what it holds                                        |
| -------------------------------- | ------ | ---------------------------------------------------- |
| {p}cluster                       | hash   | cluster facts: head node, redis unix socket, created |
| {p}nodes                         | hash   | node_id -> JSON node record (resources, addresses;   |
|                                  |        | "dead": true once its heartbeat expired)             |
| {p}node:{id}:alive               | string | JSON available resources; TTL = heartbeat deadline   |
| {p}node:{id}:queue               | stream | task specs for that node; consumer group "daemon"    |
| {p}node:{id}:recovering          | string | lease of the daemon re-placing a dead node's queue   |
| {p}node:{id}:actors              | set    | actors running on that node (restarted if it dies)   |
| {p}node:{id}:clients             | set    | client processes of that node (its daemon watches)   |
| {p}node_events                   | stream | node joined / left, owner died: read by every client |
| {p}fn:{function_id}              | string | pickled function or class, exported once             |
| {p}obj:{object_id}               | hash   | object directory entry: owner, kind, size, node,     |
|                                  |        | inline value (field d) for small objects; refcount:  |
|                                  |        | b borrowers, r owner released, c contained ids       |
| {p}obj:{object_id}:waiters       | set    | client ids to notify when the object is committed    |
| {p}obj:{object_id}:locations     | set    | nodes holding a copy besides the primary (field n)   |
| {p}notify:{client_id}            | stream | readiness notifications for one client process       |
| {p}task:{task_id}                | hash   | state: finished|cancelled, set once (commit_objects)  |
|                                  |        | (TTL 1 h); r: 0 if cancelled with recursive=False    |
| {p}errors                        | list   | JSON failure records (newest first), error_info()    |
| {p}clients                       | hash   | client_id -> JSON (pid, node, kind), for liveness    |
| {p}owned:{client_id}             | set    | ids of the committed objects a client process owns   |
| {p}dead_owners                   | set    | client ids whose objects were released at death      |
"""

from __future__ import annotations

PREFIX = "redray:"

CLUSTER = PREFIX + "cluster"
NODES = PREFIX + "nodes"
NODE_EVENTS = PREFIX + "node_events"
ERRORS = PREFIX + "errors"
CLIENTS = PREFIX + "clients"

#: The consumer group every node daemon uses on its own queue stream.
QUEUE_GROUP = "daemon"


def node_alive(node_id: str) -> str:
    return f"{PREFIX}node:{node_id}:alive"


def node_queue(node_id: str) -> str:
    return f"{PREFIX}node:{node_id}:queue"


def node_actors(node_id: str) -> str:
    return f"{PREFIX}node:{node_id}:actors"


def node_clients(node_id: str) -> str:
    return f"{PREFIX}node:{node_id}:clients"


def node_recovering(node_id: str) -> str:
    return f"{PREFIX}node:{node_id}:recovering"


def function(function_id: str) -> str:
    return f"{PREFIX}fn:{function_id}"


def obj(object_id: str) -> str:
    return f"{PREFIX}obj:{object_id}"


def obj_locations(object_id: str) -> str:
    return f"{PREFIX}obj:{object_id}:locations"


def notify(client_id: str) -> str:
    return f"{PREFIX}notify:{client_id}"


def task(task_id: str) -> str:
    return f"{PREFIX}task:{task_id}"


# ---- actors (redray/actor.py, redray/worker/actor_runtime.py) -------------------------
#: {p}actor:{id}            hash   state (pending|alive|restarting|dead), handles, node, pid,
#:                                 restarts, death (pickled error), meta, name key, detached
#: {p}actor:{id}:mailbox    stream the actor's calls; consumer group "actor"
#: {p}actor:{id}:tokens     set    handles pickled but not yet unpickled (see actor.py)
#: {p}named_actors          hash   "<namespace>\x00<name>" -> actor id
NAMED_ACTORS = PREFIX + "named_actors"
#: The consumer group an actor's worker reads its mailbox with.
ACTOR_GROUP = "actor"


def actor(actor_id: str) -> str:
    return f"{PREFIX}actor:{actor_id}"


def actor_mailbox(actor_id: str) -> str:
    return f"{PREFIX}actor:{actor_id}:mailbox"


def actor_tokens(actor_id: str) -> str:
    return f"{PREFIX}actor:{actor_id}:tokens"


# ---- placement groups (redray/util/placement_group.py, redray/scheduler/bundles.py) ----
#: {p}pg:{id}               hash   state (pending|created|removed), name, namespace, strategy,
#:                                 bundles (JSON), nodes (JSON, node of each bundle), creator,
#:                                 lifetime, created (time)
#: {p}pgs                   set    every placement group id (placement_group_table)
#: {p}named_pgs             hash   "<namespace>\x00<name>" -> placement group id
#: {p}pg:{id}:reply:{n}     list   the nodes' answers to reservation attempt n
PLACEMENT_GROUPS = PREFIX + "pgs"
NAMED_PLACEMENT_GROUPS = PREFIX + "named_pgs"


def placement_group(pg_id: str) -> str:
    return f"{PREFIX}pg:{pg_id}"


def placement_group_actors(pg_id: str) -> str:
    return f"{PREFIX}pg:{pg_id}:actors"


def placement_group_reply(pg_id: str, attempt: int) -> str:
    return f"{PREFIX}pg:{pg_id}:reply:{attempt}"
