-- Admission of one send (a start, a resend or a fallback): every limit, breaker and budget
-- in one atomic call. Nothing is counted unless everything admits, so a refused request
-- spends nobody's allowance. Every key comes in KEYS, named by the request (abuse_lib.lua);
-- the spend day is chosen by the caller (gateway/abuse.py _timed), the pumping windows' buckets
-- here at Redis's time (conversion_lib.lua).
-- ARGV[1]: the request (MessagePack, see gateway/abuse.py `_payload`).
-- Answers {'ok', warn ('' or scope list), tripped ('' or scope:id)} or
--         {'refused', reason, retry_after, tripped}.
if clock_disagrees() then return CLOCK end
if p.idem and redis.call('EXISTS', K.idem) == 1 then return {'ok', '', ''} end

-- The send backlog's bound (SEND_BACKLOG_MAX; p.backlog, with K.outbox, starts only):
-- past it a start is refused before anything is counted or written, rather than queueing a
-- send that would go out late. Due entries only: retries waiting for their time are not backlog.
-- The whole queue's size first (ZCARD is O(1)): counting the due ones walks a small queue's
-- entries, parsing each score, and the queue is nearly always far below the bound.
local backlog = p.backlog
if backlog and backlog > 0 and redis.call('ZCARD', K.outbox) > backlog
    and redis.call('ZCOUNT', K.outbox, '-inf', NOW) > backlog then
  return {'refused', 'backlog', '0', ''}
end

local function count(key)
  return tonumber(redis.call('GET', key) or '0')
end

local function ttl_of(key, fallback)
  local ttl = redis.call('TTL', key)
  if ttl < 1 then return fallback end
  return ttl
end

-- A fixed window counter over its limit: seconds until it resets, else nil.
local function over(key, limit_window)
  local limit = limit_window[1]
  if limit <= 0 then return nil end
  if count(key) >= limit then return ttl_of(key, limit_window[2]) end
  return nil
end

local function bump(key, window)
  if redis.call('INCR', key) == 1 then redis.call('EXPIRE', key, window) end
end

-- The start counters of a number, a (number, client) pair, a client address and a user live as
-- fields of shared hashes (gateway/keys.py limits), "<count>:<end>": a fixed window from the
-- counter's first send, as a key of its own with that TTL would be. A hash holds the counters
-- begun in one generation (Redis's seconds // the window) and expires when the last of them can
-- end, two generations after its own began; so a counter is in this generation's hash or, while
-- its window runs, the last one's (K[shard .. '_prev']), where it goes on being counted. A pair's
-- counter is in its number's shard.
local clock = p.clock
local counters = {}
local function counter(name)
  local found = counters[name]
  if found then return found end
  local shard = name == 'pair' and 'number' or name
  local field, key = p.fields[name], K[shard]
  local value = redis.call('HGET', key, field)
  if not value then
    key = K[shard .. '_prev']
    value = redis.call('HGET', key, field)
  end
  local count, ends = 0, nil
  if value then
    local c, e = string.match(value, '^(%d+):(%d+)$')
    if e and tonumber(e) > SEC then count, ends = tonumber(c), tonumber(e) end
  end
  if not ends then key = K[shard] end
  found = {count = count, ends = ends, key = key, current = key == K[shard]}
  counters[name] = found
  return found
end

-- Seconds until a shared counter over its limit resets, else nil.
local function over_shared(name, limit_window)
  local limit = limit_window[1]
  if limit <= 0 then return nil end
  local c = counter(name)
  if c.count >= limit then return c.ends - NOW end
  return nil
end

local function bump_shared(name)
  local c = counter(name)
  local ends = c.ends or (SEC + clock.window)
  redis.call('HSET', c.key, p.fields[name], (c.count + 1) .. ':' .. ends)
  local generation = clock.generation + (c.current and 2 or 1)
  redis.call('EXPIREAT', c.key, generation * clock.window)
end

local pump = p.pump

-- Trip a breaker: refuse sends to the scope for the cool-off, visibly and audited.
local function trip(scope, id, sends, conversions)
  local until_ = NOW + pump.cooloff
  local state = cjson.encode({scope = scope, id = id, tripped_at = NOW, ['until'] = until_,
                              sends = sends, conversions = conversions})
  redis.call('SET', K['breaker_' .. scope], state, 'EX', pump.cooloff)
  redis.call('ZADD', K.breakers, until_, scope .. ':' .. id)
  redis.call('ZREMRANGEBYSCORE', K.breakers, '-inf', NOW)
  redis.call('HINCRBY', K.trips, scope, '1')
  audit({event = 'breaker_trip', scope = scope, breaker = id, sends = sends, conversions = conversions,
         server_name = p.record.server_name, ended_at = NOW, created_at = NOW})
  return scope .. ':' .. id
end

local tripped = ''

-- A breaker refuses when tripped; an untripped one trips when the window shows pumping.
local function breaker(scope, id, min_sends)
  local key = K['breaker_' .. scope]
  if redis.call('EXISTS', key) == 1 then return ttl_of(key, pump.cooloff) end
  if min_sends <= 0 then return nil end
  local sends, conversions = window_sum(K['window_' .. scope], pump, SEC)
  if sends >= min_sends and conversions < pump.min_conversion * sends then
    tripped = trip(scope, id, sends, conversions)
    return pump.cooloff
  end
  return nil
end

local conv_key = K.converted
local converted = redis.call('EXISTS', conv_key) == 1
local L = p.limits
local function check()
  if p.limited then
    local r = over_shared('pair', L.pair)
    if r then return 'number', r end
    r = over_shared('number', L.number)
    -- 18F's lesson: someone flooding a victim's number must not lock the victim out. A client
    -- already let through for this number in the window, or a user who has verified this
    -- number before, still gets its own (number, client) allowance.
    if r and counter('pair').count == 0 and not (p.user ~= '' and redis.call('HEXISTS', conv_key, 'u:' .. p.user) == 1) then
      return 'number', r
    end
    for _, axis in ipairs({{'ip', 'client_ip'}, {'user', 'user'}}) do
      local lw = L[axis[1]]
      if lw then
        r = over_shared(axis[1], lw)
        if r then return axis[2], r end
      end
    end
    r = over(K.country, L.country)
    if r then return 'country', r end
  end
  local r = over(K.global, L.global)
  if r then return 'global', r end
  if p.paid then
    if p.confirm_call then
      r = over(K.confirm, L.confirm)
      if r then return 'number', r end
    end
    if not converted then
      r = breaker('prefix', p.prefix, pump.min_sends)
      if r then return 'fraud_suspected', r end
      r = breaker('country', p.country, pump.country_min_sends)
      if r then return 'fraud_suspected', r end
    end
  end
  return nil, nil
end

local reason, retry_after = check()
local spend_key = K.spend
local s = p.spend
if not reason and p.paid and not converted then
  local spent = redis.call('HMGET', spend_key, '*', p.country)
  local global_spent, country_spent = tonumber(spent[1]) or 0, tonumber(spent[2]) or 0
  if (s.budget > 0 and global_spent + s.cost > s.budget)
      or (s.country_budget > 0 and country_spent + s.cost > s.country_budget) then
    reason, retry_after = 'spend_cap', 86400 - SEC % 86400
  end
end

if reason then
  redis.call('HINCRBY', K.refused, reason, '1')
  local record = p.record
  record.reason, record.created_at, record.ended_at = reason, NOW, NOW
  audit(record)
  return {'refused', reason, tostring(math.max(math.ceil(retry_after), 1)), tripped}
end

if p.limited then
  for _, name in ipairs({'pair', 'number', 'ip', 'user'}) do
    local lw = L[name]
    if lw and lw[1] > 0 then bump_shared(name) end
  end
  if L.country[1] > 0 then bump(K.country, L.country[2]) end
end
if L.global[1] > 0 then bump(K.global, L.global[2]) end
local warn = ''
if p.paid then
  if p.confirm_call and L.confirm[1] > 0 then bump(K.confirm, L.confirm[2]) end
  window_add(K.window_prefix, 's', pump, SEC)
  window_add(K.window_country, 's', pump, SEC)
  -- Spend is counted for converted numbers too: they pass the cap, not the books.
  local global_now = redis.call('HINCRBY', spend_key, '*', s.cost)
  local country_now = redis.call('HINCRBY', spend_key, p.country, s.cost)
  -- The day's key lives three days from its first send (its first cost), not renewed by each.
  if global_now == s.cost then redis.call('EXPIRE', spend_key, '259200') end
  local warned = {}
  if s.budget > 0 and global_now >= 0.8 * s.budget and global_now - s.cost < 0.8 * s.budget then
    warned[#warned + 1] = '*'
  end
  if s.country_budget > 0 and country_now >= 0.8 * s.country_budget
      and country_now - s.cost < 0.8 * s.country_budget then
    warned[#warned + 1] = p.country
  end
  for _, scope in ipairs(warned) do redis.call('HINCRBY', K.warnings, scope, '1') end
  warn = table.concat(warned, ',')
end
return {'ok', warn, tripped}
