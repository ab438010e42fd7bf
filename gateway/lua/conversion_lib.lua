-- Counting a conversion, shared by convert.lua and check.lua (an approving check counts its
-- own): one in the prefix's and the country's current pumping buckets, and the number (and
-- the user with it) remembered as converted. sec: Redis's time (whole seconds).
local function count_conversion(converted, prefix_bucket, country_bucket, c, sec)
  local bucket_size = math.max(math.floor(c.window / c.buckets), 1)
  for _, key in ipairs({prefix_bucket, country_bucket}) do
    redis.call('HINCRBY', key, 'c', 1)
    redis.call('EXPIRE', key, bucket_size * (c.buckets + 1))
  end
  if c.memory > 0 then
    redis.call('HSET', converted, 'at', sec)
    if c.user ~= '' then redis.call('HSET', converted, 'u:' .. c.user, sec) end
    redis.call('EXPIRE', converted, c.memory)
  end
end
