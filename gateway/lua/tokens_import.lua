-- KEYS: the token hashes, then the user hashes of every owner named (old and new).
-- ARGV[5..]: replace ('1'/'0'), the number of tokens, then per token: serial, encrypted secret,
-- digits, period, algorithm, drift, user id ('' none), its owner as the caller read it ('' none);
-- then the user ids of the user hashes, in KEYS order.
-- All or nothing: every check comes before the first write, so a refused file leaves no trace.
-- Answers 'changed' when an owner is no longer the one read (the caller reads again and retries).
local replace, count = ARGV[5] == '1', tonumber(ARGV[6])
local per = 8
local function arg(i, k) return ARGV[6 + (i - 1) * per + k] end
local users = {}
for j = 1, #KEYS - count do users[ARGV[6 + count * per + j]] = KEYS[count + j] end
for i = 1, count do
  local key = KEYS[i]
  if not replace and redis.call('EXISTS', key) == 1 then return {'exists', arg(i, 1)} end
  if (hget(key, 'user') or '') ~= arg(i, 8) then return {'changed', ''} end
end
for i = 1, count do
  local key, serial, user = KEYS[i], arg(i, 1), arg(i, 7)
  local old = hget(key, 'user') or ''
  if user == '' then user = old end  -- a replaced token keeps its owner unless the file names one
  if old ~= '' and old ~= user then redis.call('HDEL', users[old], 'token:' .. serial) end
  redis.call('DEL', key)
  redis.call('HSET', key, 'serial', serial, 'secret', arg(i, 2), 'digits', arg(i, 3), 'period', arg(i, 4),
             'algorithm', arg(i, 5), 'drift', arg(i, 6), 'user', user, 'imported', NOW_S)
  if user ~= '' then
    redis.call('HSET', users[user], 'token:' .. serial, NOW_S)
    redis.call('PERSIST', users[user])  -- a user who only had a pending enrolment keeps it
  end
end
return {'ok', tostring(count)}
