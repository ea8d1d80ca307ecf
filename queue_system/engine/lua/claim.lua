-- claim: pop up to N items, highest priority first, and lease each to the caller, atomically.
-- KEYS[1] inflight HASH (token -> "<list key>\n<item>")   KEYS[2] leases ZSET (token -> deadline)
-- KEYS[3..] waiting lists in claim order (all high, then all normal, then all low)
-- ARGV[1] lease length (ms)   ARGV[2] max items N   ARGV[3] worker id   ARGV[4] token sequence start
-- ARGV[5] status record key prefix (queue:op:)
-- Returns: a flat list token1, list key1, item1, token2, ... (empty when nothing is waiting).
-- The lease deadline uses the server's own TIME so every host agrees when a lease expires.
-- Each item's status record becomes "processing"; its id is read from the envelope's fixed
-- opening {"v":1,"id":"..." (junk without it has no record). The record key is built from
-- ARGV[5]: in a cluster layout every key of one prefix shares a hash tag (same slot).
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local deadline = now_ms + tonumber(ARGV[1])
local started = string.format('%.3f', now_ms / 1000)
local want = tonumber(ARGV[2])
local seq = tonumber(ARGV[4])
local out = {}
local fields = {}
local scores = {}
for k = 3, #KEYS do
  if want <= 0 then break end
  local items = redis.call('RPOP', KEYS[k], want)
  if items then
    for _, item in ipairs(items) do
      seq = seq + 1
      local token = ARGV[3] .. ':' .. seq
      fields[#fields + 1] = token
      fields[#fields + 1] = KEYS[k] .. '\n' .. item
      scores[#scores + 1] = deadline
      scores[#scores + 1] = token
      out[#out + 1] = token
      out[#out + 1] = KEYS[k]
      out[#out + 1] = item
      local op_id = string.match(item, '^{"v":1,"id":"([%w_.:%-]+)"')
      if op_id then
        redis.call('HSET', ARGV[5] .. op_id, 'status', 'processing', 'started_at', started,
          'worker', ARGV[3])
      end
    end
    want = want - #items
  end
end
if #fields > 0 then
  redis.call('HSET', KEYS[1], unpack(fields))
  redis.call('ZADD', KEYS[2], unpack(scores))
end
return out
