-- Count the conversions that approvals queued (prelude.lua finish(): "<second>|<number>|<country>|
-- <user>" in K.queue), oldest first: one in the prefix's and the country's windows in the bucket
-- of the approval's second, and the number (and the user with it) remembered as converted.
-- ARGV[1]: {keys: {queue, c<i>, p<i>, n<i>: entry i's converted mark, prefix window and country
-- window}, entries, keyed (whether entry i has its keys), window, buckets, memory} (MessagePack;
-- after abuse_lib.lua and conversion_lib.lua). The entries are the queue's head as the caller read it: when it is no
-- longer (another supervisor counted them first), nothing is counted and the answer is 'moved'.
local n = #p.entries
local head = redis.call('LRANGE', K.queue, 0, n - 1)
for i = 1, n do
  if head[i] ~= p.entries[i] then return 'moved' end
end
local now_bucket = window_bucket(p, SEC)
for i = 1, n do
  local at, user = string.match(p.entries[i], '^(%d+)|[^|]+|[^|]*|(.*)$')
  -- An entry in no other form, or one its caller could not key (none is written so), is dropped,
  -- not left to stop the queue.
  if at and p.keyed[i] then
    -- Counted late (no supervisor ran for a window): its bucket would never be summed again, and a
    -- field that old is past window_add's pruning, so only the number is remembered.
    if window_bucket(p, tonumber(at)) > now_bucket - p.buckets then
      window_add(K['p' .. i], 'c', p, tonumber(at))
      window_add(K['n' .. i], 'c', p, tonumber(at))
    end
    if p.memory > 0 then
      redis.call('HSET', K['c' .. i], 'at', at)
      if user ~= '' then redis.call('HSET', K['c' .. i], 'u:' .. user, at) end
      redis.call('EXPIRE', K['c' .. i], p.memory)
    end
  end
end
redis.call('LTRIM', K.queue, n, -1)
return 'ok'
