-- progress: store a running item's progress (JSON) on its status record, if the caller still
-- holds its lease (a late write after the item ended, or after another worker took it over,
-- writes nothing).
-- KEYS[1] inflight HASH   KEYS[2] the item's status HASH
-- ARGV[1] token   ARGV[2] progress (JSON, size-capped by the caller)
-- Returns: 1 = stored, 0 = the lease is gone (nothing written). Safe to re-send (a plain set).
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], 'progress', ARGV[2])
return 1
