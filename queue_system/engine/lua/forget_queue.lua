-- forget_queue: remove one queue name from the registry, only if nothing of it is left anywhere.
-- KEYS[1] registry SET      KEYS[2] queue activity HASH   KEYS[3] inflight HASH
-- KEYS[4] delayed ZSET      KEYS[5..7] the queue's waiting LISTs (high, normal, low)
-- KEYS[8] scheduled counts HASH (list key -> items in the scheduled ZSET; counted as scheduled)
-- ARGV[1] queue name
-- Returns {known, waiting, in_flight, scheduled, forgotten}: known 0 = not in the registry
--   (nothing done); forgotten 1 = the name was removed (then the three counts are 0).
-- One step with the checks, so an item cannot slip in between: an enqueue re-registers the
-- name atomically with its push. Reads every in-flight and scheduled entry
-- ("<list key>\n<item>"): O(in flight + scheduled).
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then
  return {0, 0, 0, 0, 0}
end
local waiting = 0
local own = {}
for i = 5, 7 do
  waiting = waiting + redis.call('LLEN', KEYS[i])
  own[KEYS[i]] = true
end
local function owner(entry)
  local cut = string.find(entry, '\n', 1, true)
  return cut and string.sub(entry, 1, cut - 1) or entry
end
local in_flight = 0
local entries = redis.call('HVALS', KEYS[3])
for i = 1, #entries do
  if own[owner(entries[i])] then in_flight = in_flight + 1 end
end
local scheduled = 0
entries = redis.call('ZRANGE', KEYS[4], 0, -1)
for i = 1, #entries do
  if own[owner(entries[i])] then scheduled = scheduled + 1 end
end
for i = 5, 7 do
  scheduled = scheduled + (tonumber(redis.call('HGET', KEYS[8], KEYS[i])) or 0)
end
if waiting + in_flight + scheduled > 0 then
  return {1, waiting, in_flight, scheduled, 0}
end
redis.call('SREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return {1, 0, 0, 0, 1}
