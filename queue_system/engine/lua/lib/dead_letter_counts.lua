-- Dead letters per queue, kept in the metrics HASH as "dead:<kind>:<queue>" (kind "failed" or
-- "system_errors"; queue read from the record's first "queue" field, "" when it has none), so
-- that health reads counts instead of every record (ops/health.py recounts when they drift).
local function dead_letter_field(kind, record)
  return 'dead:' .. kind .. ':' .. (string.match(record, '"queue":%s*"([%w_.%-]+)"') or '')
end

-- push_dead_letter(list, metrics, kind, record, cap, ttl): LPUSH one record, count it, and
-- trim the list to cap records (uncounting the ones trimmed); the list gets ttl.
local function push_dead_letter(list, metrics, kind, record, cap, ttl)
  redis.call('LPUSH', list, record)
  redis.call('HINCRBY', metrics, dead_letter_field(kind, record), 1)
  for _, trimmed in ipairs(redis.call('LRANGE', list, tonumber(cap), -1)) do
    redis.call('HINCRBY', metrics, dead_letter_field(kind, trimmed), -1)
  end
  redis.call('LTRIM', list, 0, tonumber(cap) - 1)
  redis.call('EXPIRE', list, ttl)
end
