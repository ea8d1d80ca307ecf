-- drop_dead_letter: delete one dead-letter record for good (an operator's purge), keeping the
-- per-queue dead-letter counts (see dead_letter.lua) in step.
-- KEYS[1] failures or system_errors LIST   KEYS[2] metrics HASH
-- ARGV[1] the record, byte for byte as read   ARGV[2] LREM count: 1 searches from the head
--         (newest), -1 from the tail (oldest)   ARGV[3] "failed" or "system_errors"
-- Returns: 1 = deleted, 0 = it was gone already (another operator, or the cap trimmed it).
-- Safe to re-send: a re-run finds nothing to remove and writes nothing.
--#include dead_letter_counts
if redis.call('LREM', KEYS[1], tonumber(ARGV[2]), ARGV[1]) == 0 then
  return 0
end
redis.call('HINCRBY', KEYS[2], dead_letter_field(ARGV[3], ARGV[1]), -1)
return 1
