-- resolve_dependents: release or fail the dependents of one ended operation (a chunk of
-- them), and drop its deps_outbox entry once none is left; safe to re-send.
-- KEYS[1] deps_outbox LIST   KEYS[2] registry SET   KEYS[3] notify LIST   KEYS[4] metrics HASH
-- KEYS[5] ready SET   KEYS[6] failures LIST   KEYS[7] the ended operation's dependents SET
-- KEYS[8..7+4C] per child, in ARGV order: its status HASH, its waits_on SET, the waiting LIST
--          its record names ("held_list"; any key of the child when it has none: then the
--          child is not waiting and the key is not touched), its done LIST (wait_for)
-- ARGV[1] the outbox entry "<operation id> <status>" as read   ARGV[2] the ended operation's id
-- ARGV[3] its final status   ARGV[4] now (s)   ARGV[5] failures cap
-- ARGV[6] TTL (s) of the counters, the failures list and the record of a child failed here
-- ARGV[7] notify cap   ARGV[8] child count C
-- ARGV[9..8+2C] per child: its operation id, and its dead-letter record head (the record's
--          JSON without its closing brace, as in enqueue_dependent.lua; "" when it cannot
--          fail here: ARGV[3] is "completed" or it runs anyway)
-- Returns {left, {failed child ids}, {released child ids}}: left = members still in the
--   dependents SET (0: the set and the outbox entry are gone; the caller stops).
-- A child is handled only if SREM removes it from the dependents SET (so a re-sent call, or
-- two workers resolving at once, handle it once) and its record still says
-- "waiting_for_dependencies" (a cancelled or requeued child is left alone). A dependency that
-- did not complete fails the child (unless its record says deps_failure_mode = run): a dead
-- letter with reason dependency_failed, status "failed"; a failed child that has dependents of
-- its own is pushed onto the outbox (the cascade). A child whose waits_on SET is empty is
-- pushed onto its waiting list as enqueue.lua would, status "pending".
--#include wake_waiters
--#include dead_letter_counts
local dep, dep_status, now = ARGV[2], ARGV[3], ARGV[4]
local failed, released = {}, {}
local was_empty = false
local c = tonumber(ARGV[8])
for i = 0, c - 1 do
  local child, head = ARGV[9 + 2 * i], ARGV[10 + 2 * i]
  local status_key, waits_on = KEYS[8 + 4 * i], KEYS[9 + 4 * i]
  local list_key, done_key = KEYS[10 + 4 * i], KEYS[11 + 4 * i]
  if redis.call('SREM', KEYS[7], child) == 1 then
    local rec = redis.call('HMGET', status_key, 'status', 'held_item', 'deps_failure_mode',
      'queue', 'has_dependents', 'waiters')
    if rec[1] == 'waiting_for_dependencies' then
      redis.call('SREM', waits_on, dep)
      if dep_status ~= 'completed' and rec[3] ~= 'run' then
        local message = 'dependency ' .. dep .. ' ended ' .. dep_status
        push_dead_letter(KEYS[6], KEYS[4], 'failed', head .. ',"dependency_id":"' .. dep ..
          '","dependency_status":"' .. dep_status .. '","message":"' .. message .. '"}',
          ARGV[5], ARGV[6])
        redis.call('HINCRBY', KEYS[4], 'failed', 1)
        redis.call('EXPIRE', KEYS[4], ARGV[6])
        redis.call('HSET', status_key, 'status', 'failed', 'finished_at', now,
          'last_error', '{"type":"DependencyFailed","message":"' .. message .. '"}')
        redis.call('HDEL', status_key, 'held_item', 'held_list', 'waiters')
        redis.call('EXPIRE', status_key, ARGV[6])
        redis.call('DEL', waits_on)
        wake_waiters(done_key, rec[6], ARGV[6])
        if rec[5] then redis.call('RPUSH', KEYS[1], child .. ' failed') end
        failed[#failed + 1] = child
      elseif redis.call('SCARD', waits_on) == 0 then
        if redis.call('LPUSH', list_key, rec[2]) == 1 then was_empty = true end
        redis.call('SADD', KEYS[5], list_key)
        redis.call('SADD', KEYS[2], rec[4])
        redis.call('HSET', status_key, 'status', 'pending')
        redis.call('HDEL', status_key, 'held_item', 'held_list')
        released[#released + 1] = child
      end
    end
  end
end
if was_empty then
  redis.call('LPUSH', KEYS[3], '1')
  redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[7]) - 1)
end
local left = redis.call('SCARD', KEYS[7])
if left == 0 then
  redis.call('LREM', KEYS[1], 0, ARGV[1])
end
return {left, failed, released}
