-- enqueue: push N items onto one waiting list, with optional deduplication, in one step.
-- KEYS[1] registry SET      KEYS[2] notify LIST     KEYS[3] metrics HASH
-- KEYS[4] waiting LIST (queue:{priority}:{name})
-- KEYS[5..] the dedup STRING key of each item that has one, in item order
-- ARGV[1] queue name        ARGV[2] max queues in the registry   ARGV[3] notify cap
-- ARGV[4] dedup/metrics TTL (s)   ARGV[5] item count N
-- ARGV[6..] per item, 3 values: operation id, encoded item, has dedup key (1/0)
-- Returns: a list of N strings: "" when the item was queued, else the operation id of the
--          earlier item holding its dedup key (nothing was written for that item).
-- Error "QS_TOO_MANY_QUEUES" when the queue is new and the registry is full (nothing written).
local n = tonumber(ARGV[5])
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0
    and redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return redis.error_reply('QS_TOO_MANY_QUEUES')
end
local ttl = tonumber(ARGV[4])
local out = {}
local queued = 0
local dedup_index = 5
for i = 0, n - 1 do
  local op_id, item, has_dedup = ARGV[6 + 3 * i], ARGV[7 + 3 * i], ARGV[8 + 3 * i]
  local holder = false
  if has_dedup == '1' then
    local key = KEYS[dedup_index]
    dedup_index = dedup_index + 1
    if not redis.call('SET', key, op_id, 'NX', 'EX', ttl) then
      holder = redis.call('GET', key)
    end
  end
  if holder then
    out[i + 1] = holder
  else
    redis.call('LPUSH', KEYS[4], item)
    queued = queued + 1
    out[i + 1] = ''
  end
end
if queued > 0 then
  redis.call('SADD', KEYS[1], ARGV[1])
  redis.call('HINCRBY', KEYS[3], 'enqueued', queued)
  redis.call('EXPIRE', KEYS[3], ttl)
  local cap = tonumber(ARGV[3])
  local wake = {}
  for j = 1, math.min(queued, cap) do wake[j] = '1' end
  redis.call('LPUSH', KEYS[2], unpack(wake))
  redis.call('LTRIM', KEYS[2], 0, cap - 1)
end
return out
