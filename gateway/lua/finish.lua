-- KEYS: vf, audit stream, timers, the number's fraud block (vf again when none), then the ending
-- keys (prelude.lua). ARGV[5..]: status, reason, attempt ('0' = any), only_if_due ('1'/'0'),
-- seconds to block the number from new verifications ('' = none; a fraud report), the number blocked
-- Ends a pending verification (cancel, expiry, keypress approval, fraud, no input, timeout).
-- A fraud report's block is set in the same step, so no crash can end one without the other.
-- Past its expiry (Redis time) it ends as expired instead: nothing approves after expiry.
local vf, stream, block = KEYS[1], KEYS[2], KEYS[4]
TIMERS = KEYS[3]
local status, reason, attempt, only_if_due, block_for = ARGV[5], ARGV[6], ARGV[7], ARGV[8], tonumber(ARGV[9])
if redis.call('EXISTS', vf) == 0 then return reply(vf, 'not_found', '') end
if not is_pending(vf) then return reply(vf, 'noop', hget(vf, 'status')) end
local expired = expire_if_due(vf, stream)
if expired then return reply(vf, 'ended', expired) end
if only_if_due == '1' then return reply(vf, 'not_due', hget(vf, 'expires')) end
if attempt ~= '0' and hget(vf, 'n') ~= attempt then return reply(vf, 'stale', '') end
-- The block key names the number the caller read; a verification's number never changes.
if block_for and hget(vf, 'to') ~= ARGV[10] then return redis.error_reply('the block names another number') end
local record = finish(vf, stream, status, reason)
if block_for then redis.call('SET', block, '0# pressed (fraud reported) on ' .. id_of(vf), 'EX', block_for) end
return reply(vf, 'ended', record)
