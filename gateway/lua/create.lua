-- KEYS: vf, idempotency (or vf again when none), fraud block, SMS opt-out,
--       live key (or vf again when none): at most one pending verification per live key, outbox, timers,
--       started counter, the senders' wake-up list, the live verification's record (live_lib.lua)
-- ARGV[5..]: body hash, idempotency ttl, id,
--            chain (JSON) and its first channel's ttl when not opted out, the same when opted out,
--            then field pairs
-- (limits on sends, and the send backlog's bound, are admitted before, by admit.lua: gateway/abuse.py)
-- The new verification's first delivery goes into the outbox (due now) and its expiry into the
-- timers in the same step: the senders take it from there (gateway/sender.py), so nothing a
-- process could die between is left to hand over.
local vf, idem, block, optout, live, outbox = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local timers, started, wake = KEYS[7], KEYS[8], KEYS[9]
if live_moved() then return reply(vf, 'changed', '') end
local body_hash, idem_ttl, id = ARGV[5], tonumber(ARGV[6]), ARGV[7]
if idem ~= vf then
  local seen = redis.call('GET', idem)
  if seen then
    local sep = string.find(seen, '|', 1, true)
    if string.sub(seen, 1, sep - 1) == body_hash then return reply(vf, 'existing', string.sub(seen, sep + 1)) end
    return reply(vf, 'conflict', '')
  end
end
if live ~= vf then
  local current = redis.call('GET', live)
  if current then
    local other = KEYS[10]  -- read first and declared by the caller; live_moved() held it current
    local expires = tonumber(redis.call('HGET', other, 'expires') or '0')
    if redis.call('HGET', other, 'status') == 'pending' and NOW < expires then
      return reply(other, 'live', current)
    end
  end
end
if redis.call('EXISTS', block) == 1 then return reply(vf, 'blocked', 'fraud') end
local chain, ttl = ARGV[8], ARGV[9]
if redis.call('EXISTS', optout) == 1 then chain, ttl = ARGV[10], ARGV[11] end
if chain == '[]' then return reply(vf, 'blocked', 'opted_out') end
local first = cjson.decode(chain)[1]
local expires = after(ttl)
-- Fields at their default are not stored (reason, code, enc: ''; pos, fails: 0): every reader,
-- this release's and the previous one's, takes a missing one as its default. Nor are the id (the
-- end of the key: id_of) and the first attempt's start (`created`: attempt_start), unless the
-- caller asks for the previous release's form by passing the id among the fields (Store
-- previous_release_records): that release needs both (docs/performance.md).
redis.call('HSET', vf, 'status', 'pending', 'created', NOW_S, 'chain', chain,
           'channel', first, 'n', '1', 'expires', expires,
           'a1:ch', first, 'a1:st', 'queued', 'a1:rk', '0')
-- The caller's fields in one HSET (a redis.call costs as much as ~10 k instructions of Lua).
local previous_form = false
for i = 12, #ARGV, 2 do
  if ARGV[i] == 'id' then previous_form = true end
end
if #ARGV >= 13 then redis.call('HSET', vf, unpack(ARGV, 12)) end
if previous_form then redis.call('HSET', vf, 'a1:at', NOW_S) end
keep_until(vf, tonumber(expires))
if live ~= vf then keep_until(live, tonumber(expires), id) end
if idem ~= vf then redis.call('SET', idem, body_hash .. '|' .. id, 'EX', idem_ttl) end
redis.call('HINCRBY', started, first, '1')
redis.call('ZADD', outbox, NOW_S, id .. ':1')
redis.call('ZADD', timers, expires, id)
redis.call('LPUSH', wake, '1')  -- one token at most: it wakes one idle sender
redis.call('LTRIM', wake, '0', '0')
return reply(vf, 'created', '')
