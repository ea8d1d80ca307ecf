-- defer: put a leased item whose processor (or callback) this worker does not know back in the
-- delayed set, to be looked at again at its due time (deploy skew). No attempt is consumed and
-- nothing is counted: the item did not run.
-- KEYS[1] inflight HASH   KEYS[2] leases ZSET   KEYS[3] delayed ZSET
-- KEYS[4] the item's status HASH   KEYS[5] redeliveries HASH   KEYS[6] started SET
-- ARGV[1] token   ARGV[2] delayed member "<list key>\n<updated item>"   ARGV[3] due time (ms)
-- ARGV[4] why it waits (JSON: {"type": "UnknownProcessor", "message": ...})   ARGV[5] operation id
-- Returns: 1 = deferred (also when a re-sent call finds its own member already in the delayed
--          set: its first reply was lost), 0 = the lease was lost (nothing written).
-- The status record keeps no TTL: the item is live. The lease ended normally (not a crash), so
-- the item's redelivery count ends too, and its token leaves the started set.
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then
  if redis.call('ZSCORE', KEYS[3], ARGV[2]) then
    return 1
  end
  return 0
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[6], ARGV[1])
redis.call('HDEL', KEYS[5], ARGV[5])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
redis.call('HSET', KEYS[4], 'status', 'scheduled', 'last_error', ARGV[4],
  'next_run_at', string.format('%.3f', tonumber(ARGV[3]) / 1000))
redis.call('PERSIST', KEYS[4])
return 1
