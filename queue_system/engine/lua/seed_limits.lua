-- seed_limits: write the limits a worker's config declares, unless an operator set them at
-- runtime (the live value in Redis wins over code: see core/limits.py and the README).
-- KEYS[1] limits HASH (queue name -> "<max concurrency> <rate count> <rate window ms> <source>")
-- ARGV[1..] pairs: queue name, encoded limits with source "config" ("0 0 0 config": the code
--           declares no limit, so a value written by an earlier config is removed)
-- Returns: how many queues' values were written or removed.
-- Safe to re-send: a re-run writes the same values again (or finds them written).
local changed = 0
for i = 1, #ARGV, 2 do
  local name, value = ARGV[i], ARGV[i + 1]
  local current = redis.call('HGET', KEYS[1], name)
  if not (current and string.sub(current, -8) == ' runtime') and current ~= value then
    if string.match(value, '^0 0 0 ') then
      if current then redis.call('HDEL', KEYS[1], name) changed = changed + 1 end
    else
      redis.call('HSET', KEYS[1], name, value)
      changed = changed + 1
    end
  end
end
return changed
