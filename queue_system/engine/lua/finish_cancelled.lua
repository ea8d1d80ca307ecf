-- finish_cancelled: end a leased item whose cancel was requested as "cancelled" (its worker
-- stopped the processor, or discarded its outcome). Fenced like ack: only the lease holder.
-- KEYS[1] inflight HASH   KEYS[2] leases ZSET   KEYS[3] started SET   KEYS[4] redeliveries HASH
-- KEYS[5] the item's status HASH   KEYS[6] its done LIST (wait_for)   KEYS[7] metrics HASH
-- KEYS[8] deps_outbox LIST: an item whose record has "has_dependents" is pushed onto it as
--         "<operation id> cancelled" (see enqueue_dependent.lua)
-- KEYS[9] the item's dedup STRING key (optional)
-- ARGV[1] token   ARGV[2] operation id   ARGV[3] finished at (s)   ARGV[4] record TTL (s)
-- ARGV[5] metrics TTL (s)
-- Returns: 1 = ended "cancelled" (2 = and pushed onto deps_outbox), 0 = the lease was lost (nothing written: whoever holds the
--          item now, or recovery, decides its end).
-- Safe to re-send: the record keeps the token that ended it ("lease"), so a re-run whose
-- lease is gone answers 1 for its own token and 0 for a lease another worker took over.
--#include wake_waiters
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then
  if redis.call('HGET', KEYS[5], 'lease') == ARGV[1] then return 1 end
  return 0
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[2])
redis.call('HSET', KEYS[5], 'status', 'cancelled', 'finished_at', ARGV[3], 'lease', ARGV[1])
redis.call('EXPIRE', KEYS[5], ARGV[4])
if KEYS[9] and redis.call('GET', KEYS[9]) == ARGV[2] then
  redis.call('DEL', KEYS[9])
end
wake_waiters(KEYS[6], redis.call('HGET', KEYS[5], 'waiters'), ARGV[4])
redis.call('HDEL', KEYS[5], 'waiters')
redis.call('HINCRBY', KEYS[7], 'cancelled', 1)
redis.call('EXPIRE', KEYS[7], ARGV[5])
if redis.call('HEXISTS', KEYS[5], 'has_dependents') == 1 then
  redis.call('RPUSH', KEYS[8], ARGV[2] .. ' cancelled')
  return 2
end
return 1
