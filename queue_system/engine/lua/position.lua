-- position: how many items of one waiting list will be taken before an operation.
-- KEYS[1] waiting LIST
-- ARGV[1] the envelope's opening bytes: {"v":1,"id":"<operation id>"
-- Returns: items ahead of it in this list (0 = next), or -1 when it is not there.
-- Cost: O(position) — the list is read from its taking end (RPOP side) in chunks of 500.
local needle = ARGV[1]
local len = redis.call('LLEN', KEYS[1])
local chunk = 500
local ahead = 0
while ahead < len do
  local stop = -1 - ahead
  local start = stop - chunk + 1
  local items = redis.call('LRANGE', KEYS[1], start, stop)
  for i = #items, 1, -1 do
    if string.sub(items[i], 1, #needle) == needle then
      return ahead
    end
    ahead = ahead + 1
  end
  if #items == 0 then break end
end
return -1
