-- cancel_dependent: end an item that waits for its dependencies as "cancelled"; it never runs.
-- KEYS[1] its status HASH   KEYS[2] its waits_on SET   KEYS[3] its done LIST (wait_for)
-- KEYS[4] metrics HASH      KEYS[5] deps_outbox LIST
-- ARGV[1] now (s)   ARGV[2] TTL (s) of the finished record   ARGV[3] nonce of this call
-- ARGV[4] metrics TTL (s)   ARGV[5] operation id
-- Returns "cancelled", or "moved" when the record no longer says waiting_for_dependencies
-- (released or failed meanwhile: the caller reads the record again). Safe to re-send: the
-- record keeps this call's nonce ("cancel_nonce") and the re-run answers "cancelled".
-- Its dependencies keep it in their dependents SETs; resolve_dependents.lua skips it there.
-- If items depend on it in turn, it goes onto the outbox: they fail (or run) as for a cancel.
--#include wake_waiters
local rec = redis.call('HMGET', KEYS[1], 'status', 'cancel_nonce', 'waiters', 'has_dependents')
if rec[1] == 'cancelled' and rec[2] == ARGV[3] then return 'cancelled' end
if rec[1] ~= 'waiting_for_dependencies' then return 'moved' end
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_at', ARGV[1], 'cancel_nonce', ARGV[3])
redis.call('HDEL', KEYS[1], 'held_item', 'held_list', 'waiters')
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('DEL', KEYS[2])
wake_waiters(KEYS[3], rec[3], ARGV[2])
if rec[4] then redis.call('RPUSH', KEYS[5], ARGV[5] .. ' cancelled') end
redis.call('HINCRBY', KEYS[4], 'cancelled', 1)
redis.call('EXPIRE', KEYS[4], ARGV[4])
return 'cancelled'
