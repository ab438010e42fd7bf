-- KEYS: vf, reply index of (gateway sender, user number), audit stream, timers. ARGV[5..]: attempt, index ttl, entries kept
-- Remembers that a two-way prompt is going out, so the user's reply finds its verification.
-- Scored by the time the prompt went out: the inbound webhook matches the newest first.
local vf, index, stream = KEYS[1], KEYS[2], KEYS[3]
TIMERS = KEYS[4]
local attempt, ttl, keep = ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])
if redis.call('EXISTS', vf) == 0 then return reply(vf, 'not_found', '') end
if not is_pending(vf) then return reply(vf, 'finished', '') end
local expired = expire_if_due(vf, stream)
if expired then return reply(vf, 'ended', expired) end
if hget(vf, 'n') ~= attempt or hget(vf, 'channel') ~= 'sms_reply' then return reply(vf, 'stale', '') end
redis.call('ZADD', index, NOW, id_of(vf))
redis.call('ZREMRANGEBYRANK', index, 0, -(keep + 1))
-- Never shorten the index's life: an older entry may still wait for its reply.
if redis.call('TTL', index) < ttl then redis.call('EXPIRE', index, ttl) end
return reply(vf, 'ok', '')
