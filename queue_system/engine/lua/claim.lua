-- claim: pop up to N items, highest priority first, and lease each to the caller, atomically.
-- KEYS[1] inflight HASH (token -> "<list key>\n<item>")   KEYS[2] leases ZSET (token -> deadline)
-- KEYS[3] started SET   KEYS[4] lease sequence STRING   KEYS[5] this call's receipt STRING
-- KEYS[6] ready SET (the index of non-empty waiting lists)
-- KEYS[7..] waiting lists in claim order (all high, then all normal, then all low)
-- ARGV[1] lease length (ms)   ARGV[2] max items N (any size)   ARGV[3] worker id
-- ARGV[4] K: how many of the first items start at once (marked started, see start.lua)
-- ARGV[5] status record key prefix (queue:op:)
-- ARGV[6] "1": remove each list found empty from the ready index (the caller chose the lists
--         from that index); "0": leave the index alone (the caller passed every list)
-- ARGV[7..] lease tokens of items this worker starts now: marked as start.lua does (they ride
--           along with the claim: one round trip)
-- Returns: {m, token1, list key1, item1, token2, ...}: the first m items are marked started
--          ({0} when nothing is waiting).
-- Safe to re-send: a call that leased items records "<first number> <count> <m>" under its
-- receipt (the caller's call id, TTL one lease), and a re-run of that call answers from it
-- (items rebuilt from inflight; one whose lease has since ended is left out) without popping
-- more. Tokens are "<worker id>:<n>" with n from the lease sequence: never reused, in claim order.
-- The lease deadline uses the server's own TIME so every host agrees when a lease expires.
-- Each item's status record becomes "processing" without a TTL (it lives as long as its item);
-- its id is read from the envelope's fixed opening (junk without it has no record). The record
-- key is built from ARGV[5]: in a cluster layout every key of one prefix shares a hash tag.
-- Writes go in chunks of at most CHUNK arguments (Lua's unpack() has a limit near 8000).
local CHUNK = 1000
local worker = ARGV[3]

local function token_of(n)
  return worker .. ':' .. string.format('%d', n)
end

for i = 7, #ARGV do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then
    redis.call('SADD', KEYS[3], ARGV[i])
  end
end

local receipt = redis.call('GET', KEYS[5])
if receipt then
  local first, count, marked = string.match(receipt, '^(%d+) (%d+) (%d+)$')
  first, count, marked = tonumber(first), tonumber(count), tonumber(marked)
  local out = {0}
  for i = 1, count do
    local token = token_of(first + i)
    local value = redis.call('HGET', KEYS[1], token)
    if value then
      local cut = string.find(value, '\n', 1, true)
      out[#out + 1] = token
      out[#out + 1] = string.sub(value, 1, cut - 1)
      out[#out + 1] = string.sub(value, cut + 1)
      if i <= marked then out[1] = out[1] + 1 end
    end
  end
  return out
end

local want = tonumber(ARGV[2])
local prune = ARGV[6] == '1'
local lists, items = {}, {}
for k = 7, #KEYS do
  if want <= 0 then break end
  local popped = redis.call('RPOP', KEYS[k], want)
  -- Only a list seen empty leaves the index; every push adds it back in the same script.
  if prune and (not popped or #popped < want or redis.call('LLEN', KEYS[k]) == 0) then
    redis.call('SREM', KEYS[6], KEYS[k])
  end
  if popped then
    for _, item in ipairs(popped) do
      lists[#lists + 1] = KEYS[k]
      items[#items + 1] = item
    end
    want = want - #popped
  end
end
local n = #items
if n == 0 then
  return {0}
end

local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local deadline = now_ms + tonumber(ARGV[1])
local started_at = string.format('%.3f', now_ms / 1000)
local first = redis.call('INCRBY', KEYS[4], n) - n
local marked = math.max(0, math.min(tonumber(ARGV[4]), n))
local out = {marked}
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
redis.call('SET', KEYS[5], string.format('%d %d %d', first, n, marked), 'PX',
  math.max(tonumber(ARGV[1]), 1000))
return out
