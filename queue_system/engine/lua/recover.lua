-- recover: return items whose lease expired (their worker died or froze) to their lists.
-- KEYS[1] inflight HASH   KEYS[2] leases ZSET   KEYS[3] redeliveries HASH   KEYS[4] notify LIST
-- KEYS[5] started SET     KEYS[6] lease sequence STRING   KEYS[7] this call's receipt STRING
-- KEYS[8] ready SET: each list an item goes back to is added (the index of non-empty lists)
-- ARGV[1] max items   ARGV[2] max lease expiries per item   ARGV[3] redeliveries TTL (s)
-- ARGV[4] lease length (ms)   ARGV[5] caller's worker id   ARGV[6] notify cap
-- ARGV[7] status record key prefix (queue:op:): requeued ones become "pending", without TTL
-- Returns: {requeued count, leases in flight, then per crash-looping item 4 values: new token,
--          list key, item, expiry count}. An item whose lease has expired ARGV[2] times is not
--          requeued: it is leased to the caller (and marked started, so that the caller's own
--          death counts again), who must dead-letter it (system_errors).
-- Only items that started (see start.lua) count an expiry; the others, prefetched but never
-- run, go back untouched. Counts are kept per operation id (the sha1 of the item when it has
-- none) and removed when the item ends (ack, schedule_retry, dead_letter). The hash gets its
-- TTL when it is created, not on every expiry.
-- Items go back at the head of their tier in claim order (the lease number in the token).
-- Safe to re-send: a call that leased crash loops records them under its receipt (the
-- caller's call id, TTL one lease); a re-run answers them again from inflight.
-- Uses the server's TIME, like claim, so a fast client clock cannot reclaim a live lease.
--#include answer_leased
--#include mark_pending
--#include wake_workers
local worker = ARGV[5]
local function token_of(n)
  return worker .. ':' .. string.format('%d', n)
end
local function crash_loop_answer(out, first, expiries)
  for i, count in ipairs(expiries) do
    if answer_leased(out, KEYS[1], token_of(first + i)) then out[#out + 1] = count end
  end
  return out
end

local receipt = redis.call('GET', KEYS[7])
if receipt then
  local numbers = {}
  for number in string.gmatch(receipt, '%d+') do numbers[#numbers + 1] = tonumber(number) end
  local expiries = {}
  for i = 3, #numbers do expiries[#expiries + 1] = numbers[i] end
  return crash_loop_answer({numbers[1], redis.call('ZCARD', KEYS[2])}, numbers[2], expiries)
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
-- Claim order: by lease number, latest first, so that RPUSH leaves the earliest at the head.
local order = {}
for i, token in ipairs(expired) do
  order[i] = {tonumber(string.match(token, ':(%d+)$')) or 0, token}
end
table.sort(order, function(a, b)
  if a[1] ~= b[1] then return a[1] > b[1] end
  return a[2] > b[2]
end)
local max_expiries = tonumber(ARGV[2])
local requeued, counted = 0, false
local looped, looped_counts = {}, {}
for _, entry in ipairs(order) do
  local token = entry[2]
  local value = redis.call('HGET', KEYS[1], token)
  redis.call('ZREM', KEYS[2], token)
  redis.call('HDEL', KEYS[1], token)
  local started = redis.call('SREM', KEYS[5], token) == 1
  if value then
    local cut = string.find(value, '\n', 1, true)
    local list_key, item = string.sub(value, 1, cut - 1), string.sub(value, cut + 1)
    local op_id = string.match(item, '^{"v":1,"id":"([%w_.:%-]+)"')
    local expiries = 0
    if started then
      expiries = redis.call('HINCRBY', KEYS[3], op_id or redis.sha1hex(item), 1)
      counted = true
    end
    if started and expiries >= max_expiries then
      looped[#looped + 1] = value
      looped_counts[#looped_counts + 1] = expiries
    else
      -- Back at the head of its tier: it was taken before everything still waiting there.
      redis.call('RPUSH', list_key, item)
      redis.call('SADD', KEYS[8], list_key)
      requeued = requeued + 1
      mark_pending(ARGV[7], op_id)
    end
  end
end
if counted and redis.call('TTL', KEYS[3]) == -1 then
  redis.call('EXPIRE', KEYS[3], ARGV[3])
end
if requeued > 0 then wake_workers(KEYS[4], 1, tonumber(ARGV[6])) end
local out = {requeued, 0}
if #looped > 0 then
  -- The field stays in redeliveries until the item is dead-lettered: if this caller dies
  -- first, the next expiry of its (started) lease finds the crash loop again.
  local first = redis.call('INCRBY', KEYS[6], #looped) - #looped
  local deadline = now + tonumber(ARGV[4])
  for i, value in ipairs(looped) do
    local token = token_of(first + i)
    redis.call('HSET', KEYS[1], token, value)
    redis.call('ZADD', KEYS[2], deadline, token)
    redis.call('SADD', KEYS[5], token)
  end
  redis.call('SET', KEYS[7],
    string.format('%d %d ', requeued, first) .. table.concat(looped_counts, ' '),
    'PX', math.max(tonumber(ARGV[4]), 1000))
  crash_loop_answer(out, first, looped_counts)
end
out[2] = redis.call('ZCARD', KEYS[2])
return out
