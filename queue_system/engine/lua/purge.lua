-- purge: empty one waiting list and free the dedup keys its items held.
-- KEYS[1] waiting LIST
-- ARGV[1] dedup key prefix (e.g. "queue:dedup:"): only keys under it are ever deleted
-- Returns: the number of items removed.
local items = redis.call('LRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1])
for _, item in ipairs(items) do
  local ok, data = pcall(cjson.decode, item)
  if ok and type(data) == 'table' and type(data.dedup) == 'string' and type(data.id) == 'string'
      and string.sub(data.dedup, 1, #ARGV[1]) == ARGV[1] then
    if redis.call('GET', data.dedup) == data.id then
      redis.call('DEL', data.dedup)
    end
  end
end
return #items
