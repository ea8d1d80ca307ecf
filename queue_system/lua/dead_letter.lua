-- dead_letter: move a leased item to failures or system_errors with its reason, atomically.
-- KEYS[1] inflight HASH   KEYS[2] leases ZSET   KEYS[3] failures or system_errors LIST
-- KEYS[4] metrics HASH    KEYS[5] the item's dedup STRING key (optional)
-- ARGV[1] token   ARGV[2] dead-letter record (JSON)   ARGV[3] list cap   ARGV[4] TTL (s)
-- ARGV[5] metric to count ("failed" or "system_errors")   ARGV[6] operation id
-- ARGV[7] run time (ms), or -1 when the item never ran (then "processed" is not counted)
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
end
redis.call('EXPIRE', KEYS[4], ARGV[4])
if KEYS[5] and redis.call('GET', KEYS[5]) == ARGV[6] then
  redis.call('DEL', KEYS[5])
end
return 1
