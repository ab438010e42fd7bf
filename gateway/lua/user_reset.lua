-- KEYS: user hash. ARGV[5..]: user id
-- The lost-phone reset: forget the app secret and unassign every token (the token records
-- stay, unassigned, so a token can be issued again). Value: how many methods were removed.
local user, user_id = KEYS[1], ARGV[5]
local fields = redis.call('HKEYS', user)
local removed = 0
for _, field in ipairs(fields) do
  if field == 'app' then
    removed = removed + 1
  elseif string.sub(field, 1, 6) == 'token:' then
    local token = 'gw:token:' .. string.sub(field, 7)
    if hget(token, 'user') == user_id then redis.call('HSET', token, 'user', '') end
    removed = removed + 1
  end
end
redis.call('DEL', user)
return {'ok', tostring(removed)}
