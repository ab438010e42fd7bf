-- The pumping windows (docs/abuse.md), shared by admit.lua and convert.lua. A range's
-- or a country's window is one hash: sends in fields 's<bucket>', conversions in 'c<bucket>',
-- buckets of window / buckets seconds numbered by Redis's clock (sec, whole seconds), so the
-- window slides by one bucket and no caller chooses a key by its own clock. w: {window, buckets}.
local function window_bucket(w, sec)
  local size = math.max(math.floor(w.window / w.buckets), 1)
  return math.floor(sec / size), size
end

-- Sends and conversions in the window: the current bucket and the buckets - 1 before it. The
-- hash holds at most a few buckets more (window_add), so it is read whole: no field names to
-- build, and a bucket's number read back only for the fields there are.
local function window_sum(key, w, sec)
  local current = window_bucket(w, sec)
  local first = current - w.buckets + 1
  local v = redis.call('HGETALL', key)
  local sends, conversions = 0, 0
  for i = 1, #v, 2 do
    local field = v[i]
    local b = tonumber(string.sub(field, 2))
    if b and b >= first and b <= current then
      if string.byte(field) == 115 then  -- 's'
        sends = sends + tonumber(v[i + 1])
      else
        conversions = conversions + tonumber(v[i + 1])
      end
    end
  end
  return sends, conversions
end

-- One send ('s') or conversion ('c') in the current bucket. Only the first write of a field in
-- a bucket prunes and renews the hash's life (buckets + 1 buckets), so the hash lives past
-- every bucket of its window. Then at a bucket b's first write the hash's last write was in
-- b - buckets - 1 or later and, every bucket's first write pruning as this one does, it holds
-- no field older than b - 2 * buckets: deleting the buckets from there to b - buckets leaves
-- only the window's (bounded, no scan). A changed PUMPING_WINDOW numbers buckets afresh: the
-- old numbering's fields (at most the 2 * buckets a hash held) are never summed again
-- (window_sum bounds both ends) and stay at most that many, until the hash expires.
local function window_add(key, what, w, sec)
  local current, size = window_bucket(w, sec)
  -- '%d', not `..`: Lua formats a number for `..` with '%.14g', several times the cost.
  if redis.call('HINCRBY', key, what .. string.format('%d', current), '1') > 1 then return end
  local old = {}
  for b = current - 2 * w.buckets, current - w.buckets do
    local name = string.format('%d', b)
    old[#old + 1] = 's' .. name
    old[#old + 1] = 'c' .. name
  end
  redis.call('HDEL', key, unpack(old))
  redis.call('EXPIRE', key, size * (w.buckets + 1))
end
