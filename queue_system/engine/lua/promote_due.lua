-- promote_due: move delayed items whose due time has come back to the tail of their list.
-- KEYS[1] delayed ZSET ("<list key>\n<item>" -> due ms)   KEYS[2] notify LIST
-- KEYS[3] ready SET: each list pushed onto is added (the index of non-empty lists)
-- ARGV[1] now (ms, the caller's clock, so tests can control it)   ARGV[2] max items
-- ARGV[3] notify cap   ARGV[4] status record key prefix (queue:op:): records become "pending",
--         without TTL (the item lives on)
-- Returns: {promoted count, earliest remaining due time in ms or -1, delayed items left}.
-- The list key is read from the member (written by schedule_retry from KeySpace); in a
-- cluster layout every key of one prefix shares a hash tag, so it lives in the same slot.
-- Safe to re-send: a promoted member is no longer in the delayed set.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  local cut = string.find(member, '\n', 1, true)
  local item = string.sub(member, cut + 1)
  local list_key = string.sub(member, 1, cut - 1)
  redis.call('LPUSH', list_key, item)
  redis.call('SADD', KEYS[3], list_key)
  redis.call('ZREM', KEYS[1], member)
  local op_id = string.match(item, '^{"v":1,"id":"([%w_.:%-]+)"')
  if op_id then
    local status = ARGV[4] .. op_id
    redis.call('HSET', status, 'status', 'pending')
    redis.call('PERSIST', status)
  end
end
if #due > 0 then
  local cap = tonumber(ARGV[3])
  local wake = {}
  for j = 1, math.min(#due, cap) do wake[j] = '1' end
  redis.call('LPUSH', KEYS[2], unpack(wake))
  redis.call('LTRIM', KEYS[2], 0, cap - 1)
end
local next_due = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local earliest = -1
if next_due[2] then earliest = tonumber(next_due[2]) end
return {#due, earliest, redis.call('ZCARD', KEYS[1])}
