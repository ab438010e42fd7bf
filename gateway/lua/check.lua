-- KEYS: vf, audit stream, timers, user hash ('recovery'; vf again otherwise), inbound message
-- marker (vf again when none), the user's check counter (vf again when the caller does not know
-- the user), refusal counter, then the ending keys (prelude.lua). ARGV[5..]: mode ('digest',
-- 'verdict' or 'recovery'), the marker's ttl ('' without a marker), the check allowance and its
-- window ('' '': not counted), then the verdict ('1'/'0') or the candidate's digests:
-- one per server key (the current one, then GATEWAY_SECRET_KEY_PREVIOUS), so a code digested
-- before a key rotation still checks.
-- A right code approves exactly once; wrong ones count toward the limit. A recovery code is
-- removed as it approves, so each works once across every instance. A code texted in is
-- checked once per MessageSid, whatever Twilio repeats: the marker is set in this same step.
-- The digests compared here are HMACs under a key Redis never sees, so the timing of
-- this comparison tells an attacker nothing about the code (the double-HMAC argument).
local vf, stream, user, marker, checks, refused = KEYS[1], KEYS[2], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
TIMERS = KEYS[3]
local mode, marker_ttl, allowance, window = ARGV[5], ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8])
local FIRST_VALUE = 9
local given = ARGV[FIRST_VALUE]
if redis.call('EXISTS', vf) == 0 then return reply(vf, 'not_found', '') end
if allowance then
  local user_id = hget(vf, 'user_id')
  if user_id and user_id ~= '' then
    -- The user's counter is named by the user: a caller that did not know them learns them here,
    -- nothing changed, and calls again with that key declared.
    if checks == vf then return {'subject', user_id} end
    local wait = count_check(checks, refused, stream, allowance, window, vf, 'check', user_id)
    if wait then return reply(vf, 'refused', tostring(wait)) end
  end
end
if marker_ttl ~= '' and not redis.call('SET', marker, '1', 'NX', 'EX', tonumber(marker_ttl)) then
  return reply(vf, 'repeat', '')
end
local status, expires, channel, code = unpack(redis.call('HMGET', vf, 'status', 'expires', 'channel', 'code'))
if status ~= 'pending' then return reply(vf, 'finished', '') end
local expired = expire_if_due(vf, stream, expires or '0', channel)
if expired then return reply(vf, 'ended', expired) end
local ok
if mode == 'digest' then
  -- TOTP: the caller matches the code against Redis's time (the value), then sends a verdict.
  if channel == 'totp' or channel == 'recovery_code' then return reply(vf, channel, NOW_S) end
  code = code or ''
  ok = false
  for i = FIRST_VALUE, #ARGV do
    if code ~= '' and code == ARGV[i] then ok = true end
  end
elseif mode == 'recovery' then
  ok = false
  if channel == 'recovery_code' then
    for i = FIRST_VALUE, #ARGV do
      if not ok and redis.call('HDEL', user, 'rc:' .. ARGV[i]) == 1 then ok = true end
    end
  end
else
  ok = given == '1'
end
if ok then
  return reply(vf, 'valid', finish(vf, stream, 'approved', ''))
end
local fails = redis.call('HINCRBY', vf, 'fails', '1')
if fails >= tonumber(hget(vf, 'max')) then
  return reply(vf, 'invalid_ended', finish(vf, stream, 'denied', 'max_attempts'))
end
return reply(vf, 'invalid', '')
