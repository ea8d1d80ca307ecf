-- position: how many items of one waiting list will be taken before an operation.
-- KEYS[1] waiting LIST
-- ARGV[1] the envelope's opening bytes: {"v":1,"id":"<operation id>"
-- ARGV[2] (optional) most items read from EACH end of the list; absent or "" = the whole list
--         from its taking end (a cancel must find the item wherever it is)
-- Returns: items ahead of it in this list (0 = next); -1 when it is not there; -2 when the
--          list is longer than twice ARGV[2] and the item is not within ARGV[2] items of
--          either end (at least ARGV[2] items are ahead of it; where exactly is not read).
-- Cost: chunks of 500 items read alternately from the taking end (RPOP side) and the pushing
-- end, so an item near either end is found at once; with ARGV[2] the call blocks the server
-- for a bounded time however long the list (about 0.6 ms per 1,000 items of 600 bytes).
local needle = ARGV[1]
local len = redis.call('LLEN', KEYS[1])
local cap = math.min(tonumber(ARGV[2] or '') or len, len)
local chunk = 500
local function starts(item)
  return string.sub(item, 1, #needle) == needle
end
local from_tail, from_head = 0, 0  -- items read from each end so far
while from_tail < cap or from_head < cap do
  if from_tail + from_head >= len then return -1 end
  if from_tail < cap then  -- index -1 is position 0
    local stop = -1 - from_tail
    local items = redis.call('LRANGE', KEYS[1], stop - chunk + 1, stop)
    for i = #items, 1, -1 do
      if starts(items[i]) then return from_tail end
      from_tail = from_tail + 1
    end
  end
  if from_head < cap and ARGV[2] and ARGV[2] ~= '' then  -- index h is position len - 1 - h
    local items = redis.call('LRANGE', KEYS[1], from_head, from_head + chunk - 1)
    for i = 1, #items do
      if starts(items[i]) then return len - 1 - from_head end
      from_head = from_head + 1
    end
  end
end
if from_tail + from_head >= len then return -1 end
return -2
