-- dead_letter: move a leased item to failures or system_errors with its reason, atomically.
-- KEYS[1] inflight HASH   KEYS[2] leases ZSET   KEYS[3] failures or system_errors LIST
-- KEYS[4] metrics HASH    KEYS[5] redeliveries HASH   KEYS[6] started SET
-- KEYS[7] the item's status HASH when ARGV[8] = 1, else this token's finish receipt STRING
-- KEYS[8] the item's done LIST (wakes wait_for callers; used when ARGV[8] = 1, else any key of
--         this item, e.g. KEYS[7] again)
-- KEYS[9] deps_outbox LIST: an item whose record has "has_dependents" is pushed onto it as
--         "<operation id> <status>" (see enqueue_dependent.lua)
-- KEYS[10] the item's dedup STRING key (optional)
-- ARGV[1] token   ARGV[2] dead-letter record (JSON)   ARGV[3] list cap   ARGV[4] TTL (s)
-- ARGV[5] metric to count ("failed" or "system_errors")   ARGV[6] operation id
-- ARGV[7] run time (ms), or -1 when the item never ran (then "processed" is not counted)
-- ARGV[8] 1 if KEYS[7] is the status record   ARGV[9] status ("failed" or "error")
-- ARGV[10] finished at (s)   ARGV[11] failed runs   ARGV[12] last error (JSON)
-- ARGV[13] "<queue>:<priority>" of the item's tier, or "" when unknown: counts ARGV[5] per tier
--          ("<metric>:<queue>:<priority>"), and with ARGV[14] wait time (ms) a run (ARGV[7] >= 0)
-- Per-queue dead-letter counts live in KEYS[4]: field "dead:<ARGV[5]>:<queue>" (queue read
-- from the record's first "queue" field, "" if none), +1 for the record pushed and -1 for each
-- record the cap trims, so that health reads counts instead of every record.
-- Returns: 1 = moved (2 = moved, and pushed onto deps_outbox), 0 = the lease was lost
-- (nothing written). A record that counts waiters
-- (wait_register.lua) gets one token per waiter on its done LIST.
-- Safe to re-send: the status record keeps the token that finished it ("lease"; an item
-- without a record gets a receipt key instead), so a re-run whose lease is gone answers 1 for
-- its own token and 0 for a lease another worker took over. The record gets its TTL here.
-- The item ended: its redelivery count (by operation id read from the item's opening, else
-- the item's sha1, as recover.lua counts it) is removed.
--#include wake_waiters
--#include dead_letter_counts
local value = redis.call('HGET', KEYS[1], ARGV[1])
if not value then
  if ARGV[8] == '1' then
    if redis.call('HGET', KEYS[7], 'lease') == ARGV[1] then return 1 end
  elseif redis.call('EXISTS', KEYS[7]) == 1 then
    return 1
  end
  return 0
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[6], ARGV[1])
local deps = 1
local item = string.sub(value, string.find(value, '\n', 1, true) + 1)
redis.call('HDEL', KEYS[5],
  string.match(item, '^{"v":1,"id":"([%w_.:%-]+)"') or redis.sha1hex(item))
push_dead_letter(KEYS[3], KEYS[4], ARGV[5], ARGV[2], ARGV[3], ARGV[4])
redis.call('HINCRBY', KEYS[4], ARGV[5], 1)
if ARGV[13] ~= '' then redis.call('HINCRBY', KEYS[4], ARGV[5] .. ':' .. ARGV[13], 1) end
if tonumber(ARGV[7]) >= 0 then
  redis.call('HINCRBY', KEYS[4], 'processed', 1)
  redis.call('HINCRBY', KEYS[4], 'process_time_ms_total', ARGV[7])
  redis.call('HINCRBY', KEYS[4], 'processed:' .. ARGV[13], 1)
  redis.call('HINCRBY', KEYS[4], 'wait_ms_total:' .. ARGV[13], ARGV[14])
  redis.call('HINCRBY', KEYS[4], 'wait_count:' .. ARGV[13], 1)
end
redis.call('EXPIRE', KEYS[4], ARGV[4])
if ARGV[8] == '1' then
  redis.call('HSET', KEYS[7], 'status', ARGV[9], 'finished_at', ARGV[10], 'attempts', ARGV[11],
    'last_error', ARGV[12], 'lease', ARGV[1])
  -- A cancel requested while it ran no longer applies: an operator's requeue starts afresh.
  redis.call('HDEL', KEYS[7], 'cancel_requested')
  wake_waiters(KEYS[8], redis.call('HGET', KEYS[7], 'waiters'), ARGV[4])
  redis.call('HDEL', KEYS[7], 'waiters')
  if redis.call('HEXISTS', KEYS[7], 'has_dependents') == 1 then
    redis.call('RPUSH', KEYS[9], ARGV[6] .. ' ' .. ARGV[9])
    deps = 2
  end
else
  redis.call('SET', KEYS[7], '1')
end
redis.call('EXPIRE', KEYS[7], ARGV[4])
local dedup = KEYS[10]
if dedup and redis.call('GET', dedup) == ARGV[6] then
  redis.call('DEL', dedup)
end
return deps
