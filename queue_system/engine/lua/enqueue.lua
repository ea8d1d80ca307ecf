-- enqueue: push N items onto one waiting list, with optional deduplication, in one step.
-- KEYS[1] registry SET      KEYS[2] notify LIST     KEYS[3] metrics HASH
-- KEYS[4] waiting LIST (queue:{priority}:{name})
-- KEYS[5..4+N] the status HASH (queue:op:{id}) of each item, in item order
-- KEYS[5+N..] the dedup STRING key of each item that has one, in item order
-- ARGV[1] queue name        ARGV[2] max queues in the registry   ARGV[3] notify cap
-- ARGV[4] TTL (s) of dedup keys, counters and status records    ARGV[5] item count N
-- ARGV[6] priority          ARGV[7] processor name               ARGV[8] now (s)
-- ARGV[9..] per item, 3 values: operation id, encoded item, flags: 2 characters, "1"/"0" for
--           "has a dedup key" and "the caller chose the id" (then an old record is cleared)
-- Returns: a list of N strings: "" when the item was queued, else the operation id of the
--          earlier item holding its dedup key (nothing was written for that item).
-- Error "QS_TOO_MANY_QUEUES" when the queue is new and the registry is full (nothing written).
local n = tonumber(ARGV[5])
local known = redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1
if not known and redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return redis.error_reply('QS_TOO_MANY_QUEUES')
end
local ttl = tonumber(ARGV[4])
local out = {}
local queued = 0
local was_empty = false
local dedup_index = 5 + n
for i = 0, n - 1 do
  local op_id, item, flags = ARGV[9 + 3 * i], ARGV[10 + 3 * i], ARGV[11 + 3 * i]
  local holder = false
  if string.sub(flags, 1, 1) == '1' then
    local key = KEYS[dedup_index]
    dedup_index = dedup_index + 1
    if not redis.call('SET', key, op_id, 'NX', 'EX', ttl) then
      holder = redis.call('GET', key)
    end
  end
  if holder then
    out[i + 1] = holder
  else
    if redis.call('LPUSH', KEYS[4], item) == 1 then was_empty = true end
    local status = KEYS[5 + i]
    if string.sub(flags, 2, 2) == '1' then redis.call('DEL', status) end
    redis.call('HSET', status, 'status', 'pending', 'queue', ARGV[1], 'priority', ARGV[6],
      'processor', ARGV[7], 'enqueued_at', ARGV[8], 'attempts', 0)
    redis.call('EXPIRE', status, ttl)
    queued = queued + 1
    out[i + 1] = ''
  end
end
if queued > 0 then
  if not known then redis.call('SADD', KEYS[1], ARGV[1]) end
  redis.call('HINCRBY', KEYS[3], 'enqueued', queued)
  redis.call('EXPIRE', KEYS[3], ttl)
end
-- Wake idle workers only when the list was empty: otherwise workers are busy with it or
-- were already woken for it (an idle worker also re-checks every second by itself).
if was_empty then
  local cap = tonumber(ARGV[3])
  local wake = {}
  for j = 1, math.min(queued, cap) do wake[j] = '1' end
  redis.call('LPUSH', KEYS[2], unpack(wake))
  redis.call('LTRIM', KEYS[2], 0, cap - 1)
end
return out
