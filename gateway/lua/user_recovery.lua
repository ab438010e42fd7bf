-- KEYS: user hash, proof verification (the user hash again when none), user audit stream.
-- ARGV[5..]: user id, proof max age (s), admin ('1'/'0'), proof verification id, then the
-- keyed digests of the new recovery codes.
-- Regenerate a user's recovery codes: the old set stops working. Needs the same proof as a
-- replacement, since fresh codes are a way in.
local user, proof, stream = KEYS[1], KEYS[2], KEYS[3]
local user_id, max_age, admin, proof_id = ARGV[5], tonumber(ARGV[6]), ARGV[7] == '1', ARGV[8]
local now = redis_now()
local now_s = string.format('%.6f', now)
if redis.call('EXISTS', user) == 0 then return {'not_found', ''} end
if not has_active_method(user) then return {'no_method', ''} end
local how = 'admin'
if not admin then
  if not proof_valid(proof, user, user_id, now, max_age) then return {'proof_required', ''} end
  redis.call('HSET', proof, 'proof_used', user_id)
  how = 'proof'
end
set_recovery_codes(user, {unpack(ARGV, 9)}, now_s)
audit_user(stream, user_id, 'recovery_codes_regenerated', how, how == 'proof' and proof_id or '', now_s)
return {'ok', how}
