-- recover: return items whose lease expired (their worker died or froze) to their lists.
-- KEYS[1] inflight HASH   KEYS[2] leases ZSET   KEYS[3] redeliveries HASH   KEYS[4] notify LIST
-- ARGV[1] max items   ARGV[2] max lease expiries per item   ARGV[3] redeliveries TTL (s)
-- ARGV[4] lease length (ms)   ARGV[5] caller's worker id   ARGV[6] token sequence start
-- ARGV[7] notify cap   ARGV[8] status record key prefix (queue:op:): requeued ones "pending"
-- Returns: {requeued count, leases in flight, then per crash-looping item 4 values: new token,
--          list key, item, expiry count}. An item whose lease has expired ARGV[2] times is not
--          requeued: it is leased to the caller, who must dead-letter it (system_errors).
-- Uses the server's TIME, like claim, so a fast client clock cannot reclaim a live lease.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local out = {0, 0}
local requeued = 0
local seq = tonumber(ARGV[6])
for _, token in ipairs(expired) do
  local value = redis.call('HGET', KEYS[1], token)
  redis.call('ZREM', KEYS[2], token)
  redis.call('HDEL', KEYS[1], token)
  if value then
    local cut = string.find(value, '\n', 1, true)
    local list_key, item = string.sub(value, 1, cut - 1), string.sub(value, cut + 1)
    local digest = redis.sha1hex(item)
    local expiries = redis.call('HINCRBY', KEYS[3], digest, 1)
    redis.call('EXPIRE', KEYS[3], ARGV[3])
    if expiries >= tonumber(ARGV[2]) then
      redis.call('HDEL', KEYS[3], digest)
      seq = seq + 1
      local new_token = ARGV[5] .. ':' .. seq
      redis.call('HSET', KEYS[1], new_token, value)
      redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), new_token)
      out[#out + 1] = new_token
      out[#out + 1] = list_key
      out[#out + 1] = item
      out[#out + 1] = expiries
    else
      -- Back at the head of its tier: it was taken before everything still waiting there.
      redis.call('RPUSH', list_key, item)
      requeued = requeued + 1
      local op_id = string.match(item, '^{"v":1,"id":"([%w_.:%-]+)"')
      if op_id then redis.call('HSET', ARGV[8] .. op_id, 'status', 'pending') end
    end
  end
end
if requeued > 0 then
  redis.call('LPUSH', KEYS[4], '1')
  redis.call('LTRIM', KEYS[4], 0, tonumber(ARGV[7]) - 1)
end
out[1] = requeued
out[2] = redis.call('ZCARD', KEYS[2])
return out
