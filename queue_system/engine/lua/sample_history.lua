-- sample_history: append one sample of the shared counters to the dashboard's history, at most
-- one per interval however many dashboard replicas (or scrapes) ask, and keep the list bounded.
-- KEYS[1] history LIST (newest first): "<time s> <enqueued> <processed> <succeeded> <failed>
--         <system_errors>" per sample
-- KEYS[2] metrics HASH: the shared counters (read only)
-- ARGV[1] now (epoch seconds, from the caller's injected clock)
-- ARGV[2] interval (seconds): no sample is taken while the newest is younger than this
-- ARGV[3] cap: most samples kept (LTRIM)
-- Returns: 1 when a sample was appended, 0 when the newest sample is recent enough.
-- Safe to re-send: a re-sent call finds the sample it appended (younger than the interval) and
-- appends nothing. A newest sample from the future (a clock that ran ahead) is replaced, so a
-- clock set back cannot stop sampling for good.
local now = tonumber(ARGV[1])
local newest = redis.call('LINDEX', KEYS[1], 0)
if newest then
  local at = tonumber(string.match(newest, '^(%S+)'))
  if at and at <= now and now - at < tonumber(ARGV[2]) then
    return 0
  end
  if at and at > now then
    redis.call('LPOP', KEYS[1])
  end
end
local c = redis.call('HMGET', KEYS[2], 'enqueued', 'processed', 'succeeded', 'failed',
  'system_errors')
local sample = ARGV[1]
for i = 1, 5 do
  sample = sample .. ' ' .. (c[i] or '0')
end
redis.call('LPUSH', KEYS[1], sample)
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[3]) - 1)
return 1
