-- KEYS: token hash, its owner's user hash as the caller read it (the token hash again when
-- none), the new owner's user hash (the token hash again to unassign).
-- ARGV[5..]: serial, user id ('' = unassign), the owner as the caller read it ('' none)
-- Assign a token to a user, or take it back. A token owned by someone else is not taken
-- from them silently: the operator unassigns it (or resets that user) first. Answers
-- 'changed' when the owner is no longer the one read (the caller reads again and retries).
local token, old_user, new_user = KEYS[1], KEYS[2], KEYS[3]
local serial, user, read = ARGV[5], ARGV[6], ARGV[7]
if redis.call('EXISTS', token) == 0 then return {'not_found', ''} end
local old = hget(token, 'user') or ''
if old ~= read then return {'changed', ''} end
if user == '' then
  if old == '' then return {'unchanged', ''} end
  redis.call('HDEL', old_user, 'token:' .. serial)
  redis.call('HSET', token, 'user', '')
  return {'unassigned', old}
end
if old == user then return {'unchanged', old} end
if old ~= '' then return {'assigned_elsewhere', old} end
redis.call('HSET', token, 'user', user)
redis.call('HSET', new_user, 'token:' .. serial, NOW_S)
redis.call('PERSIST', new_user)  -- a user who only had a pending enrolment keeps the token
return {'assigned', user}
