-- KEYS: vf. ARGV[5..]: attempt, digest, encrypted code ('' none), expiry, delivery deadline, key ttl
-- The delivering job stores the new code's digest, only for the attempt still current.
local vf = KEYS[1]
if redis.call('EXISTS', vf) == 0 then return reply(vf, 'not_found', '') end
if not is_pending(vf) then return reply(vf, 'finished', '') end
if hget(vf, 'n') ~= ARGV[5] then return reply(vf, 'stale', '') end
redis.call('HSET', vf, 'code', ARGV[6], 'enc', ARGV[7], 'expires', ARGV[8], 'deadline', ARGV[9])
redis.call('EXPIRE', vf, tonumber(ARGV[10]))
return reply(vf, 'ok', '')
