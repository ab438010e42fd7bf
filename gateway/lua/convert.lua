-- A verification was approved: count a conversion in its prefix's and country's windows,
-- and remember that the number (and the user with it) has converted.
-- ARGV[1]: {keys: {converted}, pump_keys: {prefix, country: the current bucket}, user, window,
-- buckets, memory} (JSON; after abuse_lib.lua)
if clock_disagrees() then return CLOCK end
local bucket_size = math.max(math.floor(p.window / p.buckets), 1)
for _, scope in ipairs({'prefix', 'country'}) do
  local key = PUMP[scope][#PUMP[scope]]
  redis.call('HINCRBY', key, 'c', 1)
  redis.call('EXPIRE', key, bucket_size * (p.buckets + 1))
end
if p.memory > 0 then
  local key = K.converted
  redis.call('HSET', key, 'at', SEC)
  if p.user ~= '' then redis.call('HSET', key, 'u:' .. p.user, SEC) end
  redis.call('EXPIRE', key, p.memory)
end
return 'ok'
