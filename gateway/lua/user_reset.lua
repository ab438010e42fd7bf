-- KEYS: user hash, user audit stream. ARGV[5..]: user id
-- The lost-phone reset (admin scope): forget the app secret, any pending one and the
-- recovery codes, and unassign every token (the token records stay, unassigned, so a token
-- can be issued again). Audited. Value: how many methods were removed.
local user, stream, user_id = KEYS[1], KEYS[2], ARGV[5]
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
if #fields > 0 then audit_user(stream, user_id, 'methods_reset', 'admin', '', string.format('%.6f', redis_now())) end
return {'ok', tostring(removed)}
