-- promote_due: move delayed and scheduled items whose due time has come to the tail of their list.
-- KEYS[1] delayed ZSET ("<list key>\n<item>" -> due ms, the worker's clock: retries, deploy waits)
-- KEYS[2] notify LIST
-- KEYS[3] ready SET: each list pushed onto is added (the index of non-empty lists)
-- KEYS[4] scheduled ZSET ("<list key>\n<item>" -> due ms, Redis TIME: delay= / run_at= items)
-- KEYS[5] scheduled counts HASH (list key -> members of KEYS[4] for that list)
-- ARGV[1] now (ms, the caller's clock): the bound for KEYS[1] only   ARGV[2] max items
-- ARGV[3] notify cap   ARGV[4] status record key prefix (queue:op:): records become "pending",
--         without TTL (the item lives on)
-- Returns: {promoted count, earliest remaining due time in ms or -1 (in the caller's clock:
--   a scheduled due time is shifted by caller now - server now), items left in both sets}.
-- Two clocks, on purpose. Scheduled items are due by the server's TIME, read here: one clock
-- for every host, so a worker whose clock runs ahead cannot promote them early. Retries keep
-- the caller's clock (ARGV[1]) as before: their due time is written by the same kind of
-- caller (schedule_retry, defer: the worker's now + a backoff), so both ends use one clock, and
-- tests move it with an injected clock instead of waiting out real backoffs.
-- Due items enter in due order (ZRANGEBYSCORE is ascending; enqueue.lua spaces the items of
-- one call 1 microsecond apart, so a batch keeps its order). LPUSH onto the list's head, the
-- end fresh items enter by: the same FIFO as a fresh enqueue at its due time.
-- The list key is read from the member (written from KeySpace); in a cluster layout every key
-- of one prefix shares a hash tag, so it lives in the same slot.
-- Safe to re-send: a promoted member is no longer in its set.
--#include mark_pending
--#include wake_workers
local limit = tonumber(ARGV[2])
local t = redis.call('TIME')
local server_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local promoted = 0
local function promote(set, bound, counted)
  local due = redis.call('ZRANGEBYSCORE', set, '-inf', bound, 'LIMIT', 0, limit - promoted)
  for _, member in ipairs(due) do
    local cut = string.find(member, '\n', 1, true)
    local item = string.sub(member, cut + 1)
    local list_key = string.sub(member, 1, cut - 1)
    redis.call('LPUSH', list_key, item)
    redis.call('SADD', KEYS[3], list_key)
    redis.call('ZREM', set, member)
    if counted and redis.call('HINCRBY', KEYS[5], list_key, -1) <= 0 then
      redis.call('HDEL', KEYS[5], list_key)
    end
    mark_pending(ARGV[4], string.match(item, '^{"v":1,"id":"([%w_.:%-]+)"'))
  end
  promoted = promoted + #due
end
promote(KEYS[4], server_ms, true)
if promoted < limit then promote(KEYS[1], ARGV[1], false) end
if promoted > 0 then wake_workers(KEYS[2], promoted, tonumber(ARGV[3])) end
local earliest = -1
local next_due = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if next_due[2] then earliest = tonumber(next_due[2]) end
next_due = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
if next_due[2] then
  local shifted = math.floor(tonumber(next_due[2]) - server_ms + tonumber(ARGV[1]))
  if earliest < 0 or shifted < earliest then earliest = shifted end
end
return {promoted, earliest, redis.call('ZCARD', KEYS[1]) + redis.call('ZCARD', KEYS[4])}
