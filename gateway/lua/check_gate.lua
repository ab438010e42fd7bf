-- Before a code is checked: the checks of the verification's user, whatever number each of
-- their verifications names, share one window counter, so rotating `to` gains no guesses.
-- A confirmation of a new authenticator counts the same way: KEYS[1] is then the user's hash
-- and ARGV[5] names the user.
-- KEYS: vf (or user hash). ARGV: limit (0 = off), window (s), audit retention (ms), server name[, user id]
-- Answers {'ok'} or {'refused', 'user', retry_after}.
local vf = KEYS[1]
local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local user = ARGV[5] or redis.call('HGET', vf, 'user_id')
if limit <= 0 or not user or user == '' then return {'ok'} end
local key = 'gw:lim:checks:' .. user
local used = tonumber(redis.call('GET', key) or '0')
if used >= limit then
  local TIME = redis.call('TIME')
  local now = tonumber(TIME[1]) + tonumber(TIME[2]) / 1000000
  local f = redis.call('HMGET', vf, 'id', 'to', 'channel', 'client_ip', 'country')
  redis.call('HINCRBY', 'gw:metrics:refused', 'user', 1)
  local minid = string.format('%.0f', tonumber(TIME[1]) * 1000 - tonumber(ARGV[3]))
  local action = ARGV[5] and 'confirm' or 'check'
  redis.call('XADD', 'gw:audit', 'MINID', '~', minid, '*', 'event', 'refused', 'action', action,
             'status', 'refused', 'result', 'denied', 'reason', 'user', 'verification_id', f[1] or '',
             'user_id', user, 'phone_number', f[2] or '', 'channel', f[3] or 'totp', 'client_ip', f[4] or '',
             'country', f[5] or '', 'server_name', ARGV[4], 'created_at', now, 'ended_at', now)
  local ttl = redis.call('TTL', key)
  if ttl < 1 then ttl = window end
  return {'refused', 'user', tostring(ttl)}
end
if redis.call('INCR', key) == 1 then redis.call('EXPIRE', key, window) end
return {'ok'}
