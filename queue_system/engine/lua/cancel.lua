-- cancel: end one operation as "cancelled" before it runs, or ask its worker to stop it.
-- KEYS[1] the operation's status HASH   KEYS[2] the waiting LIST its record names
-- KEYS[3] the ZSET the caller found it in: delayed (a retry's wait) or scheduled (delay= /
--         run_at=)   KEYS[4] ready SET   KEYS[5] the operation's done LIST (wait_for)
-- KEYS[6] metrics HASH   KEYS[7] scheduled counts HASH (list key -> items in the scheduled set)
-- KEYS[8] deps_outbox LIST: an operation whose record has "has_dependents" is pushed onto it
--         as "<operation id> cancelled" (see enqueue_dependent.lua)
-- KEYS[9] the item's dedup STRING key (optional)
-- ARGV[1] where the caller found the item: "waiting" (in KEYS[2]), "scheduled" (in KEYS[3])
--         or "running" (leased: nothing to remove)
-- ARGV[2] the exact raw item ("waiting") or delayed member "<list key>\n<raw item>"
--         ("scheduled"), "" for "running"
-- ARGV[3] operation id   ARGV[4] now (s)   ARGV[5] TTL (s) of the finished record
-- ARGV[6] pub/sub channel that workers listen on   ARGV[7] nonce of this call (random, the
--         same when the call is re-sent)   ARGV[8] metrics TTL (s)
-- ARGV[9] "1" when KEYS[3] is the scheduled set (its count in KEYS[7] goes down), else "0"
-- Returns: "cancelled"        removed from its list or the delayed set: it never runs;
--          "cancelling"       it is running: the mark "cancel_requested" is set on its record
--                             and its id published; its worker ends it "cancelled" (a fenced
--                             finish: ack.lua and finish_cancelled.lua read the mark);
--          "already_finished" its record says it ended;   "not_found" no record;
--          "moved"            the record's status does not match ARGV[1], or the item was not
--                             where the caller found it (a worker took it meanwhile): nothing
--                             was written, the caller reads the record again and retries.
-- Safe to re-send: a record this call cancelled carries its nonce ("cancel_nonce"), and the
-- re-run answers "cancelled" again; setting the mark and publishing twice is harmless.
--#include wake_waiters
local record = redis.call('HMGET', KEYS[1], 'status', 'cancel_nonce')
local status = record[1]
if not status then return 'not_found' end
if status == 'cancelled' and record[2] == ARGV[7] then return 'cancelled' end
if status == 'completed' or status == 'failed' or status == 'error' or status == 'cancelled'
    or status == 'expired' then
  return 'already_finished'
end
local mode = ARGV[1]
if status == 'processing' then
  if mode ~= 'running' then return 'moved' end
  redis.call('HSETNX', KEYS[1], 'cancel_requested', ARGV[4])
  redis.call('PUBLISH', ARGV[6], ARGV[3])
  return 'cancelling'
end
if mode == 'waiting' and status == 'pending' then
  if redis.call('LREM', KEYS[2], 1, ARGV[2]) == 0 then return 'moved' end
  if redis.call('LLEN', KEYS[2]) == 0 then redis.call('SREM', KEYS[4], KEYS[2]) end
elseif mode == 'scheduled' and status == 'scheduled' then
  if redis.call('ZREM', KEYS[3], ARGV[2]) == 0 then return 'moved' end
  if ARGV[9] == '1' and redis.call('HINCRBY', KEYS[7], KEYS[2], -1) <= 0 then
    redis.call('HDEL', KEYS[7], KEYS[2])
  end
else
  return 'moved'
end
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_at', ARGV[4], 'cancel_nonce', ARGV[7])
redis.call('EXPIRE', KEYS[1], ARGV[5])
if KEYS[9] and redis.call('GET', KEYS[9]) == ARGV[3] then
  redis.call('DEL', KEYS[9])
end
if redis.call('HEXISTS', KEYS[1], 'has_dependents') == 1 then
  redis.call('RPUSH', KEYS[8], ARGV[3] .. ' cancelled')
end
wake_waiters(KEYS[5], redis.call('HGET', KEYS[1], 'waiters'), ARGV[5])
redis.call('HDEL', KEYS[1], 'waiters')
redis.call('HINCRBY', KEYS[6], 'cancelled', 1)
redis.call('EXPIRE', KEYS[6], ARGV[8])
return 'cancelled'
