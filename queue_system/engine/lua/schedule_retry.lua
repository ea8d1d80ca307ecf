-- schedule_retry: move a leased item to the delayed set, to be promoted at its due time.
-- KEYS[1] inflight HASH   KEYS[2] leases ZSET   KEYS[3] delayed ZSET   KEYS[4] metrics HASH
-- KEYS[5] the item's status HASH   KEYS[6] redeliveries HASH   KEYS[7] started SET
-- ARGV[1] token   ARGV[2] delayed member "<list key>\n<updated item>"   ARGV[3] due time (ms)
-- ARGV[4] run time (ms)   ARGV[5] "<queue>:<priority>" (per-tier counters)   ARGV[6] wait time (ms)
-- ARGV[7] metrics TTL (s)   ARGV[8] failed runs so far   ARGV[9] last error (JSON)
-- ARGV[10] operation id
-- KEYS[8] the item's done LIST (wait_for)   KEYS[9] its dedup STRING key (optional)
-- KEYS[#KEYS] deps_outbox LIST (optional, always last: then KEYS[9] is the dedup key only when
--         there are 10 keys): an item that ends cancelled here whose record has
--         "has_dependents" is pushed onto it as "<operation id> cancelled"
-- ARGV[11] TTL (s) of a record that ends here (see below)   ARGV[12] now (s)
-- Returns: 1 = scheduled, 0 = the lease was lost (nothing written), 2 = its cancel was
--          requested while it ran (the record's "cancel_requested" mark, see cancel.lua): it
--          is not retried but ends "cancelled" (its worker missed the request, or it failed
--          on its own meanwhile).
-- Safe to re-send: the status record keeps the token that moved it ("lease"); a re-run whose
-- lease is gone answers 1 if that token is its own. The record keeps no TTL: the item lives
-- on. The run ended normally, so the item's redelivery count ends too.
--#include wake_waiters
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then
  local record = redis.call('HMGET', KEYS[5], 'lease', 'status')
  if record[1] == ARGV[1] then return record[2] == 'cancelled' and 2 or 1 end
  return 0
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[7], ARGV[1])
redis.call('HDEL', KEYS[6], ARGV[10])
local marks = redis.call('HMGET', KEYS[5], 'cancel_requested', 'waiters')
if marks[1] then
  redis.call('HSET', KEYS[5], 'status', 'cancelled', 'finished_at', ARGV[12],
    'attempts', ARGV[8], 'last_error', ARGV[9], 'lease', ARGV[1])
  redis.call('EXPIRE', KEYS[5], ARGV[11])
  if #KEYS == 10 and redis.call('GET', KEYS[9]) == ARGV[10] then redis.call('DEL', KEYS[9]) end
  if #KEYS >= 9 and redis.call('HEXISTS', KEYS[5], 'has_dependents') == 1 then
    redis.call('RPUSH', KEYS[#KEYS], ARGV[10] .. ' cancelled')
  end
  if marks[2] then
    wake_waiters(KEYS[8], marks[2], ARGV[11])
    redis.call('HDEL', KEYS[5], 'waiters')
  end
  redis.call('HINCRBY', KEYS[4], 'cancelled', 1)
  redis.call('EXPIRE', KEYS[4], ARGV[7])
  return 2
end
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
redis.call('HINCRBY', KEYS[4], 'retried', 1)
redis.call('HINCRBY', KEYS[4], 'retried:' .. ARGV[5], 1)
redis.call('HINCRBY', KEYS[4], 'processed', 1)
redis.call('HINCRBY', KEYS[4], 'process_time_ms_total', ARGV[4])
redis.call('HINCRBY', KEYS[4], 'wait_ms_total:' .. ARGV[5], ARGV[6])
redis.call('HINCRBY', KEYS[4], 'wait_count:' .. ARGV[5], 1)
redis.call('HINCRBY', KEYS[4], 'processed:' .. ARGV[5], 1)
redis.call('EXPIRE', KEYS[4], ARGV[7])
redis.call('HSET', KEYS[5], 'status', 'scheduled', 'attempts', ARGV[8], 'last_error', ARGV[9],
  'next_run_at', string.format('%.3f', tonumber(ARGV[3]) / 1000), 'lease', ARGV[1])
redis.call('PERSIST', KEYS[5])
return 1
