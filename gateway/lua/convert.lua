-- A verification was approved: count a conversion in its prefix's and country's windows,
-- and remember that the number (and the user with it) has converted.
-- ARGV[1]: {number, user, prefix, country, window, buckets, memory} (JSON)
local TIME = redis.call('TIME')
local SEC = tonumber(TIME[1])
local p = cjson.decode(ARGV[1])
local bucket_size = math.max(math.floor(p.window / p.buckets), 1)
local bucket_now = math.floor(SEC / bucket_size)
for _, scope_id in ipairs({{'prefix', p.prefix}, {'country', p.country}}) do
  local key = 'gw:pump:' .. scope_id[1] .. ':' .. scope_id[2] .. ':' .. bucket_now
  redis.call('HINCRBY', key, 'c', 1)
  redis.call('EXPIRE', key, bucket_size * (p.buckets + 1))
end
if p.memory > 0 then
  local key = 'gw:conv:' .. p.number
  redis.call('HSET', key, 'at', SEC)
  if p.user ~= '' then redis.call('HSET', key, 'u:' .. p.user, SEC) end
  redis.call('EXPIRE', key, p.memory)
end
return 'ok'
