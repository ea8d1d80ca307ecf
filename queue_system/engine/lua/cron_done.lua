-- cron_done: end a schedule's claim once its ticks are enqueued.
-- KEYS[1] cron_claims HASH (schedule name -> JSON of ticks claimed, not yet known enqueued)
-- ARGV[1] schedule name     ARGV[2] the claim JSON, as cron_claim stored it
-- Returns: 1 = the claim was ended; 0 = it was not open (already ended by another worker
--   that finished it, or by an earlier run of this call): nothing written.
-- Safe to re-send: the claim is deleted only while it is exactly this one.
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 1
end
return 0
