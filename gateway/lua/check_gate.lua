-- KEYS: user hash, the user's check counter (the user hash again when not counted), refusal
-- counter, audit stream. ARGV[5..]: the check allowance ('' = not counted), its window (s), user id
-- A confirmation of a new authenticator counts against the user's check allowance, like a
-- code check (check.lua), so guessing through confirmations gains nothing.
-- Answers {'ok', Redis's time} (the confirmation code is matched against it) or {'refused', retry_after}.
local allowance = tonumber(ARGV[5])
if allowance then
  local wait = count_check(KEYS[2], KEYS[3], KEYS[4], allowance, tonumber(ARGV[6]), KEYS[1], 'confirm', ARGV[7])
  if wait then return {'refused', tostring(wait)} end
end
return {'ok', NOW_S}
