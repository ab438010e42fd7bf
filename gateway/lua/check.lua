-- KEYS: vf, audit stream, timers[, user hash for 'recovery'][, inbound message marker]. ARGV[5..]: mode
-- ('digest', 'verdict' or 'recovery'), the marker's ttl ('' without a marker), then the verdict
-- ('1'/'0') or the candidate's digests: one per server key (the current one, then
-- GATEWAY_SECRET_KEY_PREVIOUS), so a code digested before a key rotation still checks.
-- A right code approves exactly once; wrong ones count toward the limit. A recovery code is
-- removed as it approves, so each works once across every instance. A code texted in is
-- checked once per MessageSid, whatever Twilio repeats: the marker is set in this same step.
-- The digests compared here are HMACs under a key Redis never sees, so the timing of
-- this comparison tells an attacker nothing about the code (the double-HMAC argument).
local vf, stream = KEYS[1], KEYS[2]
TIMERS = KEYS[3]
local mode, marker_ttl, given = ARGV[5], ARGV[6], ARGV[7]
local FIRST_DIGEST = 7
if redis.call('EXISTS', vf) == 0 then return reply(vf, 'not_found', '') end
if marker_ttl ~= '' and not redis.call('SET', KEYS[#KEYS], '1', 'NX', 'EX', tonumber(marker_ttl)) then
  return reply(vf, 'repeat', '')
end
if not is_pending(vf) then return reply(vf, 'finished', '') end
local expired = expire_if_due(vf, stream)
if expired then return reply(vf, 'ended', expired) end
local ok
if mode == 'digest' then
  -- TOTP: the caller matches the code against Redis's time (the value), then sends a verdict.
  local channel = hget(vf, 'channel')
  if channel == 'totp' or channel == 'recovery_code' then return reply(vf, channel, NOW_S) end
  local code = hget(vf, 'code') or ''
  ok = false
  for i = FIRST_DIGEST, #ARGV do
    if code ~= '' and code == ARGV[i] then ok = true end
  end
elseif mode == 'recovery' then
  ok = false
  if hget(vf, 'channel') == 'recovery_code' then
    for i = FIRST_DIGEST, #ARGV do
      if not ok and redis.call('HDEL', KEYS[4], 'rc:' .. ARGV[i]) == 1 then ok = true end
    end
  end
else
  ok = given == '1'
end
if ok then return reply(vf, 'valid', finish(vf, stream, 'approved', '')) end
local fails = redis.call('HINCRBY', vf, 'fails', 1)
if fails >= tonumber(hget(vf, 'max')) then
  return reply(vf, 'invalid_ended', finish(vf, stream, 'denied', 'max_attempts'))
end
return reply(vf, 'invalid', '')
