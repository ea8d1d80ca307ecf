-- renew: extend the leases the caller still holds (heartbeat while jobs run).
-- KEYS[1] inflight HASH   KEYS[2] leases ZSET
-- ARGV[1] lease length (ms)   ARGV[2..] tokens
-- Returns: a list with 1 per token still held (extended), 0 per token lost to recovery.
local t = redis.call('TIME')
local deadline = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
local out = {}
for i = 2, #ARGV do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then
    redis.call('ZADD', KEYS[2], deadline, ARGV[i])
    out[i - 1] = 1
  else
    out[i - 1] = 0
  end
end
return out
