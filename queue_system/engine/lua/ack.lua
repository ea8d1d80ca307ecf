-- ack: finish successfully run items whose lease the caller still holds (fencing).
-- KEYS[1] inflight HASH   KEYS[2] leases ZSET   KEYS[3] metrics HASH   KEYS[4] redeliveries HASH
-- KEYS[5] started SET
-- KEYS[6..5+N] the status HASH of each item, in item order
-- KEYS[6+N..5+2N] the done LIST of each item (wakes wait_for callers), in item order
-- KEYS[6+2N..] dedup STRING keys, one per item that has one, in item order
-- KEYS[#KEYS] deps_outbox LIST (always last): an item whose record has "has_dependents" (see
--          enqueue_dependent.lua) is pushed onto it as "<operation id> <status>"
-- ARGV[1] item count N    ARGV[2] metrics TTL (s)   ARGV[3] finished at (s)
-- ARGV[4..3+8N] per item, 8 values: token, operation id, has dedup key (1/0), run time (ms),
--           "<queue>:<priority>" of the item (its per-tier counters: processed, succeeded), wait time (ms), result (JSON), result TTL (s)
-- ARGV[4+8N..] lease tokens of other items that start now: marked as start.lua does (the
--           worker's executors start their next items as they finish these: one round trip)
-- Returns: a list of N integers, 1 = acked, 0 = the lease was lost (another worker owns it:
--          the caller must not fire callbacks), 2 = its cancel was requested meanwhile (the
--          record's "cancel_requested" mark, see cancel.lua): it ends "cancelled", its result
--          is discarded (exactly one of completed / cancelled wins: both are decided here).
-- A record that counts waiters (wait_register.lua) gets one token per waiter on its done
-- LIST; with no waiter nothing more is written (one HMGET per item inside this script).
--          One more integer follows the N: how many items went onto deps_outbox.
-- Safe to re-send: the status record keeps the token that finished it ("lease"), so a re-run
-- whose lease is gone answers 1 for a token that this very ack finished, and still 0 for one
-- that another worker took over. The record gets its TTL (result TTL) here, on every write.
--#include wake_waiters
local n = tonumber(ARGV[1])
local CHUNK = 1000
-- Counter increments are summed per field and written once per batch (server CPU).
local totals, order = {}, {}
local function add(field, amount)
  if not totals[field] then
    totals[field] = 0
    order[#order + 1] = field
  end
  totals[field] = totals[field] + tonumber(amount)
end
local out = {}
local dedup_index = 6 + 2 * n
local cancelled = 0
local acked = 0
local tokens, op_ids = {}, {}
local deps = 0
for i = 0, n - 1 do
  local base = 4 + 8 * i
  local token, op_id, has_dedup = ARGV[base], ARGV[base + 1], ARGV[base + 2]
  local dedup_key = nil
  if has_dedup == '1' then
    dedup_key = KEYS[dedup_index]
    dedup_index = dedup_index + 1
  end
  local status = KEYS[6 + i]
  if redis.call('HDEL', KEYS[1], token) == 1 then
    redis.call('ZREM', KEYS[2], token)
    if dedup_key and redis.call('GET', dedup_key) == op_id then
      redis.call('DEL', dedup_key)
    end
    local qp = ARGV[base + 4]
    add('process_time_ms_total', ARGV[base + 3])
    add('wait_ms_total:' .. qp, ARGV[base + 5])
    add('wait_count:' .. qp, 1)
    add('processed:' .. qp, 1)
    local marks = redis.call('HMGET', status, 'cancel_requested', 'waiters', 'has_dependents')
    if marks[1] then
      redis.call('HSET', status, 'status', 'cancelled', 'finished_at', ARGV[3], 'lease', token)
      cancelled = cancelled + 1
      out[i + 1] = 2
    else
      redis.call('HSET', status, 'status', 'completed', 'finished_at', ARGV[3],
        'result', ARGV[base + 6], 'lease', token)
      acked = acked + 1
      add('succeeded:' .. qp, 1)
      out[i + 1] = 1
    end
    redis.call('EXPIRE', status, ARGV[base + 7])
    if marks[2] then
      wake_waiters(KEYS[6 + n + i], marks[2], ARGV[base + 7])
      redis.call('HDEL', status, 'waiters')
    end
    if marks[3] then
      redis.call('RPUSH', KEYS[#KEYS], op_id .. (marks[1] and ' cancelled' or ' completed'))
      deps = deps + 1
    end
    tokens[#tokens + 1] = token
    op_ids[#op_ids + 1] = op_id
  else
    local record = redis.call('HMGET', status, 'lease', 'status')
    if record[1] == token then
      out[i + 1] = record[2] == 'cancelled' and 2 or 1
    else
      out[i + 1] = 0
    end
  end
end
-- The item ended: its start mark and its redelivery count go with it.
for from = 1, #tokens, CHUNK do
  local to = math.min(from + CHUNK - 1, #tokens)
  redis.call('SREM', KEYS[5], unpack(tokens, from, to))
  redis.call('HDEL', KEYS[4], unpack(op_ids, from, to))
end
for i = 4 + 8 * n, #ARGV do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then
    redis.call('SADD', KEYS[5], ARGV[i])
  end
end
for _, field in ipairs(order) do
  redis.call('HINCRBY', KEYS[3], field, totals[field])
end
if cancelled > 0 then
  redis.call('HINCRBY', KEYS[3], 'cancelled', cancelled)
  redis.call('EXPIRE', KEYS[3], ARGV[2])
end
if acked > 0 then
  redis.call('HINCRBY', KEYS[3], 'processed', acked)
  redis.call('HINCRBY', KEYS[3], 'succeeded', acked)
  redis.call('EXPIRE', KEYS[3], ARGV[2])
end
out[n + 1] = deps
return out
