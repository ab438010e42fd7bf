-- Shared by every script. ARGV[1..4] is the context: server name, server ip, audit
-- retention (ms), seconds a finished verification stays readable. Script arguments start at ARGV[5].
-- "Now" is Redis's own clock (TIME), so every expiry, interval and step decision uses one
-- clock, whatever the skew between the nodes that call (Redis >= 5 replicates scripts by
-- effects, so reading TIME before writing is allowed).
local TIME = redis.call('TIME')
local NOW_S = TIME[1] .. '.' .. string.format('%06d', tonumber(TIME[2]))
local NOW = tonumber(NOW_S)
local SERVER, SERVER_IP = ARGV[1], ARGV[2]
-- The audit stream's trim point (MINID), made only by a script that writes audit: every script
-- runs this prelude, and formatting it cost each of them as much as a command.
local function audit_minid()
  return string.format('%d', tonumber(TIME[1]) * 1000 - tonumber(ARGV[3]))  -- '%d': integral ms, no float formatting
end
local RETENTION = tonumber(ARGV[4])

-- A verification's key (or one naming it) lives until its expiry plus the retention, then
-- Redis drops it. With a value, the key is set to it (a string key) with that life.
local function keep_until(key, expires, value)
  local ttl = math.max(math.floor(expires - NOW), 0) + RETENTION + 1
  if value then return redis.call('SET', key, value, 'EX', ttl) end
  redis.call('EXPIRE', key, ttl)
end

-- An absolute time `seconds` from now, but no later than `latest` (absolute; '' or nil: no
-- cap), in the form every record stores.
local function after(seconds, latest)
  local t = NOW + tonumber(seconds)
  local cap = tonumber(latest or '')
  if cap and cap < t then t = cap end
  return string.format('%.6f', t)
end

-- The timers' schedule (gw:timers), for a script that may end a verification: set from its
-- KEYS before anything runs, so that finish() drops the ended verification's timer.
local TIMERS = nil

local function hget(key, field)
  local v = redis.call('HGET', key, field)
  if v == false then return nil end
  return v
end

-- A verification's id: the end of the record's key, after the last colon (gateway/keys.py
-- verification(): an id holds no colon; tests/test_keys.py). Records of releases before the
-- compact record (and PREVIOUS_RELEASE_RECORDS) also store it, under the same key: no read needed.
local function id_of(vf)
  return string.match(vf, '[^:]+$')
end

-- A pending verification's next timer in TIMERS: its expiry or its delivery deadline, whichever
-- comes first (once an attempt is sent; before, create and advance set the expiry).
local function set_next_timer(vf)
  local due = tonumber(hget(vf, 'expires'))
  local deadline = tonumber(hget(vf, 'deadline') or '')
  if deadline and deadline < due then due = deadline end
  redis.call('ZADD', TIMERS, string.format('%.6f', due), id_of(vf))
end

-- When an attempt started: its `a<i>:at`, or for a compact record's first attempt the
-- verification's start (create.lua).
local function attempt_start(vf, i)
  local at = hget(vf, 'a' .. i .. ':at')
  if not at and i == 1 then at = hget(vf, 'created') end
  return tonumber(at)
end

-- created: the verification's start when the caller has read it (a compact record's first attempt).
local function attempts_of(key, n, created)
  local list = {}
  for i = 1, n do
    local p = 'a' .. i .. ':'
    local v = redis.call('HMGET', key, p .. 'ch', p .. 'st', p .. 'err', p .. 'at', p .. 'why')
    local at = tonumber(v[4])
    if not at then at = (i == 1 and tonumber(created or '')) or attempt_start(key, i) end
    list[i] = {channel = v[1], status = v[2], error_code = tonumber(v[3]) or cjson.null,
               started_at = at, ended_because = v[5] or cjson.null}
  end
  return list
end

-- Usage report counters, read by gateway/reports.py, kept here so that a report never scans
-- the audit stream. Per UTC day the verification started (days since the epoch, carried in
-- its id): the day's totals (a few dozen fields, so a year of daily rows is one quick read),
-- the same per first channel and per country (dims), and carrier errors and charged sends
-- (x). Dims and x are also summed per block of days, so a long range reads a block instead of
-- each of its days. The keys come last in KEYS, in gateway/keys.py `Ending` order:
-- ended counter, day, day dims, day x, block dims, block x, then the conversions' queue.
-- Field names: <metric> = started, <status>, rescued, t<seconds-to-approve bucket>.
local ENDING_KEYS = 7
local USAGE_TTL = 1100 * 86400  -- three years
local function count_usage(status, created, country, attempts)
  -- Built here, not with the constants above: only an end needs them, and every script runs the prelude.
  local USAGE_BOUNDS = {1, 2, 3, 5, 8, 13, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1800}
  local CHARGED = {sms = {sent = 1, delivered = 1, undelivered = 1}, call = {answered = 1, completed = 1}}
  local base = #KEYS - ENDING_KEYS
  local key = KEYS[base + 2]
  local dims, xs = {KEYS[base + 3], KEYS[base + 5]}, {KEYS[base + 4], KEYS[base + 6]}
  local first = attempts[1] and attempts[1].channel or ''
  local last = attempts[#attempts] and attempts[#attempts].channel or ''
  local metrics = {'started', status}
  if status == 'approved' then
    if last ~= first then metrics[#metrics + 1] = 'rescued' end
    local bucket = #USAGE_BOUNDS + 1
    for i, bound in ipairs(USAGE_BOUNDS) do
      if NOW - created <= bound then bucket = i break end
    end
    metrics[#metrics + 1] = 't' .. string.format('%d', bucket)
  end
  local x = {}
  for _, a in ipairs(attempts) do
    if a.error_code ~= cjson.null then x[#x + 1] = 'err:' .. a.error_code end
    local kind = (a.channel == 'call') and 'call' or 'sms'
    if a.channel ~= 'totp' and CHARGED[kind][a.status] then x[#x + 1] = 'send:' .. country .. ':' .. kind end
  end
  -- A key's life is renewed by the day's first end and whenever a field is new in it (so also
  -- when the key is), not by every end: within a day of the last write, for five fewer calls.
  local renew = redis.call('HINCRBY', key, 'started', '1') == 1
  local function count(hash, field, fresh)
    return redis.call('HINCRBY', hash, field, '1') == 1 or fresh
  end
  local fresh = renew
  for i = 2, #metrics do fresh = count(key, metrics[i], fresh) end
  if fresh then redis.call('EXPIRE', key, USAGE_TTL) end
  for i = 1, 2 do
    fresh = renew
    for _, m in ipairs(metrics) do
      fresh = count(dims[i], 'ch:' .. first .. '|' .. m, fresh)
      fresh = count(dims[i], 'cc:' .. country .. '|' .. m, fresh)
    end
    if fresh then redis.call('EXPIRE', dims[i], USAGE_TTL) end
    fresh = renew
    for _, f in ipairs(x) do fresh = count(xs[i], f, fresh) end
    if fresh and #x > 0 then redis.call('EXPIRE', xs[i], USAGE_TTL) end
  end
end

-- End a pending verification: set the final status, forget the code, append the
-- audit record, count it, and wake long-polling readers. Returns the record (JSON).
-- Only in scripts given the ending keys (count_usage).
local function finish(key, stream, status, reason)
  redis.call('HSET', key, 'status', status, 'reason', reason, 'ended', NOW_S)
  redis.call('HDEL', key, 'code', 'enc', 'keep', 'keepd', 'deadline')
  -- The id is the key's end, never a field: asking for it would scan the whole listpack.
  local f = redis.call('HMGET', key, 'user_id', 'first_name', 'last_name', 'email', 'to',
                       'channel', 'client_ip', 'created', 'n', 'chain', 'country')
  table.insert(f, 1, id_of(key))
  local attempts = attempts_of(key, tonumber(f[10]) or 0, f[9])
  local record = {
    verification_id = f[1], user_id = f[2] or '', first_name = f[3] or '', last_name = f[4] or '',
    email = f[5] or '', phone_number = f[6], channel = f[7], mode = f[7],
    result = (status == 'approved') and 'approved' or 'denied', status = status,
    reason = reason, client_ip = f[8] or '', server_name = SERVER, server_ip = SERVER_IP,
    created_at = tonumber(f[9]), ended_at = NOW, channels = f[11], country = f[12] or '',
    attempts = cjson.encode(attempts),
  }
  -- The times as stored and as read (strings): tostring() of a number costs several times more.
  local fields = {'created_at', f[9] or '', 'ended_at', NOW_S}
  for k, v in pairs(record) do
    if k ~= 'created_at' and k ~= 'ended_at' then
      fields[#fields + 1] = k
      fields[#fields + 1] = tostring(v)
    end
  end
  redis.call('XADD', stream, 'MINID', '~', audit_minid(), '*', unpack(fields))
  redis.call('HINCRBY', KEYS[#KEYS - ENDING_KEYS + 1], f[7] .. '|' .. status .. '|' .. reason, '1')
  count_usage(status, tonumber(f[9]), f[12] or '', attempts)
  -- An approval's conversion is counted by the workers' supervisor (gateway/abuse.py
  -- fold_conversions): its windows and the number's mark are named by the number, which a check's
  -- caller does not know before this script (and every script declares the keys it touches).
  if status == 'approved' and f[6] then
    redis.call('RPUSH', KEYS[#KEYS], TIME[1] .. '|' .. f[6] .. '|' .. (f[12] or '') .. '|' .. (f[2] or ''))
  end
  -- A channel, not a key (gateway/keys.py DONE_PREFIX): the one name spelled here.
  redis.call('PUBLISH', 'gw:done:' .. f[1], status)
  if TIMERS then redis.call('ZREM', TIMERS, f[1]) end
  return cjson.encode(record)
end

-- A user's code checks and authenticator confirmations share one window counter, whatever
-- number each verification names, so rotating `to` gains no guesses (gateway/abuse.py). source:
-- the verification (or user hash) the refusal's audit record describes. Seconds to wait when
-- refused (counted and audited), else nil once this check is counted.
local function count_check(counter, refused, stream, allowance, window, source, action, user_id)
  local used = tonumber(redis.call('GET', counter) or '0')
  if used < allowance then
    if redis.call('INCR', counter) == 1 then redis.call('EXPIRE', counter, window) end
    return nil
  end
  local f = redis.call('HMGET', source, 'id', 'to', 'channel', 'client_ip', 'country')
  if f[2] then f[1] = id_of(source) end  -- a verification (a user's hash has no number)
  redis.call('HINCRBY', refused, 'user', '1')
  redis.call('XADD', stream, 'MINID', '~', audit_minid(), '*', 'event', 'refused', 'action', action,
             'status', 'refused', 'result', 'denied', 'reason', 'user', 'verification_id', f[1] or '',
             'user_id', user_id, 'phone_number', f[2] or '', 'channel', f[3] or 'totp', 'client_ip', f[4] or '',
             'country', f[5] or '', 'server_name', SERVER, 'created_at', NOW, 'ended_at', NOW)
  local ttl = redis.call('TTL', counter)
  if ttl < 1 then ttl = window end
  return ttl
end

local function is_pending(key)
  return hget(key, 'status') == 'pending'
end

-- Every script answers its outcome, Redis's time, and the record as it now stands, so the
-- caller never needs a second round trip to show the result or to schedule from it:
-- {kind, value, time, the record's id (the end of its key), the record's fields (HGETALL)}.
local function reply(key, kind, value)
  return {kind, value or '', NOW_S, id_of(key), redis.call('HGETALL', key)}
end

-- Move an attempt's status forward in rank (callbacks repeat and arrive out of order), noting
-- the carrier's sid once; answers the outcome kind, the status now and the attempt count.
local function move_status(vf, attempt, status, rank, err, sid)
  if redis.call('EXISTS', vf) == 0 then return 'not_found', '', '' end
  local n = tonumber(hget(vf, 'n') or '0')
  local i = tonumber(attempt)
  if i == nil or i < 1 or i > n then return 'no_attempt', '', '' end
  local p = 'a' .. attempt .. ':'
  if sid ~= '' then
    local known = hget(vf, p .. 'sid')
    if known and known ~= sid then return 'wrong_sid', '', '' end
    if not known then redis.call('HSET', vf, p .. 'sid', sid) end
  end
  local current = tonumber(hget(vf, p .. 'rk') or '0')
  if rank <= current then return 'unchanged', hget(vf, p .. 'st'), tostring(n) end
  redis.call('HSET', vf, p .. 'st', status, p .. 'rk', rank)
  if err ~= '' then redis.call('HSET', vf, p .. 'err', err) end
  -- The current attempt delivered: its delivery deadline can no longer act (run_timers and
  -- advance.lua skip a delivered attempt, and delivered is final), so it is not kept.
  if status == 'delivered' and i == n then redis.call('HDEL', vf, 'deadline') end
  return 'changed', status, tostring(n)
end

-- Past its expiry a pending verification ends: a two-way SMS without a right reply is
-- denied (reply_timeout), anything else expires. Returns the record, or nil if not due.
-- expires, channel: the record's, when the caller has read them.
local function expire_if_due(key, stream, expires, channel)
  expires = tonumber(expires or hget(key, 'expires') or '0')
  if expires == 0 or NOW < expires then return nil end
  if (channel or hget(key, 'channel')) == 'sms_reply' then return finish(key, stream, 'denied', 'reply_timeout') end
  return finish(key, stream, 'expired', 'expired')
end
