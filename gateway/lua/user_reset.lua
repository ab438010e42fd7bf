-- KEYS: user hash, user audit stream, then the hashes of the tokens assigned to the user as the
-- caller read them. ARGV[5..]: user id, then those tokens' serials, in the same order
-- The lost-phone reset (admin scope): forget the app secret, any pending one and the
-- recovery codes, and unassign every token (the token records stay, unassigned, so a token
-- can be issued again). Audited. Value: how many methods were removed. Answers 'changed' when
-- the user's tokens are no longer those read (the caller reads again and retries).
local user, stream, user_id = KEYS[1], KEYS[2], ARGV[5]
local given = {}
for i = 6, #ARGV do given[ARGV[i]] = KEYS[i - 3] end
local fields = redis.call('HKEYS', user)
local removed, tokens = 0, {}
for _, field in ipairs(fields) do
  if field == 'app' then
    removed = removed + 1
  elseif string.sub(field, 1, 6) == 'token:' then
    local token = given[string.sub(field, 7)]
    if not token then return {'changed', ''} end
    tokens[#tokens + 1] = token
    removed = removed + 1
  end
end
if #tokens ~= #ARGV - 5 then return {'changed', ''} end
for _, token in ipairs(tokens) do
  if hget(token, 'user') == user_id then redis.call('HSET', token, 'user', '') end
end
redis.call('DEL', user)
if #fields > 0 then audit_user(stream, user_id, 'methods_reset', 'admin', '', string.format('%.6f', redis_now())) end
return {'ok', tostring(removed)}
