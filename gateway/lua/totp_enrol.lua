-- KEYS: user hash. ARGV[5..]: encrypted secret, seconds the pending authenticator lives
-- A new authenticator starts pending beside any active one (an earlier pending one is
-- replaced); it approves nothing until confirmed. A user with nothing else expires with it.
local user, secret, ttl = KEYS[1], ARGV[5], tonumber(ARGV[6])
local expires = string.format('%.6f', redis_now() + ttl)
redis.call('HSET', user, 'pending', secret, 'pending:exp', expires, 'pending:fails', 0)
local only_pending = true
for _, field in ipairs(redis.call('HKEYS', user)) do
  if string.sub(field, 1, 7) ~= 'pending' then only_pending = false end
end
if only_pending then redis.call('EXPIRE', user, ttl) end
return {'ok', expires}
