-- enqueue: push N items onto one waiting list, with deduplication, in one step; safe to re-send.
-- KEYS[1] registry SET      KEYS[2] notify LIST     KEYS[3] metrics HASH
-- KEYS[4] waiting LIST (queue:{priority}:{name})   KEYS[5] ready SET (index of non-empty lists)
-- KEYS[6..5+N] the status HASH (queue:op:{id}) of each item, in item order
-- KEYS[6+N..] the dedup STRING key of each item that has one, in item order
-- ARGV[1] queue name        ARGV[2] max queues in the registry   ARGV[3] notify cap
-- ARGV[4] TTL (s) of the metrics counters                        ARGV[5] item count N
-- ARGV[6] priority          ARGV[7] processor name               ARGV[8] now (s)
-- ARGV[9] nonce of this call: random, built once per call, the same when the call is re-sent
-- ARGV[10..9+3N] per item, 3 values: operation id, encoded item, "1"/"0" (has a dedup key)
-- ARGV[10+3N] (optional) when the items are due: absent or "" = now (pushed onto KEYS[4]);
--   "+<ms>" = that long after the server's TIME (read here: one clock for every producer);
--   "=<ms>" = at that epoch time (ms). Due items go to the scheduled ZSET instead, member
--   "<KEYS[4]>\n<item>", status "scheduled" with next_run_at; promote_due.lua moves them
--   onto KEYS[4] by the server's TIME. The items of one call are spaced 1 microsecond apart
--   (in item order), so promotion keeps their order.
-- KEYS[#KEYS-1] scheduled ZSET and KEYS[#KEYS] scheduled counts HASH (list key -> members),
--   only when ARGV[10+3N] is given and not "".
-- Returns: a flat list of 2 strings per item. "", "" = queued (now, or by an earlier run of
--   this same call whose reply was lost: its status record carries this call's nonce, and
--   nothing is written again). Else nothing was written for the item, and the pair is the
--   operation id it duplicates and, when known, that operation's status ("" otherwise):
--   * its own operation id, when a status record of that id exists (an earlier enqueue, or an
--     earlier item of this batch, with the same caller-chosen id: an idempotency key);
--   * the operation id holding its dedup key, status "".
-- Counters (KEYS[3], TTL ARGV[4]): "enqueued" and "enqueued:<queue>:<priority>" (ARGV[1],
--   ARGV[6]) each grow by the items this run stored: a re-sent call stores and counts nothing.
-- Error "QS_TOO_MANY_QUEUES" when the queue is new and the registry is full (nothing written).
-- Status records and dedup keys get no TTL: they live as long as their item (the scripts that
-- end an item give them one), so a dedup key cannot expire under a waiting item.
-- A push adds the list to the ready index in the same step: a claim that reads the index
-- never misses it.
--#include wake_workers
local n = tonumber(ARGV[5])
local known = redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1
if not known and redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return redis.error_reply('QS_TOO_MANY_QUEUES')
end
local nonce = ARGV[9]
local due_spec = ARGV[10 + 3 * n] or ''
local due_ms, scheduled_set, scheduled_counts = false, false, false
if due_spec ~= '' then
  scheduled_set, scheduled_counts = KEYS[#KEYS - 1], KEYS[#KEYS]
  if string.sub(due_spec, 1, 1) == '+' then
    local t = redis.call('TIME')
    due_ms = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000 + tonumber(string.sub(due_spec, 2))
  else
    due_ms = tonumber(string.sub(due_spec, 2))
  end
end
local scheduled = 0
local out = {}
local seen = {}  -- operation ids stored (or found stored by this call) so far in this run
local queued = 0
local was_empty = false
local dedup_index = 6 + n
for i = 0, n - 1 do
  local op_id, item = ARGV[10 + 3 * i], ARGV[11 + 3 * i]
  local dedup = false
  if ARGV[12 + 3 * i] == '1' then
    dedup = KEYS[dedup_index]
    dedup_index = dedup_index + 1
  end
  local status = KEYS[6 + i]
  local record = redis.call('HMGET', status, 'nonce', 'status')
  local holder, holder_status = false, ''
  if seen[op_id] then
    holder, holder_status = op_id, record[2] or ''
  elseif record[1] == nonce then
    seen[op_id] = true  -- stored by an earlier run of this very call
  elseif record[2] then
    holder, holder_status = op_id, record[2]
  elseif dedup and not redis.call('SET', dedup, op_id, 'NX') then
    holder = redis.call('GET', dedup)
  elseif due_ms then
    local score = due_ms + scheduled / 1000
    redis.call('ZADD', scheduled_set, score, KEYS[4] .. '\n' .. item)
    redis.call('HSET', status, 'status', 'scheduled', 'queue', ARGV[1], 'priority', ARGV[6],
      'processor', ARGV[7], 'enqueued_at', ARGV[8], 'attempts', 0, 'nonce', nonce,
      'next_run_at', string.format('%.3f', score / 1000))
    seen[op_id] = true
    queued = queued + 1
    scheduled = scheduled + 1
  else
    if redis.call('LPUSH', KEYS[4], item) == 1 then was_empty = true end
    redis.call('HSET', status, 'status', 'pending', 'queue', ARGV[1], 'priority', ARGV[6],
      'processor', ARGV[7], 'enqueued_at', ARGV[8], 'attempts', 0, 'nonce', nonce)
    seen[op_id] = true
    queued = queued + 1
  end
  out[2 * i + 1] = holder or ''
  out[2 * i + 2] = holder_status
end
if queued > 0 then
  if not known then redis.call('SADD', KEYS[1], ARGV[1]) end
  if scheduled < queued then redis.call('SADD', KEYS[5], KEYS[4]) end
  if scheduled > 0 then redis.call('HINCRBY', scheduled_counts, KEYS[4], scheduled) end
  redis.call('HINCRBY', KEYS[3], 'enqueued', queued)
  redis.call('HINCRBY', KEYS[3], 'enqueued:' .. ARGV[1] .. ':' .. ARGV[6], queued)
  redis.call('EXPIRE', KEYS[3], ARGV[4])
end
-- Wake idle workers only when the list was empty: otherwise workers are busy with it or
-- were already woken for it (an idle worker also re-checks every second by itself).
if was_empty then wake_workers(KEYS[2], queued, tonumber(ARGV[3])) end
return out
