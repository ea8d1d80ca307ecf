-- answer_leased(out, inflight_key, token): when the inflight HASH still holds token (its value
-- "<list key>\n<item>"), appends token, the list key and the item to out, as claim answers
-- them, and returns true; false (out unchanged) when that lease has ended.
local function answer_leased(out, inflight_key, token)
  local value = redis.call('HGET', inflight_key, token)
  if not value then return false end
  local cut = string.find(value, '\n', 1, true)
  out[#out + 1] = token
  out[#out + 1] = string.sub(value, 1, cut - 1)
  out[#out + 1] = string.sub(value, cut + 1)
  return true
end
