"""Every Redis key redray uses, the fields inside them, and every message kind, in one place.

All keys live under one cluster prefix so that a Redis shared with other software (or a
test's flushed database) is easy to reason about. Ids are lowercase hex strings. The Lua
commands (commands.lua) get these names from here: scripts.py generates their `key` table
from this module, so a key is spelled once.

Keys
----
| key                          | type   | what it holds (fields)                                |
| ---------------------------- | ------ | ----------------------------------------------------- |
| {p}cluster                   | hash   | cluster facts: head node, redis unix socket, created  |
| {p}job_counter               | string | the last job number given out (INCR by each driver)   |
| {p}nodes                     | hash   | node_id -> JSON node record (resources, address,      |
|                              |        | transfer, store_dir, labels; "dead": true once its    |
|                              |        | heartbeat expired, "died": when)                      |
| {p}node:{id}:alive           | string | JSON {available, queued}; TTL = heartbeat deadline    |
| {p}node:{id}:queue           | stream | NODE QUEUE MESSAGES (below); consumer group "daemon"  |
| {p}node:{id}:recovering      | string | lease of the daemon re-placing a dead node's queue    |
| {p}node:{id}:actors          | set    | actors running on that node (restarted if it dies)    |
| {p}node:{id}:clients         | set    | client processes of that node (its daemon watches)    |
| {p}node_events               | stream | {event: joined|left, node[, cause]} and               |
|                              |        | {event: owner_died, client}: read by every client     |
| {p}fn:{function_id}          | string | pickled function or class, exported once (SET NX)     |
| {p}driver_jobs               | hash   | job_id -> JSON record of a driver's job (status, pid) |
| {p}actors                    | set    | every actor id (list_actors; stale ids are dropped)   |
| {p}task_events:{job}         | hash   | "<task id>:<attempt>[:writer]" -> a writer's record   |
|                              |        | of a task attempt: "<rank><STATE>" line, then JSON    |
|                              |        | event lines (client/task_events.py); capped per job   |
| {p}task_events:{job}:meta    | hash   | cap, ttl (set by the driver), dropped (a count)       |
| {p}task_event_jobs           | set    | jobs that recorded task events (expired ones pruned)  |
| {p}logs:{job_id}             | stream | workers' stdout/stderr lines of one job, in batches   |
|                              |        | (capped; read by the job's driver, `redray logs`)     |
| {p}jobs                      | hash   | submission_id -> JSON job record (status, entrypoint, |
|                              |        | times, exit code, runtime_env, metadata)              |
| {p}job:{id}:logs             | stream | a submitted job's output lines (capped)               |
| {p}job_requests              | list   | JSON start/stop requests for the job manager          |
| {p}job_manager               | string | the job manager's heartbeat (TTL)                     |
| {p}pkg:{name}                | string | a runtime_env package (zip of a working_dir or of a   |
|                              |        | py_modules entry), by content hash, uploaded once     |
| {p}obj:{object_id}           | hash   | object directory entry: k kind (v inline value |      |
|                              |        | s shared memory | e error | x owner died), s size,    |
|                              |        | n node of the primary copy, d data (inline value or   |
|                              |        | pickled error), o owner client; refcount: b borrowers,|
|                              |        | r "1" once the owner released it, c contained ids     |
|                              |        | (comma-separated)                                     |
| {p}obj:{object_id}:waiters   | set    | client ids to notify when the object is committed     |
| {p}obj:{object_id}:locations | set    | nodes holding a copy besides the primary (field n)    |
| {p}notify:{client_id}        | stream | readiness notifications for one client process:       |
|                              |        | {o object id, k, s, n, d} as in obj:*; {stop: 1} ends |
|                              |        | the reader                                            |
| {p}task:{task_id}            | hash   | state: finished|cancelled, set once by commit_objects |
|                              |        | (TTL 1 h; deleted when a result of the task is        |
|                              |        | freed); r: "0" when cancelled with recursive=False    |
| {p}epoch                     | string | a random id: a Redis that lost its data lacks it      |
| {p}errors                    | list   | JSON failure records (newest first), error_info()     |
| {p}clients                   | hash   | client_id -> JSON {pid, pidns, node, kind}            |
| {p}owned:{client_id}         | set    | ids of the committed objects a client process owns    |
| {p}dead_owners               | set    | client ids whose objects were released at death       |
| {p}actor:{id}                | hash   | state (pending|alive|restarting|dead), handles, node, |
|                              |        | pid, worker, restarts, max_restarts, last_cause,      |
|                              |        | death (pickled error), class, meta, owner, job,       |
|                              |        | name_key, detached, refcounted, terminating, direct   |
|                              |        | (JSON socket of in-order actors), creation (pickled   |
|                              |        | creation TaskSpec)                                    |
| {p}actor:{id}:mailbox        | stream | MAILBOX MESSAGES (below); consumer group "actor"      |
| {p}actor:{id}:tokens         | set    | handles pickled but not yet unpickled (actor.py)      |
| {p}named_actors              | hash   | "<namespace>\\x00<name>" -> actor id                  |
| {p}pg:{id}                   | hash   | state (pending|created|removed), name, namespace,     |
|                              |        | name_key, strategy, bundles (JSON), nodes (JSON: node |
|                              |        | of each bundle), creator, job, lifetime, soft_target, |
|                              |        | created (time)                                        |
| {p}pg:{id}:actors            | set    | actors created in the group (killed when it goes)     |
| {p}pg:{id}:reply:{n}         | list   | the nodes' answers to reservation attempt n:          |
|                              |        | JSON {node, ok}                                       |
| {p}pgs                       | set    | every placement group id (placement_group_table)      |
| {p}named_pgs                 | hash   | "<namespace>\\x00<name>" -> placement group id        |

Node queue messages (stream fields; redray/control/messages.py encodes and decodes them)
----------------------------------------------------------------------------------------
| kind    | fields                                  | written by                           |
| ------- | --------------------------------------- | ------------------------------------ |
| task    | s: pickled TaskSpec                     | submitters, retries (requeue_task),  |
|         |                                         | actor restarts, node recovery        |
| cancel  | c: task id, f: "1" to SIGKILL its worker| cancel()                             |
| kill    | kill: actor id                          | kill() (Lua actor_dead)              |
| reserve | pg, op: "reserve", b: JSON [[index,     | a placement group's creator          |
|         | resources], ...], reply: reply list key |                                      |
| release | pg, op: "release"                       | remove_placement_group(), a failed   |
|         |                                         | reservation                          |

Actor mailbox messages
----------------------
| kind      | fields                                                  | written by           |
| --------- | ------------------------------------------------------- | -------------------- |
| call      | s: pickled TaskSpec, t: task id, o: owner client, r:    | Lua actor_call       |
|           | return ids (comma-separated)                            |                      |
| cancel    | cancel: task id                                         | cancel() of a call   |
| terminate | terminate: "1"                                          | last handle gone     |
"""

from __future__ import annotations

PREFIX = "redray:"

CLUSTER = PREFIX + "cluster"
JOB_COUNTER = PREFIX + "job_counter"
NODES = PREFIX + "nodes"
NODE_EVENTS = PREFIX + "node_events"
ERRORS = PREFIX + "errors"
CLIENTS = PREFIX + "clients"
DEAD_OWNERS = PREFIX + "dead_owners"
JOBS = PREFIX + "jobs"
DRIVER_JOBS = PREFIX + "driver_jobs"
ACTORS = PREFIX + "actors"
TASK_EVENT_JOBS = PREFIX + "task_event_jobs"
JOB_REQUESTS = PREFIX + "job_requests"
JOB_MANAGER = PREFIX + "job_manager"
NAMED_ACTORS = PREFIX + "named_actors"
PLACEMENT_GROUPS = PREFIX + "pgs"
NAMED_PLACEMENT_GROUPS = PREFIX + "named_pgs"

#: The consumer group every node daemon uses on its own queue stream.
QUEUE_GROUP = "daemon"
#: The consumer group an actor's worker reads its mailbox with.
ACTOR_GROUP = "actor"


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


def logs(job_id: str) -> str:
    return f"{PREFIX}logs:{job_id}"


#: Pattern matching every job's log stream (for `redray logs`).
LOGS_PATTERN = PREFIX + "logs:*"


def task_events(job_id: str) -> str:
    return f"{PREFIX}task_events:{job_id}"


def task_events_meta(job_id: str) -> str:
    return f"{PREFIX}task_events:{job_id}:meta"


def job_logs(submission_id: str) -> str:
    return f"{PREFIX}job:{submission_id}:logs"


def package(name: str) -> str:
    """A runtime_env package, `name` as in its URI `redray://<name>`."""
    return f"{PREFIX}pkg:{name}"


def obj(object_id: str) -> str:
    return f"{PREFIX}obj:{object_id}"


def obj_waiters(object_id: str) -> str:
    return f"{PREFIX}obj:{object_id}:waiters"


def obj_locations(object_id: str) -> str:
    return f"{PREFIX}obj:{object_id}:locations"


def notify(client_id: str) -> str:
    return f"{PREFIX}notify:{client_id}"


def task(task_id: str) -> str:
    return f"{PREFIX}task:{task_id}"


def owned(client_id: str) -> str:
    return f"{PREFIX}owned:{client_id}"


def actor(actor_id: str) -> str:
    return f"{PREFIX}actor:{actor_id}"


def actor_mailbox(actor_id: str) -> str:
    return f"{PREFIX}actor:{actor_id}:mailbox"


def actor_tokens(actor_id: str) -> str:
    return f"{PREFIX}actor:{actor_id}:tokens"


def placement_group(pg_id: str) -> str:
    return f"{PREFIX}pg:{pg_id}"


def placement_group_actors(pg_id: str) -> str:
    return f"{PREFIX}pg:{pg_id}:actors"


def placement_group_reply(pg_id: str, attempt: int) -> str:
    return f"{PREFIX}pg:{pg_id}:reply:{attempt}"


#: {p}epoch                 string a random id set by the first process to find it missing:
#:                                 a different (or missing) value after reconnecting means
#:                                 Redis restarted empty (client/store_reset.py)
EPOCH = PREFIX + "epoch"
