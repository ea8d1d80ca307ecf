-- claim: pop up to N items, highest priority first, and lease each to the caller, atomically.
-- KEYS[1] inflight HASH (token -> "<list key>\n<item>")   KEYS[2] leases ZSET (token -> deadline)
-- KEYS[3] started SET   KEYS[4] lease sequence STRING   KEYS[5] this call's receipt STRING
-- KEYS[6] ready SET (the index of non-empty waiting lists)
-- KEYS[7] limits HASH (queue name -> "<max concurrency> <rate count> <rate window ms> <source>")
-- KEYS[8] paused SET (waiting-list keys not to claim from)
-- KEYS[9..] per waiting list, in claim order (all high, then all normal, then all low), three
--           keys: the waiting list, its queue's limit:running SET, its queue's limit:starts ZSET
-- ARGV[1] lease length (ms)   ARGV[2] max items N (any size)   ARGV[3] worker id
-- ARGV[4] K: how many of the first items start at once (marked started, see start.lua)
-- ARGV[5] status record key prefix (queue:op:)
-- ARGV[6] "1": remove each list found empty from the ready index (the caller chose the lists
--         from that index); "0": leave the index alone (the caller passed every list)
-- ARGV[7] L: how many waiting lists   ARGV[8..7+L] the queue name of each waiting list
-- ARGV[8+L..] lease tokens of items this worker starts now: marked as start.lua does (they
--             ride along with the claim: one round trip)
-- Returns: {m, wait, token1, list key1, item1, token2, ...}: the first m items are marked
--          started ({0, wait} when nothing was claimed). wait: -1 when no list was held back by
--          a limit; else ms until a rate window frees room (0: a concurrency cap holds items
--          back, and a slot frees when an item finishes: the caller polls).
-- Limits: a paused list is skipped. A limited queue's list gives at most what its limits allow,
--   popped from its head (the rest stay waiting in order, untouched); the claim then moves on
--   to the next lists. max_concurrency counts the tokens in limit:running whose lease is still
--   in leases with a deadline not yet passed (a crashed worker's slots free when its lease
--   ends); stale tokens are pruned only when the count reaches the cap. rate_limit is a sliding
--   window log: limit:starts holds each claim's token scored by its claim time; entries older
--   than the window are dropped, and count + new claims never exceed the rate, so no window of
--   that length ever holds more claims. Both use the server's TIME, like the lease deadline.
-- Safe to re-send: a call that leased items records "<first number> <count> <m>" under its
-- receipt (the caller's call id, TTL one lease), and a re-run of that call answers from it
-- (items rebuilt from inflight; one whose lease has since ended is left out) without popping
-- more (nor counting its claims against a limit again). Tokens are "<worker id>:<n>" with n
-- from the lease sequence: never reused, in claim order.
-- The lease deadline uses the server's own TIME so every host agrees when a lease expires.
-- Each item's status record becomes "processing" without a TTL (it lives as long as its item);
-- its id is read from the envelope's fixed opening (junk without it has no record). The record
-- key is built from ARGV[5]: in a cluster layout every key of one prefix shares a hash tag.
-- Writes go in chunks of at most CHUNK arguments (Lua's unpack() has a limit near 8000).
--#include answer_leased
local CHUNK = 1000
local worker = ARGV[3]

local function token_of(n)
  return worker .. ':' .. string.format('%d', n)
end

local n_lists = tonumber(ARGV[7])
for i = 8 + n_lists, #ARGV do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then
    redis.call('SADD', KEYS[3], ARGV[i])
  end
end

local receipt = redis.call('GET', KEYS[5])
if receipt then
  local first, count, marked = string.match(receipt, '^(%d+) (%d+) (%d+)$')
  first, count, marked = tonumber(first), tonumber(count), tonumber(marked)
  local out = {0, -1}
  for i = 1, count do
    if answer_leased(out, KEYS[1], token_of(first + i)) and i <= marked then
      out[1] = out[1] + 1
    end
  end
  return out
end

local want = tonumber(ARGV[2])
local prune = ARGV[6] == '1'
local any_paused = redis.call('SCARD', KEYS[8]) > 0
local any_limits = redis.call('HLEN', KEYS[7]) > 0
local lists, items, running_of, starts_of, rate_windows = {}, {}, {}, {}, {}
local now_ms = nil
local wait = -1

local function server_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function held(ms)
  if wait < 0 or ms < wait then wait = ms end
end

local limits_of = {}
local function limits(name)
  local found = limits_of[name]
  if found == nil then
    found = false
    local raw = redis.call('HGET', KEYS[7], name)
    if raw then
      local cap, count, window = string.match(raw, '^(%d+) (%d+) (%d+) ')
      if cap then
        found = {cap = tonumber(cap), count = tonumber(count), window = tonumber(window)}
        if found.count == 0 or found.window == 0 then found.count = 0 end
        if found.cap == 0 and found.count == 0 then found = false end
      end
    end
    limits_of[name] = found
  end
  return found
end

-- Claims this call made so far per limit key (a queue's tiers share its limits).
local taken = {}

-- Live slots of a capped queue: tokens whose lease still stands (others are removed).
local function live_slots(running)
  for _, token in ipairs(redis.call('SMEMBERS', running)) do
    local deadline = redis.call('ZSCORE', KEYS[2], token)
    if not deadline or tonumber(deadline) < now_ms then
      redis.call('SREM', running, token)
    end
  end
  return redis.call('SCARD', running)
end

-- How many of `take` items the limits `lim` allow now, and the wait to report when fewer.
local function allowed(lim, take, running, starts)
  now_ms = now_ms or server_ms()
  local wait_ms = -1
  if lim.cap > 0 then
    local used = redis.call('SCARD', running) + (taken[running] or 0)
    if used + take > lim.cap then used = live_slots(running) + (taken[running] or 0) end
    if used + take > lim.cap then
      take = math.max(0, lim.cap - used)
      wait_ms = 0
    end
  end
  if lim.count > 0 and take > 0 then
    if not taken[starts] then
      redis.call('ZREMRANGEBYSCORE', starts, '-inf', now_ms - lim.window)
    end
    local used = redis.call('ZCARD', starts) + (taken[starts] or 0)
    if used + take > lim.count then
      take = math.max(0, lim.count - used)
      local oldest = redis.call('ZRANGE', starts, 0, 0, 'WITHSCORES')
      local frees = oldest[2] and (tonumber(oldest[2]) + lim.window - now_ms + 1) or 1
      if wait_ms < 0 then wait_ms = math.max(1, frees) end
    end
  end
  return take, wait_ms
end

for j = 1, n_lists do
  if want <= 0 then break end
  local base = 9 + (j - 1) * 3
  local list, running, starts = KEYS[base], KEYS[base + 1], KEYS[base + 2]
  local take, wait_ms = want, -1
  local lim = false
  if any_paused and redis.call('SISMEMBER', KEYS[8], list) == 1 then
    take = 0
  elseif any_limits then
    lim = limits(ARGV[7 + j])
    if lim then
      take, wait_ms = allowed(lim, take, running, starts)
      if lim.cap == 0 then running = false end
      if lim.count == 0 then starts = false end
    end
  end
  if take > 0 then
    local popped = redis.call('RPOP', list, take)
    -- Only a list seen empty leaves the index; every push adds it back in the same script.
    if prune and (not popped or #popped < take or redis.call('LLEN', list) == 0) then
      redis.call('SREM', KEYS[6], list)
    end
    if popped then
      for _, item in ipairs(popped) do
        lists[#lists + 1] = list
        items[#items + 1] = item
        running_of[#items] = lim and running
        starts_of[#items] = lim and starts
      end
      want = want - #popped
      if lim and running then taken[running] = (taken[running] or 0) + #popped end
      if lim and starts then
        taken[starts] = (taken[starts] or 0) + #popped
        rate_windows[starts] = lim.window
      end
    end
  end
  -- Held back by a limit: report when to look again, unless nothing is left waiting there.
  if wait_ms >= 0 and want > 0 and redis.call('LLEN', list) > 0 then
    held(wait_ms)
  end
end

local n = #items
if n == 0 then
  return {0, wait}
end

now_ms = now_ms or server_ms()
local deadline = now_ms + tonumber(ARGV[1])
local started_at = string.format('%.3f', now_ms / 1000)
local first = redis.call('INCRBY', KEYS[4], n) - n
local marked = math.max(0, math.min(tonumber(ARGV[4]), n))
local out = {marked, wait}
local fields, scores, starts = {}, {}, {}
local function flush(command, key, args)
  if #args > 0 then
    redis.call(command, key, unpack(args))
  end
  return {}
end
for i = 1, n do
  local token = token_of(first + i)
  local item = items[i]
  fields[#fields + 1] = token
  fields[#fields + 1] = lists[i] .. '\n' .. item
  scores[#scores + 1] = deadline
  scores[#scores + 1] = token
  if i <= marked then starts[#starts + 1] = token end
  if #fields >= CHUNK then fields = flush('HSET', KEYS[1], fields) end
  if #scores >= CHUNK then scores = flush('ZADD', KEYS[2], scores) end
  if #starts >= CHUNK then starts = flush('SADD', KEYS[3], starts) end
  out[#out + 1] = token
  out[#out + 1] = lists[i]
  out[#out + 1] = item
  if running_of[i] then redis.call('SADD', running_of[i], token) end
  if starts_of[i] then redis.call('ZADD', starts_of[i], now_ms, token) end
  local op_id = string.match(item, '^{"v":1,"id":"([%w_.:%-]+)"')
  if op_id then
    local status = ARGV[5] .. op_id
    redis.call('HSET', status, 'status', 'processing', 'started_at', started_at, 'worker', worker)
    redis.call('PERSIST', status)
  end
end
flush('HSET', KEYS[1], fields)
flush('ZADD', KEYS[2], scores)
flush('SADD', KEYS[3], starts)
for key, window in pairs(rate_windows) do
  redis.call('PEXPIRE', key, window)
end
redis.call('SET', KEYS[5], string.format('%d %d %d', first, n, marked), 'PX',
  math.max(tonumber(ARGV[1]), 1000))
return out
