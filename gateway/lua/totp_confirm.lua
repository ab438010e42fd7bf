-- KEYS: user hash, proof verification (the user hash again when none), user audit stream.
-- ARGV[5..]: user id, pending secret as read (encrypted), matched step ('' = the code did not
-- match), wrong codes allowed, proof max age (s), admin ('1'/'0'), proof verification id,
-- then the keyed digests of the new recovery codes.
-- Activate the pending authenticator. While another method is active this replaces it only
-- with a fresh proof (or the admin scope); nothing changes when that is missing.
local user, proof, stream = KEYS[1], KEYS[2], KEYS[3]
local user_id, secret, step, max_fails = ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8])
local max_age, admin, proof_id = tonumber(ARGV[9]), ARGV[10] == '1', ARGV[11]
local now = redis_now()
local now_s = string.format('%.6f', now)
if redis.call('EXISTS', user) == 0 then return {'not_found', ''} end
local pending = hget(user, 'pending')
if pending == nil or now >= tonumber(hget(user, 'pending:exp') or '0') then
  redis.call('HDEL', user, 'pending', 'pending:exp', 'pending:fails')
  return {'no_pending', ''}
end
if pending ~= secret then return {'changed', ''} end
local replacing = has_active_method(user)
local how = 'first'
if replacing then
  if admin then
    how = 'admin'
  elseif proof_valid(proof, user, user_id, now, max_age) then
    how = 'proof'
  else
    return {'proof_required', ''}
  end
end
if step == '' then
  local fails = redis.call('HINCRBY', user, 'pending:fails', '1')
  if fails < max_fails then return {'invalid', tostring(max_fails - fails)} end
  redis.call('HDEL', user, 'pending', 'pending:exp', 'pending:fails')
  audit_user(stream, user_id, 'enrolment_denied', 'max_attempts', '', now_s)
  return {'denied', '0'}
end
local event = redis.call('HEXISTS', user, 'app') == 1 and 'authenticator_replaced' or 'authenticator_activated'
-- The confirming step is used: the same code cannot then approve a verification.
redis.call('HSET', user, 'app', pending, 'app:at', now_s, 'app:last', step)
redis.call('HDEL', user, 'pending', 'pending:exp', 'pending:fails')
set_recovery_codes(user, {unpack(ARGV, 12)}, now_s)
redis.call('PERSIST', user)
if how == 'proof' then redis.call('HSET', proof, 'proof_used', user_id) end
audit_user(stream, user_id, event, how, how == 'proof' and proof_id or '', now_s)
return {event, how}
