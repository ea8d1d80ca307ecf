-- purge: remove one chunk of items from the taking end (tail) of a waiting list, with the status
-- record and dedup key of each, atomically. The caller read the chunk just before (LRANGE) and
-- named each item's keys; it calls again until the list is empty, so no call blocks the server
-- for more than one chunk.
-- KEYS[1] waiting LIST   KEYS[2] ready SET: the list leaves the index once it is empty
-- KEYS[3] deps_outbox LIST: a purged item whose record has "has_dependents" is pushed onto it
--         as "<operation id> purged", so that its dependents fail (or run) as for a cancel
--         instead of waiting for an operation that can no longer end
-- KEYS[4..] per item, in item order, 0 to 2 keys as its flags say: its status HASH, then its
--           dedup STRING key
-- ARGV[1] item count N
-- ARGV[2..] per item, in the order read (head side first, the tail item last), 3 values: the item
--           byte for byte, its operation id ("" for junk), flags: 2 characters "1"/"0" for
--           "has a status key" and "has a dedup key"
-- Returns: the number of items removed. Only the list's tail run of items that are in the chunk
-- is removed: an item a worker took meanwhile is no longer there (its keys are left alone), and
-- one pushed back onto the tail (a released or recovered item) stops the run until read again.
-- A dedup key is deleted only while it still names the item's operation id.
local n = tonumber(ARGV[1])
local chunk = {}  -- item bytes -> list of indexes into `names` (equal bytes share their keys)
local names = {}
local key_index = 4
for i = 0, n - 1 do
  local item, op_id, flags = ARGV[2 + 3 * i], ARGV[3 + 3 * i], ARGV[4 + 3 * i]
  local entry = {op_id = op_id}
  if string.sub(flags, 1, 1) == '1' then
    entry.status = KEYS[key_index]
    key_index = key_index + 1
  end
  if string.sub(flags, 2, 2) == '1' then
    entry.dedup = KEYS[key_index]
    key_index = key_index + 1
  end
  names[#names + 1] = entry
  local slots = chunk[item]
  if not slots then
    slots = {}
    chunk[item] = slots
  end
  slots[#slots + 1] = #names
end
local tail = redis.call('LRANGE', KEYS[1], -n, -1)
local removed = 0
for j = #tail, 1, -1 do
  local slots = chunk[tail[j]]
  if not slots or #slots == 0 then break end
  local entry = names[table.remove(slots)]
  if entry.status then
    if redis.call('HEXISTS', entry.status, 'has_dependents') == 1 then
      redis.call('RPUSH', KEYS[3], entry.op_id .. ' purged')
    end
    redis.call('DEL', entry.status)
  end
  if entry.dedup and redis.call('GET', entry.dedup) == entry.op_id then
    redis.call('DEL', entry.dedup)
  end
  removed = removed + 1
end
if removed > 0 then
  redis.call('LTRIM', KEYS[1], 0, -1 - removed)
end
if redis.call('LLEN', KEYS[1]) == 0 then
  redis.call('SREM', KEYS[2], KEYS[1])
end
return removed
