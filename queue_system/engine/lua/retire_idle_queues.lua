-- retire_idle_queues: note which queues are in use; drop names idle past a TTL and empty.
-- KEYS[1] registry SET      KEYS[2] queue activity HASH   KEYS[3] inflight HASH
-- KEYS[4] delayed ZSET      KEYS[5] metrics HASH
-- KEYS[6..5+3N] the waiting LISTs of each name (high, normal, low), in name order
-- KEYS[6+3N] scheduled counts HASH (list key -> items in the scheduled ZSET): a name with
--   scheduled items is busy (read per list: no scan of the scheduled set)
-- ARGV[1] now (s)           ARGV[2] idle TTL (s)          ARGV[3] name count N
-- ARGV[4..3+N] queue names (names no longer in the registry are skipped)
-- Returns the names removed from the registry.
-- Activity field per name: "<last seen in use (s)> <processed count then>". A name is in use
-- when it has items waiting, when it is first seen, or when its processed counters (metrics
-- fields "processed:<name>:<priority>", bumped by ack/dead_letter) moved since the last
-- pass: an item enqueued and finished between two passes counts. A name idle past the TTL
-- goes only if nothing of it is waiting, in flight or scheduled, checked in this same step
-- (an enqueue re-registers a name atomically with its push). Reads every in-flight and
-- scheduled entry, only when some name is idle: O(in flight + scheduled) then.
local now, ttl, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local priorities = {'high', 'normal', 'low'}
local idle = {}
for i = 1, n do
  local name = ARGV[3 + i]
  if redis.call('SISMEMBER', KEYS[1], name) == 1 then
    local first = 6 + 3 * (i - 1)
    local waiting = 0
    for j = 0, 2 do waiting = waiting + redis.call('LLEN', KEYS[first + j]) end
    local processed = 0
    for _, p in ipairs(priorities) do
      processed = processed + (tonumber(redis.call('HGET', KEYS[5], 'processed:' .. name .. ':' .. p)) or 0)
    end
    local seen = redis.call('HGET', KEYS[2], name)
    local seen_at, seen_processed
    if seen then
      local cut = string.find(seen, ' ', 1, true)
      seen_at, seen_processed = tonumber(string.sub(seen, 1, cut - 1)), tonumber(string.sub(seen, cut + 1))
    end
    if waiting > 0 or not seen or seen_processed ~= processed then
      redis.call('HSET', KEYS[2], name, string.format('%.3f', now) .. ' ' .. processed)
    elseif now - seen_at > ttl then
      idle[#idle + 1] = {name, first}
    end
  end
end
if #idle == 0 then return {} end
local busy = {}
local function mark(entry)
  local cut = string.find(entry, '\n', 1, true)
  busy[cut and string.sub(entry, 1, cut - 1) or entry] = true
end
for _, entry in ipairs(redis.call('HVALS', KEYS[3])) do mark(entry) end
for _, entry in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do mark(entry) end
local removed = {}
for _, candidate in ipairs(idle) do
  local first = candidate[2]
  local scheduled = false
  for j = 0, 2 do
    if redis.call('HEXISTS', KEYS[6 + 3 * n], KEYS[first + j]) == 1 then scheduled = true end
  end
  if not (scheduled or busy[KEYS[first]] or busy[KEYS[first + 1]] or busy[KEYS[first + 2]]) then
    redis.call('SREM', KEYS[1], candidate[1])
    redis.call('HDEL', KEYS[2], candidate[1])
    removed[#removed + 1] = candidate[1]
  end
end
return removed
