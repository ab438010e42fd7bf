-- KEYS: vf, audit stream, outbox, timers. ARGV[5..]: attempt, digest, encrypted code, the code's
-- length when the caller made it without reading the record ('' when it read the record and chose
-- this code for it), channel rules (JSON, below), default delivery deadline (s), the outbox entry
-- (<id>:<attempt>), '1' when the code is the verification's kept code (its digest kept beside it)
-- A delivery takes the attempt's code, only for the attempt still current and only while the
-- verification is unexpired: a late delivery for an expired one ends it instead. The first try
-- stores the new code; every later try of the same attempt (a retry after 429/5xx, a timeout
-- the carrier may have accepted, a crashed sender's entry claimed again) gets the code already
-- made ('again', in `enc`), so the user never holds two different codes. Only one sender holds
-- an attempt at a time: its outbox entry is leased by the claim (claim.lua). An entry that is
-- no longer sendable (not_found, finished, ended, stale, sent) leaves the outbox here.
-- The sender does not read the record first (gateway/deliveries.py take_codes): this script
-- answers it, and decides what depends on it. Channel rules, per channel (deliveries.channel_rules):
-- {ttl (s), 1 when the verification's own ttl (o_ttl) replaces it, 1 when a delivery deadline
-- applies, 1 when nothing is sent (the user already holds the code)}.
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
local rules = cjson.decode(ARGV[9])
local channel = hget(vf, 'a' .. attempt .. ':ch')
if rules[channel][4] == 1 then return reply(vf, 'nothing', '') end  -- totp, recovery code: no code to store
if (hget(vf, 'code') or '') ~= '' and (hget(vf, 'enc') or '') ~= '' then return reply(vf, 'again', '') end
local digest, encrypted, made = ARGV[6], ARGV[7], ''
if ARGV[8] ~= '' then
  -- A code made with the default length, before the record was read: the verification's own code
  -- (same_code, a custom code: gateway/verifications.py _option_fields) or its own length wins.
  local kept = hget(vf, 'keep') or ''
  if kept ~= '' then
    local kept_digest = hget(vf, 'keepd') or ''
    -- Kept before its digest was (an older version, or a start that does not store it): the
    -- caller decrypts it and asks again; that try stores the digest for every later attempt.
    if kept_digest == '' then return reply(vf, 'kept', '') end
    digest, encrypted, made = kept_digest, kept, 'kept'
  elseif (hget(vf, 'o_len') or ARGV[8]) ~= ARGV[8] then
    return reply(vf, 'length', hget(vf, 'o_len'))
  end
end
local own_ttl = tonumber(hget(vf, 'o_ttl') or '')
if own_ttl == 0 then own_ttl = nil end
local function ttl_of(ch)
  local rule = rules[ch]
  if own_ttl and rule[2] == 1 then return own_ttl end
  return rule[1]
end
local ttl = ttl_of(channel)
-- gateway/abuse.py latest_expiry: never later than the first code's lifetime plus one ttl.
local latest = tonumber(hget(vf, 'created')) + ttl_of(hget(vf, 'a1:ch')) + ttl
local expires = after(ttl, latest)
local deadline = ''
if rules[channel][3] == 1 then
  local wait = tonumber(hget(vf, 'o_dd') or '')
  if not wait or wait == 0 then wait = ARGV[10] end
  deadline = after(wait)
end
redis.call('HSET', vf, 'code', digest, 'enc', encrypted, 'expires', expires)
if deadline ~= '' then redis.call('HSET', vf, 'deadline', deadline) else redis.call('HDEL', vf, 'deadline') end
if ARGV[12] == '1' then redis.call('HSET', vf, 'keepd', digest) end
keep_until(vf, tonumber(expires))
return reply(vf, 'ok', made)  -- 'kept': the kept code, not the caller's, is the attempt's
