-- An operator resets a breaker: it closes at once, its window starts afresh, and the reset
-- is audited. ARGV[1]: {keys: {breaker, breakers, audit, resets, window}, scope, id,
-- audit_retention_ms, operator, server_name} (MessagePack; after abuse_lib.lua)
-- Answers 1 when the breaker was tripped, else 0 (the window is cleared either way).
local was = redis.call('DEL', K.breaker)
redis.call('ZREM', K.breakers, p.scope .. ':' .. p.id)
redis.call('DEL', K.window)
if was == 1 then
  audit({event = 'breaker_reset', scope = p.scope, breaker = p.id, operator = p.operator,
         server_name = p.server_name, created_at = NOW, ended_at = NOW})
  redis.call('HINCRBY', K.resets, p.scope, '1')
end
return was
