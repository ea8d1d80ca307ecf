-- requeue: put one dead letter back on its waiting list as a fresh item, atomically.
-- KEYS[1] failures or system_errors LIST   KEYS[2] waiting LIST (queue:{priority}:{name})
-- KEYS[3] registry SET   KEYS[4] notify LIST   KEYS[5] the item's status HASH (queue:op:{id})
-- KEYS[6] ready SET (the index of non-empty lists: the waiting list is added)
-- KEYS[7] metrics HASH (per-queue dead-letter counts, see dead_letter.lua)
-- KEYS[8] the item's dedup STRING key (optional)
-- ARGV[1] the dead-letter record, byte for byte as read   ARGV[2] LREM count: 1 searches from
--         the head (newest), -1 from the tail (oldest)   ARGV[3] the rebuilt item (JSON)
-- ARGV[4] queue name   ARGV[5] priority   ARGV[6] processor name   ARGV[7] now (s)
-- ARGV[8] notify cap   ARGV[9] operation id   ARGV[10] "failed" or "system_errors" (the
--         count of KEYS[1] that goes down)
-- Returns: 1 = requeued; 0 = the record was gone (another operator requeued or purged it, or the
--          list was trimmed): nothing written. Removing the exact record first is what makes two
--          operators requeueing at once neither duplicate nor lose an item.
-- The status record and the dedup key get no TTL: the item is live again, and they live as long
-- as it does (the scripts that end it give them one). The dedup key is taken only if free: an
-- operator's requeue runs even when a newer item with the same key is queued.
--#include dead_letter_counts
if redis.call('LREM', KEYS[1], tonumber(ARGV[2]), ARGV[1]) == 0 then
  return 0
end
redis.call('HINCRBY', KEYS[7], dead_letter_field(ARGV[10], ARGV[1]), -1)
redis.call('LPUSH', KEYS[2], ARGV[3])
redis.call('SADD', KEYS[6], KEYS[2])
redis.call('SADD', KEYS[3], ARGV[4])
redis.call('LPUSH', KEYS[4], '1')
redis.call('LTRIM', KEYS[4], 0, tonumber(ARGV[8]) - 1)
redis.call('DEL', KEYS[5])
redis.call('HSET', KEYS[5], 'status', 'pending', 'queue', ARGV[4], 'priority', ARGV[5],
  'processor', ARGV[6], 'enqueued_at', ARGV[7], 'attempts', 0)
if KEYS[8] and not redis.call('SET', KEYS[8], ARGV[9], 'NX') then
  -- Already ours (kept from before it ended, with a TTL): it must not expire under the item.
  if redis.call('GET', KEYS[8]) == ARGV[9] then redis.call('PERSIST', KEYS[8]) end
end
return 1
