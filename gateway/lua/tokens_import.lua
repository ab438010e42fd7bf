-- KEYS: the token hashes. ARGV[5..]: replace ('1'/'0'), then per token:
-- serial, encrypted secret, digits, period, algorithm, drift, user id ('' none)
-- All or nothing: every check comes before the first write, so a refused file leaves no trace.
local replace = ARGV[5] == '1'
local per = 7
local function arg(i, k) return ARGV[5 + (i - 1) * per + k] end
if not replace then
  for i, key in ipairs(KEYS) do
    if redis.call('EXISTS', key) == 1 then return {'exists', arg(i, 1)} end
  end
end
for i, key in ipairs(KEYS) do
  local serial, user = arg(i, 1), arg(i, 7)
  local old = hget(key, 'user') or ''
  if user == '' then user = old end  -- a replaced token keeps its owner unless the file names one
  if old ~= '' and old ~= user then redis.call('HDEL', 'gw:user:' .. old, 'token:' .. serial) end
  redis.call('DEL', key)
  redis.call('HSET', key, 'serial', serial, 'secret', arg(i, 2), 'digits', arg(i, 3), 'period', arg(i, 4),
             'algorithm', arg(i, 5), 'drift', arg(i, 6), 'user', user, 'imported', NOW_S)
  if user ~= '' then
    redis.call('HSET', 'gw:user:' .. user, 'token:' .. serial, NOW_S)
    redis.call('PERSIST', 'gw:user:' .. user)  -- a user who only had a pending enrolment keeps it
  end
end
return {'ok', tostring(#KEYS)}
