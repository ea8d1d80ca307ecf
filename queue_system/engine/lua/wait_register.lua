-- wait_register: count (or uncount) one wait_for caller on an operation that has not ended,
-- and read its record in the same step, so an end cannot slip between the read and the count.
-- KEYS[1] the operation's status HASH
-- ARGV[1] "1" to register a waiter, "-1" to take one back (the caller timed out)
-- Returns: the record as a flat HGETALL list ({} = no record); registering counts the waiter
--          ("waiters" field) only when the status is not final. The scripts that end an
--          operation push one token per counted waiter onto its done LIST and drop the count.
-- Not safe to re-send blindly: a re-sent registration counts twice, which only costs one
-- spare token on the done LIST (it expires with the record).
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {} end
local final = status == 'completed' or status == 'failed' or status == 'error'
  or status == 'cancelled' or status == 'expired'
if not final then
  if ARGV[1] == '1' then
    redis.call('HINCRBY', KEYS[1], 'waiters', 1)
  elseif tonumber(redis.call('HGET', KEYS[1], 'waiters') or '0') > 0 then
    redis.call('HINCRBY', KEYS[1], 'waiters', -1)
  end
end
return redis.call('HGETALL', KEYS[1])
