-- release: give leased items back at once (worker stopping), at the head of their tier.
-- KEYS[1] inflight HASH   KEYS[2] leases ZSET   KEYS[3] notify LIST   KEYS[4] started SET
-- KEYS[5] ready SET: each list an item goes back to is added (the index of non-empty lists)
-- ARGV[1] notify cap   ARGV[2] status record key prefix (queue:op:): records become "pending"
--         (without TTL: the item lives on)
-- ARGV[3..] tokens in the order they were claimed
-- Returns: the number of items put back (tokens whose lease was lost are skipped).
-- Walks the tokens backwards so the earliest claimed item ends up first in line again.
-- Safe to re-send: a token already released is no longer held, and is skipped.
-- A released item never counts toward the crash-loop guard, even if it had started.
--#include mark_pending
--#include wake_workers
local released = 0
for i = #ARGV, 3, -1 do
  local value = redis.call('HGET', KEYS[1], ARGV[i])
  if value then
    redis.call('HDEL', KEYS[1], ARGV[i])
    redis.call('ZREM', KEYS[2], ARGV[i])
    redis.call('SREM', KEYS[4], ARGV[i])
    local cut = string.find(value, '\n', 1, true)
    local item = string.sub(value, cut + 1)
    local list_key = string.sub(value, 1, cut - 1)
    redis.call('RPUSH', list_key, item)
    redis.call('SADD', KEYS[5], list_key)
    released = released + 1
    mark_pending(ARGV[2], string.match(item, '^{"v":1,"id":"([%w_.:%-]+)"'))
  end
end
if released > 0 then wake_workers(KEYS[3], 1, tonumber(ARGV[1])) end
return released
