-- expire: end a leased item that was not started before its expires_at: terminal "expired".
-- KEYS[1] inflight HASH   KEYS[2] leases ZSET   KEYS[3] metrics HASH   KEYS[4] redeliveries HASH
-- KEYS[5] started SET     KEYS[6] the item's status HASH   KEYS[7] its done LIST (wait_for)
-- KEYS[8] deps_outbox LIST: an item whose record has "has_dependents" is pushed onto it as
--         "<operation id> expired" (see enqueue_dependent.lua)
-- KEYS[9] the item's dedup STRING key (optional)
-- ARGV[1] token   ARGV[2] operation id   ARGV[3] TTL (s) of the status record and the counters
-- ARGV[4] expired at (s, the time the item expired at: its expires_at)
-- ARGV[5] finished at (s, the worker's clock)
-- Returns: 1 = expired (2 = and pushed onto deps_outbox), 0 = the lease was lost (nothing
-- written).
-- Fenced like dead_letter.lua: only the lease holder ends the item. Safe to re-send: the status
-- record keeps the token that ended it ("lease"), so a re-run whose lease is gone answers 1 for
-- its own token and 0 for a lease another worker took over. The item never ran: "processed" is
-- not counted, "expired" is. Its dedup key (if it still names this operation) is released and
-- its redelivery count ends with it. Callers blocked in wait_for (counted in the record's
-- "waiters") each get a wake-up token on the done list; a pending cancel mark is dropped.
--#include wake_waiters
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then
  if redis.call('HGET', KEYS[6], 'lease') == ARGV[1] then return 1 end
  return 0
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[5], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[2])
redis.call('HINCRBY', KEYS[3], 'expired', 1)
redis.call('EXPIRE', KEYS[3], ARGV[3])
redis.call('HSET', KEYS[6], 'status', 'expired', 'expired_at', ARGV[4], 'finished_at', ARGV[5],
  'lease', ARGV[1])
redis.call('HDEL', KEYS[6], 'cancel_requested')
redis.call('EXPIRE', KEYS[6], ARGV[3])
wake_waiters(KEYS[7], redis.call('HGET', KEYS[6], 'waiters'), ARGV[3])
redis.call('HDEL', KEYS[6], 'waiters')
local dedup = KEYS[9]
if dedup and redis.call('GET', dedup) == ARGV[2] then
  redis.call('DEL', dedup)
end
if redis.call('HEXISTS', KEYS[6], 'has_dependents') == 1 then
  redis.call('RPUSH', KEYS[8], ARGV[2] .. ' expired')
  return 2
end
return 1
