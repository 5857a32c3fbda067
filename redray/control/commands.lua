-- Atomic control-store commands. Each section below is one script, named by its
-- "-- command:" line and loaded by redray/control/scripts.py. ARGV[1] is always the key
-- prefix (redray/control/keys.py); key names are built here from it.

-- command: commit_objects
-- Tables: task (state), object directory (obj:*), waiters, notification streams.
-- Commits the outputs of one task attempt exactly once, leaving the task in final_state
-- ('finished', or 'cancelled' when ray.cancel commits TaskCancelledError).
-- ARGV: prefix, task_id, owner, final_state, n, then n groups of
--       object_id, kind ('v' inline value | 's' shared memory | 'e' error), size, node, data
-- A task whose state is already terminal is not committed again, so a slow first attempt
-- that finishes after a retry started (or after a cancel) cannot report twice.
-- Returns 1 if committed, else 0.
local p, task_id, owner, final_state, n = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local tkey = p .. 'task:' .. task_id
local state = redis.call('HGET', tkey, 'state')
if state == 'finished' or state == 'cancelled' then
  return 0
end
redis.call('HSET', tkey, 'state', final_state)
redis.call('EXPIRE', tkey, 3600)
for i = 0, n - 1 do
  local base = 6 + i * 5
  local oid, kind, size, node, data =
    ARGV[base], ARGV[base + 1], ARGV[base + 2], ARGV[base + 3], ARGV[base + 4]
  local okey = p .. 'obj:' .. oid
  redis.call('HSET', okey, 'k', kind, 's', size, 'n', node, 'd', data, 'o', owner)
  local entry = {'o', oid, 'k', kind, 's', size, 'n', node, 'd', data}
  if owner ~= '' then
    redis.call('XADD', p .. 'notify:' .. owner, '*', unpack(entry))
  end
  local wkey = okey .. ':waiters'
  for _, client in ipairs(redis.call('SMEMBERS', wkey)) do
    if client ~= owner then
      redis.call('XADD', p .. 'notify:' .. client, '*', unpack(entry))
    end
  end
  redis.call('DEL', wkey)
end
return 1

-- command: watch_objects
-- Tables: object directory, waiters.
-- Subscribe-then-check in one step: for each object id, returns its entry
-- {kind, size, node, data} if committed; otherwise registers the client as a waiter (so the
-- commit notifies it) and returns false for that id. No notification can fall between.
-- ARGV: prefix, client, object ids...
local p, client = ARGV[1], ARGV[2]
local out = {}
for i = 3, #ARGV do
  local okey = p .. 'obj:' .. ARGV[i]
  local entry = redis.call('HMGET', okey, 'k', 's', 'n', 'd')
  if entry[1] then
    out[#out + 1] = entry
  else
    redis.call('SADD', okey .. ':waiters', client)
    out[#out + 1] = false
  end
end
return out
