-- KEYS: vf. ARGV[5..]: attempt, status, rank, error code ('' none), carrier sid ('' none)
-- Callbacks repeat and arrive out of order: a status only ever moves forward in rank.
local vf = KEYS[1]
local attempt, status, rank, err, sid = ARGV[5], ARGV[6], tonumber(ARGV[7]), ARGV[8], ARGV[9]
if redis.call('EXISTS', vf) == 0 then return reply(vf, 'not_found', '') end
local n = tonumber(hget(vf, 'n') or '0')
local i = tonumber(attempt)
if i == nil or i < 1 or i > n then return reply(vf, 'no_attempt', '') end
local p = 'a' .. attempt .. ':'
if sid ~= '' then
  local known = hget(vf, p .. 'sid')
  if known and known ~= sid then return reply(vf, 'wrong_sid', '') end
  if not known then redis.call('HSET', vf, p .. 'sid', sid) end
end
local current = tonumber(hget(vf, p .. 'rk') or '0')
if rank <= current then return reply(vf, 'unchanged', hget(vf, p .. 'st'), tostring(n)) end
redis.call('HSET', vf, p .. 'st', status, p .. 'rk', rank)
if err ~= '' then redis.call('HSET', vf, p .. 'err', err) end
return reply(vf, 'changed', status, tostring(n))
