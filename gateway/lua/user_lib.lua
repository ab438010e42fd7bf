-- Shared by the scripts that change a user's own methods (after prelude.lua).
-- "Now" comes from Redis TIME, so every instance agrees on expiry and proof age.
local function redis_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

-- Whether the user has a method that signs in now: an active app or an assigned token.
local function has_active_method(user)
  if redis.call('HEXISTS', user, 'app') == 1 then return true end
  for _, field in ipairs(redis.call('HKEYS', user)) do
    if string.sub(field, 1, 6) == 'token:' then return true end
  end
  return false
end

-- Whether proof (a verification key, or the user hash when none was given) is a
-- verification of this user approved within max_age seconds and not yet used as a proof.
-- The caller marks it used (HSET proof_used) with the change, so one sign-in proves one change.
local function proof_valid(proof, user, user_id, now, max_age)
  if proof == user or redis.call('EXISTS', proof) == 0 then return false end
  local f = redis.call('HMGET', proof, 'user_id', 'status', 'ended', 'proof_used')
  if f[1] ~= user_id or f[2] ~= 'approved' or f[4] then return false end
  local ended = tonumber(f[3] or '')
  return ended ~= nil and now - ended <= max_age
end

-- Replace the user's recovery codes (fields rc:<keyed digest>) with a new set.
local function set_recovery_codes(user, digests, now_s)
  for _, field in ipairs(redis.call('HKEYS', user)) do
    if string.sub(field, 1, 3) == 'rc:' then redis.call('HDEL', user, field) end
  end
  for _, d in ipairs(digests) do redis.call('HSET', user, 'rc:' .. d, now_s) end
end

-- One audit record of a change to a user's methods; never a secret or a code.
local function audit_user(stream, user_id, event, how, proof_id, now_s)
  redis.call('XADD', stream, 'MINID', '~', audit_minid(), '*', 'event', event, 'user_id', user_id,
             'how', how, 'proof_verification_id', proof_id or '', 'server_name', SERVER,
             'server_ip', SERVER_IP, 'at', now_s)
end
