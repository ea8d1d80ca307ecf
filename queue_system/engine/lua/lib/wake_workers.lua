-- wake_workers(notify_key, n, cap): n wake-up tokens (at most cap) on the notify LIST that
-- idle workers block on; the LIST is trimmed to cap, so it never grows without bound.
local function wake_workers(notify_key, n, cap)
  local wake = {}
  for j = 1, math.min(n, cap) do wake[j] = '1' end
  redis.call('LPUSH', notify_key, unpack(wake))
  redis.call('LTRIM', notify_key, 0, cap - 1)
end
