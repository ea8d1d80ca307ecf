-- wake_waiters(done_key, waiters, ttl): one wake-up token on an operation's done LIST per
-- wait_for caller its record counts ("waiters", from wait_register.lua; at most 1,000), with
-- the record's TTL. The caller removes the record's "waiters" field itself.
local function wake_waiters(done_key, waiters, ttl)
  local n = math.min(tonumber(waiters) or 0, 1000)
  if n <= 0 then return end
  local wake = {}
  for j = 1, n do wake[j] = '1' end
  redis.call('LPUSH', done_key, unpack(wake))
  redis.call('EXPIRE', done_key, ttl)
end
