-- cron_claim: claim a schedule's due ticks for one worker (compare-and-set of its last tick).
-- KEYS[1] cron_last HASH (schedule name -> newest tick fired or skipped, ms)
-- KEYS[2] cron_claims HASH (schedule name -> JSON of ticks claimed, not yet known enqueued)
-- ARGV[1] schedule name
-- ARGV[2] the last tick the caller read ("" = none recorded)
-- ARGV[3] the new last tick (ms): the newest tick fired or skipped now
-- ARGV[4] the claim: JSON naming the ticks to fire and a nonce of this call ("" = nothing
--         to fire, only skip ticks)
-- Returns: 1 = claimed (last tick set; the claim stored unless ARGV[4] is ""): the caller
--   enqueues the ticks, then ends the claim with cron_done;
--   0 = another worker moved the last tick since the caller read it: nothing written;
--   2 = an earlier claim of this schedule is still open (its worker may have died between
--   claim and enqueue): nothing written; whoever finishes that claim moves on.
-- Safe to re-send: a re-run after a lost reply finds its own claim (same nonce) and answers 1
-- again; a re-run of a skip-only call answers 0, which also means "nothing to do".
-- Ticks are worker clock times (ARGV): a schedule is a wall-clock matter, and the injected
-- clock must drive it in tests. The compare-and-set, not the clock, keeps a tick from firing
-- twice: the last tick only moves forward, and only from the value its mover read.
local open = redis.call('HGET', KEYS[2], ARGV[1])
if open then
  if open == ARGV[4] then return 1 end
  return 2
end
local last = redis.call('HGET', KEYS[1], ARGV[1]) or ''
if last ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[2], ARGV[1], ARGV[4]) end
return 1
