-- Atomic control-store commands. Each section below is one script, named by its
-- "-- command:" line and loaded by redray/control/scripts.py. ARGV[1] is always the key
-- prefix. Key names are never spelled here: scripts.py prepends a table `key` generated
-- from redray/control/keys.py (key.NODES, key.task(task_id), key.obj(object_id), ...).

-- library: local functions shared by every command below (prepended to each script).

-- Gives a task its terminal state once; false if it already had one.
local function finish_task(task_id, final_state)
  local tkey = key.task(task_id)
  local state = redis.call('HGET', tkey, 'state')
  if state == 'finished' or state == 'cancelled' then
    return false
  end
  redis.call('HSET', tkey, 'state', final_state)
  redis.call('EXPIRE', tkey, 3600)
  return true
end

-- Writes one object directory entry and notifies its owner and every registered waiter.
-- The entry joins its owner's set (owned:*). An object committed after its owner died (the
-- result of a task the dead process submitted) is written as kind 'x': whoever borrowed
-- its ref gets OwnerDiedError.
local function commit_object(oid, owner, kind, size, node, data, notify_owner)
  local okey = key.obj(oid)
  if owner ~= '' and redis.call('SISMEMBER', key.DEAD_OWNERS, owner) == 1 then
    kind, data = 'x', ''
  end
  redis.call('HSET', okey, 'k', kind, 's', size, 'n', node, 'd', data, 'o', owner)
  if owner ~= '' then
    redis.call('SADD', key.owned(owner), oid)
  end
  local entry = {'o', oid, 'k', kind, 's', size, 'n', node, 'd', data}
  if owner ~= '' and notify_owner ~= false then
    redis.call('XADD', key.notify(owner), '*', unpack(entry))
  end
  local wkey = key.obj_waiters(oid)
  for _, client in ipairs(redis.call('SMEMBERS', wkey)) do
    if client ~= owner then
      redis.call('XADD', key.notify(client), '*', unpack(entry))
    end
  end
  redis.call('DEL', wkey)
end

-- Appends {id, primary node, other nodes...} to `freed` if the object's memory lives in a
-- store (kind 's'): the caller deletes those files.
local function note_stored_copies(id, kind, node, freed)
  if kind == 's' then
    local out = {id, node}
    for _, other in ipairs(redis.call('SMEMBERS', key.obj_locations(id))) do
      if other ~= node then out[#out + 1] = other end
    end
    freed[#freed + 1] = out
  end
end

-- Deletes the entry of an object nobody refers to any more, and (transitively) those of
-- the refs it contained that are now unreferenced, noting their stored copies in `freed`.
local function free_object(first, freed)
  local work = {first}
  while #work > 0 do
    local id = table.remove(work)
    local okey = key.obj(id)
    local f = redis.call('HMGET', okey, 'k', 'n', 'c', 'o')
    note_stored_copies(id, f[1], f[2], freed)
    if f[4] and f[4] ~= '' then
      redis.call('SREM', key.owned(f[4]), id)
    end
    redis.call('DEL', okey, key.obj_locations(id), key.obj_waiters(id))
    -- Its task's record goes too: the result is committed and nobody can ask for it again
    -- (a put object has no task record). Keeps Redis bounded.
    redis.call('DEL', key.task(string.sub(id, 1, 24)))
    if f[3] then
      for inner in string.gmatch(f[3], '[^,]+') do
        local ikey = key.obj(inner)
        if redis.call('HINCRBY', ikey, 'b', -1) <= 0 then
          if redis.call('HGET', ikey, 'r') == '1' then
            work[#work + 1] = inner
          elseif redis.call('HEXISTS', ikey, 'k') == 0 then
            redis.call('DEL', ikey)
          end
        end
      end
    end
  end
end

-- command: commit_objects
-- Tables: task (state), object directory (obj:*), waiters, notification streams.
-- Commits the outputs of one task attempt exactly once, leaving the task in final_state
-- ('finished', or 'cancelled' when ray.cancel commits TaskCancelledError).
-- ARGV: prefix, task_id, owner, final_state, n, then n groups of
--       object_id, kind ('v' inline value | 's' shared memory | 'e' error), size, node, data
--       then optionally '0': the owner already has the results (a direct actor call's reply
--       carried them), so its stream is not notified.
-- A task whose state is already terminal is not committed again, so a slow first attempt
-- that finishes after a retry started (or after a cancel) cannot report twice.
-- Returns 1 if committed, else 0.
local task_id, owner, final_state, n = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
if not finish_task(task_id, final_state) then
  return 0
end
local notify_owner = ARGV[6 + n * 5] ~= '0'
for i = 0, n - 1 do
  local base = 6 + i * 5
  commit_object(ARGV[base], owner, ARGV[base + 1], ARGV[base + 2], ARGV[base + 3],
    ARGV[base + 4], notify_owner)
end
return 1

-- command: publish_object
-- Tables: object directory, waiters, notification streams.
-- Writes the entry of a put object and notifies anyone already waiting for it (the owner
-- itself is not notified: it has the value).
-- ARGV: prefix, object_id, owner, kind, size, node, data
commit_object(ARGV[2], '', ARGV[4], ARGV[5], ARGV[6], ARGV[7])
redis.call('HSET', key.obj(ARGV[2]), 'o', ARGV[3])
redis.call('SADD', key.owned(ARGV[3]), ARGV[2])
return 1

-- command: watch_objects
-- Tables: object directory, waiters.
-- Subscribe-then-check in one step: for each object id, returns its entry
-- {kind, size, node, data} if committed; otherwise registers the client as a waiter (so the
-- commit notifies it) and returns false for that id. No notification can fall between.
-- ARGV: prefix, client, object ids...
local client = ARGV[2]
local out = {}
for i = 3, #ARGV do
  local entry = redis.call('HMGET', key.obj(ARGV[i]), 'k', 's', 'n', 'd')
  if entry[1] then
    out[#out + 1] = entry
  else
    redis.call('SADD', key.obj_waiters(ARGV[i]), client)
    out[#out + 1] = false
  end
end
return out

-- command: actor_create
-- Tables: actor (actor:*), named actors, actor mailbox.
-- Creates an actor's record and its mailbox (with the "actor" consumer group). With a name,
-- claims it first (atomically): if a live actor already has it, creates nothing and returns
-- that actor's id. Returns '' when created.
-- ARGV: prefix, actor_id, name key ('' for none), then field/value pairs of the record
local actor_id, name_key = ARGV[2], ARGV[3]
if name_key ~= '' then
  local existing = redis.call('HGET', key.NAMED_ACTORS, name_key)
  if existing and redis.call('HGET', key.actor(existing), 'state') ~= 'dead'
      and redis.call('EXISTS', key.actor(existing)) == 1 then
    return existing
  end
  redis.call('HSET', key.NAMED_ACTORS, name_key, actor_id)
end
local akey = key.actor(actor_id)
local record = {}
for i = 4, #ARGV do record[#record + 1] = ARGV[i] end
redis.call('HSET', akey, 'state', 'pending', 'handles', 1, 'restarts', 0, 'name_key', name_key,
  unpack(record))
redis.call('XGROUP', 'CREATE', key.actor_mailbox(actor_id), key.ACTOR_GROUP, '0', 'MKSTREAM')
redis.call('SADD', key.ACTORS, actor_id)
return ''

-- command: actor_call
-- Tables: actor, actor mailbox, task, object directory, waiters, notification streams.
-- Queues one method call on a live (or starting) actor; on a dead or unknown actor, commits
-- the actor's death error as every return value of the call instead. Returns 1 if queued.
-- ARGV: prefix, actor_id, task_id, owner, payload, fallback error blob ('' to use the
--       actor's own), return ids...
local actor_id, task_id, owner, payload, fallback = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local akey = key.actor(actor_id)
local state = redis.call('HGET', akey, 'state')
local rids = {}
for i = 7, #ARGV do rids[#rids + 1] = ARGV[i] end
if state and state ~= 'dead' then
  redis.call('XADD', key.actor_mailbox(actor_id), '*', 's', payload, 't', task_id, 'o', owner,
    'r', table.concat(rids, ','))
  return 1
end
local data = redis.call('HGET', akey, 'death') or fallback
if not finish_task(task_id, 'finished') then return 0 end
for _, oid in ipairs(rids) do
  commit_object(oid, owner, 'e', #data, '', data)
end
return 0

-- command: actor_dead
-- Tables: actor, named actors, actor mailbox, node queue, task, object directory, waiters,
-- notification streams.
-- Marks an actor dead for good (the first cause wins), frees its name, optionally asks its
-- node to SIGKILL its worker (an entry {kill: actor_id} on the node's queue), and fails every
-- call still in its mailbox with the death error. Returns 1 if this call killed it.
-- ARGV: prefix, actor_id, error blob, kill ('1' to send the kill request)
local actor_id, blob, kill = ARGV[2], ARGV[3], ARGV[4]
local akey = key.actor(actor_id)
local mkey = key.actor_mailbox(actor_id)
local state = redis.call('HGET', akey, 'state')
local newly = 0
if state ~= 'dead' then
  newly = 1
  redis.call('HSET', akey, 'state', 'dead', 'death', blob, 'direct', '')
  local node = redis.call('HGET', akey, 'node')
  if node then
    redis.call('SREM', key.node_actors(node), actor_id)
  end
  local name_key = redis.call('HGET', akey, 'name_key')
  if name_key and name_key ~= '' and redis.call('HGET', key.NAMED_ACTORS, name_key) == actor_id then
    redis.call('HDEL', key.NAMED_ACTORS, name_key)
  end
  if kill == '1' then
    local node = redis.call('HGET', akey, 'node')
    if node then
      redis.call('XADD', key.node_queue(node), '*', 'kill', actor_id)
    end
  end
  redis.call('EXPIRE', akey, 3600)
end
local data = redis.call('HGET', akey, 'death') or blob
for _, item in ipairs(redis.call('XRANGE', mkey, '-', '+')) do
  local f = {}
  local flat = item[2]
  for i = 1, #flat, 2 do f[flat[i]] = flat[i + 1] end
  if f['t'] and finish_task(f['t'], 'finished') then
    for oid in string.gmatch(f['r'], '[^,]+') do
      commit_object(oid, f['o'], 'e', #data, '', data)
    end
  end
end
redis.call('XTRIM', mkey, 'MAXLEN', 0)
redis.call('EXPIRE', mkey, 3600)
return newly

-- command: actor_register
-- Tables: actor.
-- An actor's worker starts (or restarts) it: records where it runs, unless it was killed
-- meanwhile. Returns 1 if the worker may run the actor, 0 if it is dead.
-- The actor joins its node's set (node:*:actors), and its creation task is kept, so that
-- the node's death can restart it elsewhere (redray/node/recovery.py).
-- ARGV: prefix, actor_id, node_id, pid, worker_id, direct (JSON: the socket callers on its
--       node may use, worker/direct_server.py; '' for none), pickled creation TaskSpec
local actor_id = ARGV[2]
local akey = key.actor(actor_id)
local state = redis.call('HGET', akey, 'state')
if state == false or state == 'dead' then return 0 end
local previous = redis.call('HGET', akey, 'node')
if previous then
  redis.call('SREM', key.node_actors(previous), actor_id)
end
redis.call('HSET', akey, 'state', 'alive', 'node', ARGV[3], 'pid', ARGV[4], 'worker', ARGV[5],
  'direct', ARGV[6], 'creation', ARGV[7])
redis.call('SADD', key.node_actors(ARGV[3]), actor_id)
return 1

-- command: actor_restart
-- Tables: actor.
-- The worker of an actor died: decides whether the actor restarts. Returns 1 (restart: the
-- caller re-queues the creation task), -1 (no restarts left: the caller calls actor_dead) or
-- 0 (already dead: nothing to do).
-- ARGV: prefix, actor_id, max_restarts (-1 = infinite), cause
local actor_id, max_restarts, cause = ARGV[2], tonumber(ARGV[3]), ARGV[4]
local akey = key.actor(actor_id)
local state = redis.call('HGET', akey, 'state')
if state == false or state == 'dead' then return 0 end
local restarts = tonumber(redis.call('HGET', akey, 'restarts') or '0')
if max_restarts ~= -1 and restarts >= max_restarts then return -1 end
redis.call('HSET', akey, 'state', 'restarting', 'restarts', restarts + 1, 'last_cause', cause,
  'direct', '')
return 1

-- command: actor_handle_acquire
-- Tables: actor, actor handle tokens.
-- A process unpickled an actor handle: it adopts the count its pickler added (token), or
-- adds one of its own if another process adopted it already. Returns the handle count.
-- ARGV: prefix, actor_id, token ('' for none)
local actor_id, token = ARGV[2], ARGV[3]
local akey = key.actor(actor_id)
if redis.call('EXISTS', akey) == 0 then return 0 end
if token ~= '' and redis.call('SREM', key.actor_tokens(actor_id), token) == 1 then
  return tonumber(redis.call('HGET', akey, 'handles'))
end
return redis.call('HINCRBY', akey, 'handles', 1)

-- command: actor_handle_release
-- Tables: actor, actor mailbox.
-- A handle was garbage collected. When the last one is gone, a reference-counted actor is
-- asked to terminate: a "terminate" entry after the calls already in its mailbox.
-- ARGV: prefix, actor_id
local actor_id = ARGV[2]
local akey = key.actor(actor_id)
if redis.call('EXISTS', akey) == 0 then return 0 end
local left = redis.call('HINCRBY', akey, 'handles', -1)
if left <= 0 and redis.call('HGET', akey, 'refcounted') == '1'
    and redis.call('HGET', akey, 'state') ~= 'dead'
    and redis.call('HGET', akey, 'terminating') ~= '1' then
  redis.call('HSET', akey, 'terminating', '1')
  redis.call('XADD', key.actor_mailbox(actor_id), '*', 'terminate', '1')
end
return left

-- command: obj_refs
-- Tables: object directory (obj:*, obj:*:locations, obj:*:waiters).
-- Applies one process's reference changes, in order, and frees what nobody refers to any
-- more (redray/objectstore/refcount.py). Field b of an entry counts borrowers (processes
-- holding refs they do not own, and objects containing the ref); field r is set when the
-- owner dropped its last ref; an entry goes when r is set and b is 0. Freeing an object
-- releases the borrows it held on the refs it contains (field c), possibly freeing those.
-- ARGV: prefix, then operations: '+' id (borrow) | '-' id (unborrow) | 'o' id (owner
--       released) | 'c' id n inner_1..inner_n (id contains these refs: borrow them)
-- Returns, for each freed object kept in a store, {id, primary node, other nodes...}.
local freed = {}
local function free(id)
  free_object(id, freed)
end
local i = 2
while i <= #ARGV do
  local op, id = ARGV[i], ARGV[i + 1]
  i = i + 2
  local okey = key.obj(id)
  if op == '+' then
    redis.call('HINCRBY', okey, 'b', 1)
  elseif op == '-' then
    if redis.call('HINCRBY', okey, 'b', -1) <= 0 then
      if redis.call('HGET', okey, 'r') == '1' then
        free(id)
      elseif redis.call('HEXISTS', okey, 'k') == 0 then
        redis.call('DEL', okey)
      end
    end
  elseif op == 'o' then
    if redis.call('EXISTS', okey) == 1 then
      if tonumber(redis.call('HGET', okey, 'b') or '0') <= 0 then
        free(id)
      else
        redis.call('HSET', okey, 'r', '1')
      end
    end
  elseif op == 'c' then
    local n = tonumber(ARGV[i])
    local inner = {}
    for j = 1, n do
      inner[j] = ARGV[i + j]
      redis.call('HINCRBY', key.obj(ARGV[i + j]), 'b', 1)
    end
    i = i + 1 + n
    redis.call('HSET', okey, 'c', table.concat(inner, ','))
  end
end
return freed

-- command: owner_died
-- Tables: clients (and the node's set of them), dead owners, owned sets, object directory.
-- A process that owned objects died (or a driver ended its job): each object it owned that
-- nobody borrows is freed; the others become kind 'x' (their memory is freed too), so that
-- their borrowers' get raises OwnerDiedError, and they go when the last borrower lets go.
-- Results committed later by its tasks are written as 'x' (see commit_object). Every client
-- hears of it on node_events, and forgets the entries it cached of objects it borrowed.
-- ARGV: prefix, client_id. Returns the freed stored objects, as obj_refs does.
local client = ARGV[2]
local record = redis.call('HGET', key.CLIENTS, client)
if record then
  local node = cjson.decode(record)['node']
  if type(node) == 'string' then
    redis.call('SREM', key.node_clients(node), client)
  end
end
redis.call('HDEL', key.CLIENTS, client)
redis.call('SADD', key.DEAD_OWNERS, client)
local freed = {}
local owned = key.owned(client)
for _, id in ipairs(redis.call('SMEMBERS', owned)) do
  local okey = key.obj(id)
  if tonumber(redis.call('HGET', okey, 'b') or '0') <= 0 then
    free_object(id, freed)
  else
    local f = redis.call('HMGET', okey, 'k', 'n')
    note_stored_copies(id, f[1], f[2], freed)
    redis.call('HSET', okey, 'k', 'x', 'd', '', 'r', '1')
    redis.call('DEL', key.obj_locations(id))
  end
end
redis.call('DEL', owned)
redis.call('XADD', key.NODE_EVENTS, 'MAXLEN', 1000, '*', 'event', 'owner_died', 'client',
  client)
return freed

-- command: obj_add_location
-- Tables: object directory.
-- A node pulled a copy of an object: records it, unless the object was freed meanwhile.
-- ARGV: prefix, object_id, node_id. Returns 1 if recorded.
if redis.call('EXISTS', key.obj(ARGV[2])) == 0 then return 0 end
redis.call('SADD', key.obj_locations(ARGV[2]), ARGV[3])
return 1

-- command: requeue_task
-- Tables: task, node queue.
-- Queues the next attempt of a task whose worker (or node) died, unless the task already
-- has a terminal state: its worker died after committing the results, or it was cancelled.
-- A finished task must not run again. Returns 1 if queued, 0 if not.
-- ARGV: prefix, task_id, node_id, pickled TaskSpec of the next attempt
local task_id, node, payload = ARGV[2], ARGV[3], ARGV[4]
local state = redis.call('HGET', key.task(task_id), 'state')
if state == 'finished' or state == 'cancelled' then
  return 0
end
redis.call('XADD', key.node_queue(node), '*', 's', payload)
return 1

-- command: node_tick
-- Tables: node table, heartbeats, node queues, node events.
-- One node daemon's heartbeat, and the cluster's failure detector (every daemon runs it):
-- refreshes the caller's heartbeat unless the caller was declared dead (then returns
-- {'dead'} and the daemon must exit: its tasks are being re-run elsewhere); declares dead
-- every other node whose heartbeat expired (marks its record "dead" and publishes "left"
-- once: the first daemon to see it does both); returns {'ok', dead nodes whose queues
-- still hold entries or whose actors are not recovered yet...}; empty queues of dead nodes
-- are deleted.
-- ARGV: prefix, node_id, heartbeat value, ttl seconds, now (unix time)
local me, value, ttl, now = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local nodes_key = key.NODES
local mine = redis.call('HGET', nodes_key, me)
if mine and cjson.decode(mine)['dead'] then
  return {'dead'}
end
redis.call('SET', key.node_alive(me), value, 'EX', ttl)
local out = {'ok'}
local all = redis.call('HGETALL', nodes_key)
for i = 1, #all, 2 do
  local id = all[i]
  if id ~= me then
    local record = cjson.decode(all[i + 1])
    if not record['dead'] and redis.call('EXISTS', key.node_alive(id)) == 0 then
      record['dead'] = true
      record['died'] = now
      redis.call('HSET', nodes_key, id, cjson.encode(record))
      redis.call('XADD', key.NODE_EVENTS, 'MAXLEN', 1000, '*', 'event', 'left', 'node', id,
        'cause', 'heartbeat expired')
    end
    if record['dead'] then
      local queue = key.node_queue(id)
      local queued = redis.call('XLEN', queue) > 0
      if queued or redis.call('SCARD', key.node_actors(id)) > 0 then
        out[#out + 1] = id
      end
      if not queued then
        redis.call('DEL', queue)
      end
    end
  end
end
return out

-- command: pg_mark_created
-- Tables: placement group (pg:*).
-- Every node reserved the group's bundles: marks it created with the node of each bundle,
-- unless it is no longer pending (removed meanwhile). Returns 1 if marked.
-- ARGV: prefix, pg_id, nodes (JSON list: the node of each bundle)
local gkey = key.placement_group(ARGV[2])
if redis.call('HGET', gkey, 'state') ~= 'pending' then return 0 end
redis.call('HSET', gkey, 'state', 'created', 'nodes', ARGV[3])
return 1

-- command: pg_mark_removed
-- Tables: placement group, named placement groups.
-- remove_placement_group(): marks the group removed (kept an hour for
-- placement_group_table) and frees its name. Returns {its state before ('' if unknown),
-- nodes (JSON, '' if none)}; a group already removed is left as it is.
-- ARGV: prefix, pg_id
local pg_id = ARGV[2]
local gkey = key.placement_group(pg_id)
local state = redis.call('HGET', gkey, 'state')
if not state or state == 'removed' then return {state or '', ''} end
redis.call('HSET', gkey, 'state', 'removed')
redis.call('EXPIRE', gkey, 3600)
local name_key = redis.call('HGET', gkey, 'name_key')
if name_key and name_key ~= '' and redis.call('HGET', key.NAMED_PLACEMENT_GROUPS, name_key) == pg_id then
  redis.call('HDEL', key.NAMED_PLACEMENT_GROUPS, name_key)
end
return {state, redis.call('HGET', gkey, 'nodes') or ''}

-- command: task_events
-- Tables: task events (task_events:<job>, task_events:<job>:meta, task_event_jobs).
-- Writes task event records (redray/client/task_events.py): one field per task attempt
-- and writer ("<task id>:<attempt>[:r|:n|:c]"), each written whole by its writer, so
-- nothing is read or merged here. A job holds at most 2 x cap records (about cap task
-- attempts: the submitter's and the worker's record of each), `cap` from its meta hash,
-- else the default; new records beyond it are counted in the meta's `dropped`, never
-- silently lost. Both keys expire `ttl` s after the last write.
-- ARGV: prefix, default cap, default ttl, then per job: job, n, then n field/record pairs
local default_cap, default_ttl = tonumber(ARGV[2]), tonumber(ARGV[3])
local i = 4
while i <= #ARGV do
  local job, n = ARGV[i], tonumber(ARGV[i + 1])
  local events = key.task_events(job)
  local meta = key.task_events_meta(job)
  local conf = redis.call('HMGET', meta, 'cap', 'ttl')
  local limit = 2 * (tonumber(conf[1]) or default_cap)
  local ttl = tonumber(conf[2]) or default_ttl
  local first, last = i + 2, i + 1 + 2 * n
  local count = redis.call('HLEN', events)
  if count + n <= limit then
    redis.call('HSET', events, unpack(ARGV, first, last))
  else
    local dropped = 0
    for j = first, last, 2 do
      if redis.call('HEXISTS', events, ARGV[j]) == 1 then
        redis.call('HSET', events, ARGV[j], ARGV[j + 1])
      elseif count < limit then
        redis.call('HSET', events, ARGV[j], ARGV[j + 1])
        count = count + 1
      else
        dropped = dropped + 1
      end
    end
    if dropped > 0 then
      redis.call('HINCRBY', meta, 'dropped', dropped)
    end
  end
  redis.call('SADD', key.TASK_EVENT_JOBS, job)
  redis.call('EXPIRE', events, ttl)
  redis.call('EXPIRE', meta, ttl)
  i = last + 1
end
return 1
