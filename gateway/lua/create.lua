-- KEYS: vf, idempotency (or vf again when none), fraud block, SMS opt-out,
--       live key (or vf again when none): at most one pending verification per live key
-- ARGV[5..]: body hash, idempotency ttl, key ttl, id,
--            chain (JSON) when not opted out, chain (JSON) when opted out, then field pairs
-- (limits on sends are admitted before, by admit.lua: gateway/abuse.py)
local vf, idem, block, optout, live = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local body_hash, idem_ttl = ARGV[5], tonumber(ARGV[6])
local key_ttl, id = tonumber(ARGV[7]), ARGV[8]
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
    local other = 'gw:vf:' .. current
    local expires = tonumber(redis.call('HGET', other, 'expires') or '0')
    if redis.call('HGET', other, 'status') == 'pending' and NOW < expires then
      return reply(other, 'live', current)
    end
  end
end
if redis.call('EXISTS', block) == 1 then return reply(vf, 'blocked', 'fraud') end
local chain = ARGV[9]
if redis.call('EXISTS', optout) == 1 then chain = ARGV[10] end
if chain == '[]' then return reply(vf, 'blocked', 'opted_out') end
local first = cjson.decode(chain)[1]
redis.call('HSET', vf, 'id', id, 'status', 'pending', 'reason', '', 'created', NOW_S, 'chain', chain,
           'pos', 0, 'channel', first, 'n', 1, 'fails', 0, 'code', '', 'enc', '',
           'a1:ch', first, 'a1:st', 'queued', 'a1:rk', 0, 'a1:at', NOW_S)
for i = 11, #ARGV, 2 do redis.call('HSET', vf, ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', vf, key_ttl)
if live ~= vf then redis.call('SET', live, id, 'EX', key_ttl) end
if idem ~= vf then redis.call('SET', idem, body_hash .. '|' .. id, 'EX', idem_ttl) end
redis.call('HINCRBY', 'gw:metrics:started', first, 1)
return reply(vf, 'created', id)
