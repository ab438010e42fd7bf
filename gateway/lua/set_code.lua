-- KEYS: vf, audit stream, outbox, timers. ARGV[5..]: attempt, digest, encrypted code, code ttl (s),
-- delivery deadline (s from now; '' none), latest expiry (absolute; '' none: gateway/abuse.py),
-- the outbox entry (<id>:<attempt>)
-- A delivery takes the attempt's code, only for the attempt still current and only while the
-- verification is unexpired: a late delivery for an expired one ends it instead. The first try
-- stores the new code; every later try of the same attempt (a retry after 429/5xx, a timeout
-- the carrier may have accepted, a crashed sender's entry claimed again) gets the code already
-- made ('again', in `enc`), so the user never holds two different codes. Only one sender holds
-- an attempt at a time: its outbox entry is leased by the claim (claim.lua). An entry that is
-- no longer sendable (not_found, finished, ended, stale, sent) leaves the outbox here.
local vf, stream, outbox = KEYS[1], KEYS[2], KEYS[3]
TIMERS = KEYS[4]
local attempt = ARGV[5]
local function drop(kind, value)
  redis.call('ZREM', outbox, ARGV[11])
  return reply(vf, kind, value)
end
if redis.call('EXISTS', vf) == 0 then return drop('not_found', '') end
if not is_pending(vf) then return drop('finished', '') end
local expired = expire_if_due(vf, stream)
if expired then return drop('ended', expired) end
if hget(vf, 'n') ~= attempt then return drop('stale', '') end
-- The carrier already took this attempt (its status callback gave the sid) but the sender's record
-- was lost (a failover without REDIS_WAIT_REPLICAS, or one that outlasted the record's retries) and
-- the entry came back when its lease ended: sending again would text the user twice. Finish it as
-- sent.lua would have: out of the outbox, the next timer (expiry or delivery deadline) set.
if (hget(vf, 'a' .. attempt .. ':sid') or '') ~= '' then
  set_next_timer(vf)
  return drop('sent', '')
end
if (hget(vf, 'code') or '') ~= '' and (hget(vf, 'enc') or '') ~= '' then return reply(vf, 'again', '') end
local expires = after(ARGV[8], ARGV[10])
redis.call('HSET', vf, 'code', ARGV[6], 'enc', ARGV[7], 'expires', expires)
if ARGV[9] ~= '' then redis.call('HSET', vf, 'deadline', after(ARGV[9])) else redis.call('HDEL', vf, 'deadline') end
keep_until(vf, tonumber(expires))
return reply(vf, 'ok', '')
