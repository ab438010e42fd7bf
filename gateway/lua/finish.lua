-- KEYS: vf, audit stream. ARGV[5..]: status, reason, attempt ('0' = any), only_if_due ('1'/'0')
-- Ends a pending verification (cancel, expiry, keypress approval, fraud, no input, timeout).
local vf, stream = KEYS[1], KEYS[2]
local status, reason, attempt, only_if_due = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
if redis.call('EXISTS', vf) == 0 then return reply(vf, 'not_found', '') end
if not is_pending(vf) then return reply(vf, 'noop', hget(vf, 'status')) end
if only_if_due == '1' then
  local expired = expire_if_due(vf, stream)
  if expired then return reply(vf, 'ended', expired) end
  return reply(vf, 'not_due', hget(vf, 'expires'))
end
if attempt ~= '0' and hget(vf, 'n') ~= attempt then return reply(vf, 'stale', '') end
return reply(vf, 'ended', finish(vf, stream, status, reason))
