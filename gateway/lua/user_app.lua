-- KEYS: user hash. ARGV[5..]: encrypted app secret
-- Enrol (or replace) a user's authenticator app; the new secret starts with no used step.
local user = KEYS[1]
redis.call('HSET', user, 'app', ARGV[5], 'app:at', NOW_S)
redis.call('HDEL', user, 'app:last')
return {'ok', ''}
