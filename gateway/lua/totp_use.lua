-- KEYS: the method's hash (user hash for the app, token hash for a token).
-- ARGV[5..]: secret field, encrypted secret as read, owner user id ('' for the app), last-step field, step
-- Accept a matched time step only once: it must be later than the last accepted one, and the
-- secret (and the token's owner) must still be what the caller checked the code against.
local method = KEYS[1]
local secret_field, secret, owner, last_field = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local step = tonumber(ARGV[9])
if hget(method, secret_field) ~= secret then return {'changed', ''} end
if owner ~= '' and hget(method, 'user') ~= owner then return {'changed', ''} end
local last = tonumber(hget(method, last_field) or '')
if last ~= nil and step <= last then return {'replay', tostring(last)} end
redis.call('HSET', method, last_field, ARGV[9])
return {'ok', ARGV[9]}
