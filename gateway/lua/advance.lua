-- KEYS: vf, audit stream. ARGV[5..]: failed attempt, next channel ('' = none left),
-- next chain position, next expiry, key ttl, why the failed attempt ended, error code
-- Moves to the next channel exactly once per failed attempt, however many callbacks race.
local vf, stream = KEYS[1], KEYS[2]
local failed, channel, pos = ARGV[5], ARGV[6], ARGV[7]
local expires, key_ttl, why, err = ARGV[8], tonumber(ARGV[9]), ARGV[10], ARGV[11]
if redis.call('EXISTS', vf) == 0 then return reply(vf, 'not_found', '') end
if not is_pending(vf) then return reply(vf, 'finished', '') end
if hget(vf, 'n') ~= failed then return reply(vf, 'stale', '') end
local p = 'a' .. failed .. ':'
redis.call('HSET', vf, p .. 'why', why)
if err ~= '' and not hget(vf, p .. 'err') then redis.call('HSET', vf, p .. 'err', err) end
if channel == '' then return reply(vf, 'ended', finish(vf, stream, 'failed', 'delivery_failed')) end
local n = tonumber(failed) + 1
local q = 'a' .. n .. ':'
redis.call('HSET', vf, 'n', n, 'channel', channel, 'pos', pos, 'expires', expires, 'code', '',
           'enc', '', 'deadline', '', q .. 'ch', channel, q .. 'st', 'queued', q .. 'rk', 0, q .. 'at', NOW_S)
redis.call('EXPIRE', vf, key_ttl)
return reply(vf, 'advanced', tostring(n))
