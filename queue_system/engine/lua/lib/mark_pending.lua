-- mark_pending(prefix, op_id): an item waits on its list again, so its status record
-- (prefix .. op_id) reads "pending", without TTL (the item lives on). op_id nil (junk without
-- an id in its opening, so without a record): nothing.
local function mark_pending(prefix, op_id)
  if not op_id then return end
  local status = prefix .. op_id
  redis.call('HSET', status, 'status', 'pending')
  redis.call('PERSIST', status)
end
