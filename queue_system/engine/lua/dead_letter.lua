-- dead_letter: move a leased item to failures or system_errors with its reason, atomically.
-- KEYS[1] inflight HASH   KEYS[2] leases ZSET   KEYS[3] failures or system_errors LIST
-- KEYS[4] metrics HASH    KEYS[5] the item's status HASH (when ARGV[8] = 1)
-- KEYS[5 or 6] the item's dedup STRING key (optional, last)
-- ARGV[1] token   ARGV[2] dead-letter record (JSON)   ARGV[3] list cap   ARGV[4] TTL (s)
-- ARGV[5] metric to count ("failed" or "system_errors")   ARGV[6] operation id
-- ARGV[7] run time (ms), or -1 when the item never ran (then "processed" is not counted)
-- ARGV[8] 1 if KEYS[5] is the status record   ARGV[9] status ("failed" or "error")
-- ARGV[10] finished at (s)   ARGV[11] failed runs   ARGV[12] last error (JSON)
-- ARGV[13] "<queue>:<priority>" and ARGV[14] wait time (ms) of a run (used when ARGV[7] >= 0)
-- Returns: 1 = moved, 0 = the lease was lost (nothing written).
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('LPUSH', KEYS[3], ARGV[2])
redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[3]) - 1)
redis.call('EXPIRE', KEYS[3], ARGV[4])
redis.call('HINCRBY', KEYS[4], ARGV[5], 1)
if tonumber(ARGV[7]) >= 0 then
  redis.call('HINCRBY', KEYS[4], 'processed', 1)
  redis.call('HINCRBY', KEYS[4], 'process_time_ms_total', ARGV[7])
  redis.call('HINCRBY', KEYS[4], 'processed:' .. ARGV[13], 1)
  redis.call('HINCRBY', KEYS[4], 'wait_ms_total:' .. ARGV[13], ARGV[14])
  redis.call('HINCRBY', KEYS[4], 'wait_count:' .. ARGV[13], 1)
end
redis.call('EXPIRE', KEYS[4], ARGV[4])
local dedup_index = 5
if ARGV[8] == '1' then
  redis.call('HSET', KEYS[5], 'status', ARGV[9], 'finished_at', ARGV[10], 'attempts', ARGV[11],
    'last_error', ARGV[12])
  redis.call('EXPIRE', KEYS[5], ARGV[4])
  dedup_index = 6
end
local dedup = KEYS[dedup_index]
if dedup and redis.call('GET', dedup) == ARGV[6] then
  redis.call('DEL', dedup)
end
return 1
