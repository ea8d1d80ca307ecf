-- enqueue_dependent: store one item that runs only after other operations complete
-- (depends_on), in one step; safe to re-send.
-- KEYS[1] registry SET      KEYS[2] notify LIST     KEYS[3] metrics HASH
-- KEYS[4] waiting LIST (queue:{priority}:{name})   KEYS[5] ready SET
-- KEYS[6] the item's status HASH   KEYS[7] the item's waits_on SET   KEYS[8] failures LIST
-- KEYS[9..8+2M] per dependency, in ARGV order: its status HASH, its dependents SET
-- ARGV[1] queue name   ARGV[2] max queues in the registry   ARGV[3] notify cap
-- ARGV[4] TTL (s) of the counters, the failures list and a record that fails here
-- ARGV[5] dependency count M   ARGV[6] priority   ARGV[7] processor name   ARGV[8] now (s)
-- ARGV[9] nonce of this call (random, the same when the call is re-sent)
-- ARGV[10] operation id   ARGV[11] encoded item   ARGV[12] on dependency failure: fail | run
-- ARGV[13] dead-letter record head: the record's JSON up to and without its closing brace;
--          a record written here ends with the dependency's id, its status and a message
--          (see core/records.py dependency_record_tail, which builds the same tail)
-- ARGV[14] failures cap   ARGV[15..14+M] the dependencies' operation ids
-- Returns {outcome, status}: "stored" and the status the record got now (or got from an
--   earlier run of this very call whose reply was lost: its record carries this nonce):
--   "pending" (every dependency had completed: pushed now, as enqueue.lua does),
--   "waiting_for_dependencies", or "failed" (a dependency had failed, errored, been cancelled
--   or expired, with ARGV[12] = fail: dead-lettered with reason dependency_failed);
--   "duplicate" and the existing status when a record of this operation id exists.
-- Errors (nothing written): "QS_UNKNOWN_DEPENDENCY <id>" (no record: unknown or expired),
--   "QS_TOO_MANY_QUEUES".
-- A live dependency gets this item in its dependents SET and the mark "has_dependents" on its
-- record; the scripts that end an operation push a marked one onto deps_outbox, and
-- resolve_dependents.lua releases or fails its dependents. Both steps are atomic, so either
-- this script sees the dependency's final status or its finisher sees the mark.
--#include dead_letter_counts
local record = redis.call('HMGET', KEYS[6], 'nonce', 'status')
if record[1] == ARGV[9] then return {'stored', record[2] or ''} end
if record[2] then return {'duplicate', record[2]} end
local known = redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1
if not known and redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return redis.error_reply('QS_TOO_MANY_QUEUES')
end
local m = tonumber(ARGV[5])
local live = {}
local failed_id, failed_status = false, false
for i = 0, m - 1 do
  local dep = ARGV[15 + i]
  local status = redis.call('HGET', KEYS[9 + 2 * i], 'status')
  if not status then return redis.error_reply('QS_UNKNOWN_DEPENDENCY ' .. dep) end
  if status == 'failed' or status == 'error' or status == 'cancelled' or status == 'expired' then
    if ARGV[12] ~= 'run' and not failed_id then failed_id, failed_status = dep, status end
  elseif status ~= 'completed' then
    live[#live + 1] = i
  end
end
if not known then redis.call('SADD', KEYS[1], ARGV[1]) end
redis.call('HINCRBY', KEYS[3], 'enqueued', 1)
redis.call('EXPIRE', KEYS[3], ARGV[4])
redis.call('HSET', KEYS[6], 'queue', ARGV[1], 'priority', ARGV[6], 'processor', ARGV[7],
  'enqueued_at', ARGV[8], 'attempts', 0, 'nonce', ARGV[9],
  'depends_on', table.concat(ARGV, ',', 15, 14 + m), 'deps_failure_mode', ARGV[12])
if failed_id then
  local message = 'dependency ' .. failed_id .. ' ended ' .. failed_status
  push_dead_letter(KEYS[8], KEYS[3], 'failed', ARGV[13] .. ',"dependency_id":"' .. failed_id ..
    '","dependency_status":"' .. failed_status .. '","message":"' .. message .. '"}',
    ARGV[14], ARGV[4])
  redis.call('HINCRBY', KEYS[3], 'failed', 1)
  redis.call('HSET', KEYS[6], 'status', 'failed', 'finished_at', ARGV[8],
    'last_error', '{"type":"DependencyFailed","message":"' .. message .. '"}')
  redis.call('EXPIRE', KEYS[6], ARGV[4])
  return {'stored', 'failed'}
end
if #live == 0 then
  if redis.call('LPUSH', KEYS[4], ARGV[11]) == 1 then
    redis.call('LPUSH', KEYS[2], '1')
    redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[3]) - 1)
  end
  redis.call('SADD', KEYS[5], KEYS[4])
  redis.call('HSET', KEYS[6], 'status', 'pending')
  return {'stored', 'pending'}
end
for _, i in ipairs(live) do
  redis.call('SADD', KEYS[10 + 2 * i], ARGV[10])
  redis.call('SADD', KEYS[7], ARGV[15 + i])
  redis.call('HSET', KEYS[9 + 2 * i], 'has_dependents', '1')
end
redis.call('HSET', KEYS[6], 'status', 'waiting_for_dependencies', 'held_item', ARGV[11],
  'held_list', KEYS[4])
return {'stored', 'waiting_for_dependencies'}
