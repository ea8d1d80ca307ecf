-- start: mark leased items as started: their processors are about to run. Only a started
-- item's lease expiry counts toward the crash-loop guard (see recover.lua); one call marks
-- every item a worker starts in the same moment.
-- KEYS[1] inflight HASH   KEYS[2] started SET
-- ARGV[1..] lease tokens
-- Returns: how many tokens were still held (and are now marked). Safe to re-send (a set).
local marked = 0
for i = 1, #ARGV do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then
    redis.call('SADD', KEYS[2], ARGV[i])
    marked = marked + 1
  end
end
return marked
