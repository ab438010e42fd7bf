-- An operator resets a breaker: it closes at once, its window starts afresh, and the reset
-- is audited. ARGV[1]: {scope, id, window, buckets, audit_retention_ms, operator, server_name}
-- Answers 1 when the breaker was tripped, else 0 (the window is cleared either way).
local TIME = redis.call('TIME')
local SEC = tonumber(TIME[1])
local p = cjson.decode(ARGV[1])
local key = 'gw:breaker:' .. p.scope .. ':' .. p.id
local was = redis.call('DEL', key)
redis.call('ZREM', 'gw:breakers', p.scope .. ':' .. p.id)
local bucket_size = math.max(math.floor(p.window / p.buckets), 1)
local bucket_now = math.floor(SEC / bucket_size)
for b = bucket_now - p.buckets, bucket_now do
  redis.call('DEL', 'gw:pump:' .. p.scope .. ':' .. p.id .. ':' .. b)
end
if was == 1 then
  local now = SEC + tonumber(TIME[2]) / 1000000
  local minid = string.format('%.0f', SEC * 1000 - p.audit_retention_ms)
  redis.call('XADD', 'gw:audit', 'MINID', '~', minid, '*', 'event', 'breaker_reset', 'scope', p.scope,
             'breaker', p.id, 'operator', p.operator, 'server_name', p.server_name,
             'created_at', now, 'ended_at', now)
  redis.call('HINCRBY', 'gw:metrics:breaker_resets', p.scope, 1)
end
return was
