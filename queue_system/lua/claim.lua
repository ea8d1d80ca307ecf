-- claim: pop up to N items, highest priority first, and lease each to the caller, atomically.
-- KEYS[1] inflight HASH (token -> "<list key>\n<item>")   KEYS[2] leases ZSET (token -> deadline)
-- KEYS[3..] waiting lists in claim order (all high, then all normal, then all low)
-- ARGV[1] lease length (ms)   ARGV[2] max items N   ARGV[3] worker id   ARGV[4] token sequence start
-- Returns: a flat list token1, list key1, item1, token2, ... (empty when nothing is waiting).
-- The lease deadline uses the server's own TIME so every host agrees when a lease expires.
local t = redis.call('TIME')
local deadline = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
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
    end
    want = want - #items
  end
end
if #fields > 0 then
  redis.call('HSET', KEYS[1], unpack(fields))
  redis.call('ZADD', KEYS[2], unpack(scores))
end
return out
