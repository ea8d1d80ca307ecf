-- release: give leased items back at once (worker stopping), at the head of their tier.
-- KEYS[1] inflight HASH   KEYS[2] leases ZSET   KEYS[3] notify LIST
-- ARGV[1] notify cap   ARGV[2..] tokens in the order they were claimed
-- Returns: the number of items put back (tokens whose lease was lost are skipped).
-- Walks the tokens backwards so the earliest claimed item ends up first in line again.
local released = 0
for i = #ARGV, 2, -1 do
  local value = redis.call('HGET', KEYS[1], ARGV[i])
  if value then
    redis.call('HDEL', KEYS[1], ARGV[i])
    redis.call('ZREM', KEYS[2], ARGV[i])
    local cut = string.find(value, '\n', 1, true)
    redis.call('RPUSH', string.sub(value, 1, cut - 1), string.sub(value, cut + 1))
    released = released + 1
  end
end
if released > 0 then
  redis.call('LPUSH', KEYS[3], '1')
  redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[1]) - 1)
end
return released
