-- KEYS: vf, audit stream. ARGV[5..]: attempt, digest, encrypted code, code ttl (s),
-- delivery deadline (s from now; '' none), delivery id (the rq job), lease (s), latest expiry
-- (absolute; '' none: gateway/abuse.py)
-- A delivery takes the attempt's code, only for the attempt still current and only while the
-- verification is unexpired: a late job for an expired one ends it instead. The first try
-- stores the new code; every retry of the same delivery (rq retry, a timeout the carrier may
-- have accepted, a crashed worker's job) gets the code already made ('again', in `enc`), so
-- the user never holds two different codes. Another delivery of the same attempt (a duplicate
-- enqueue, a crashed worker's job queued anew) is refused while the first one's lease runs
-- ('taken': seconds left), and after it only if the attempt was sent ('sent').
local vf, stream = KEYS[1], KEYS[2]
local attempt, delivery = ARGV[5], ARGV[10]
if redis.call('EXISTS', vf) == 0 then return reply(vf, 'not_found', '') end
if not is_pending(vf) then return reply(vf, 'finished', '') end
local expired = expire_if_due(vf, stream)
if expired then return reply(vf, 'ended', expired) end
if hget(vf, 'n') ~= attempt then return reply(vf, 'stale', '') end
local p = 'a' .. attempt .. ':'
local holder = hget(vf, p .. 'job')
if holder and holder ~= delivery then
  local left = tonumber(hget(vf, p .. 'lease') or '0') - NOW
  if left > 0 then return reply(vf, 'taken', tostring(math.ceil(left))) end
  if hget(vf, p .. 'sid') then return reply(vf, 'sent', '') end
end
redis.call('HSET', vf, p .. 'job', delivery, p .. 'lease', after(ARGV[11]))
if (hget(vf, 'code') or '') ~= '' and (hget(vf, 'enc') or '') ~= '' then return reply(vf, 'again', '') end
local expires = after(ARGV[8], ARGV[12])
local deadline = ''
if ARGV[9] ~= '' then deadline = after(ARGV[9]) end
redis.call('HSET', vf, 'code', ARGV[6], 'enc', ARGV[7], 'expires', expires, 'deadline', deadline)
keep_until(vf, tonumber(expires))
return reply(vf, 'ok', '')
