-- KEYS: vf, audit stream, outbox, timers, the senders' wake-up list. ARGV[5..]: failed attempt, next channel ('' = none left),
-- next chain position, next channel's ttl (s), why the failed attempt ended, error code,
-- resend interval (s; '' = not a resend), '1' = only once the delivery deadline has passed,
-- the latest expiry the next attempt may have (absolute; '' none: gateway/abuse.py)
-- Moves to the next channel exactly once per failed attempt, however many callbacks race.
local vf, stream, outbox, wake = KEYS[1], KEYS[2], KEYS[3], KEYS[5]
TIMERS = KEYS[4]
local failed, channel, pos = ARGV[5], ARGV[6], ARGV[7]
local ttl, why, err = ARGV[8], ARGV[9], ARGV[10]
local interval, deadline_due = tonumber(ARGV[11]), ARGV[12] == '1'
if redis.call('EXISTS', vf) == 0 then return reply(vf, 'not_found', '') end
if not is_pending(vf) then return reply(vf, 'finished', '') end
local expired = expire_if_due(vf, stream)
if expired then return reply(vf, 'ended', expired) end
if hget(vf, 'n') ~= failed then return reply(vf, 'stale', '') end
local p = 'a' .. failed .. ':'
if interval then
  local wait = attempt_start(vf, tonumber(failed)) + interval - NOW
  if wait > 0 then return reply(vf, 'too_soon', tostring(math.ceil(wait))) end
end
if deadline_due then
  local deadline = tonumber(hget(vf, 'deadline') or '')
  if not deadline or NOW < deadline or hget(vf, p .. 'st') == 'delivered' then return reply(vf, 'not_due', '') end
end
redis.call('ZREM', outbox, id_of(vf) .. ':' .. failed)  -- a sender's entry for the failed attempt
redis.call('HSET', vf, p .. 'why', why)
if err ~= '' and not hget(vf, p .. 'err') then redis.call('HSET', vf, p .. 'err', err) end
if channel == '' then return reply(vf, 'ended', finish(vf, stream, 'failed', 'delivery_failed')) end
local n = tonumber(failed) + 1
local q = 'a' .. n .. ':'
local expires = after(ttl, ARGV[13])
redis.call('HSET', vf, 'n', n, 'channel', channel, 'pos', pos, 'expires', expires,
           q .. 'ch', channel, q .. 'st', 'queued', q .. 'rk', 0, q .. 'at', NOW_S)
redis.call('HDEL', vf, 'code', 'enc', 'deadline')  -- the failed attempt's; none yet for the new one
keep_until(vf, tonumber(expires))
redis.call('ZADD', outbox, NOW_S, id_of(vf) .. ':' .. n)  -- due now: the senders take it
redis.call('ZADD', TIMERS, 'LT', expires, id_of(vf))  -- the new attempt may expire before the timer
redis.call('LPUSH', wake, '1')  -- one token at most: it wakes one idle sender
redis.call('LTRIM', wake, '0', '0')
return reply(vf, 'advanced', tostring(n))
