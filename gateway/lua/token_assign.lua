-- KEYS: token hash. ARGV[5..]: serial, user id ('' = unassign)
-- Assign a token to a user, or take it back. A token owned by someone else is not taken
-- from them silently: the operator unassigns it (or resets that user) first.
local token, serial, user = KEYS[1], ARGV[5], ARGV[6]
if redis.call('EXISTS', token) == 0 then return {'not_found', ''} end
local old = hget(token, 'user') or ''
if user == '' then
  if old == '' then return {'unchanged', ''} end
  redis.call('HDEL', 'gw:user:' .. old, 'token:' .. serial)
  redis.call('HSET', token, 'user', '')
  return {'unassigned', old}
end
if old == user then return {'unchanged', old} end
if old ~= '' then return {'assigned_elsewhere', old} end
redis.call('HSET', token, 'user', user)
redis.call('HSET', 'gw:user:' .. user, 'token:' .. serial, NOW_S)
redis.call('PERSIST', 'gw:user:' .. user)  -- a user who only had a pending enrolment keeps the token
return {'assigned', user}
