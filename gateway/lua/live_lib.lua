-- A start under a live key (KEYS[5], or KEYS[1] again when none) names, as KEYS[10], the record
-- of the verification the caller found under it (or KEYS[1] again when none): the one key found
-- in data is read first and declared (gateway/store.py create), and this says whether the live
-- key has moved since, so the start is asked again ('changed') instead of touching an undeclared key.
local function live_moved()
  if KEYS[5] == KEYS[1] then return false end
  local current = redis.call('GET', KEYS[5])
  if not current then return KEYS[10] ~= KEYS[1] end
  return KEYS[10] == KEYS[1] or string.sub(KEYS[10], -(#current + 1)) ~= ':' .. current
end
