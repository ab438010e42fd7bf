-- Shared by the abuse scripts (before the script). ARGV[1] is the request (MessagePack); its `keys`
-- name each key by its position in KEYS (gateway/abuse_store.py `_keyed`), so every key is
-- declared and none is spelled here.
-- "Now" is Redis's clock, as in prelude.lua.
local TIME = redis.call('TIME')
local SEC = tonumber(TIME[1])
local NOW = SEC + tonumber(TIME[2]) / 1000000
local p = cmsgpack.unpack(ARGV[1])
local K = {}
for name, at in pairs(p.keys) do K[name] = KEYS[at] end

-- The caller chose the keys that depend on the time (p.clock: the spend day, the limits hashes'
-- window generation) by its own clock. When Redis's clock says otherwise the script changes
-- nothing and answers {'clock', Redis's time}; the caller chooses again (gateway/abuse_store.py
-- _clocked).
local function clock_disagrees()
  local c = p.clock
  return c ~= nil and (math.floor(SEC / 86400) ~= c.day
                       or (c.generation ~= nil and math.floor(SEC / c.window) ~= c.generation))
end
local CLOCK = {'clock', string.format('%.6f', NOW)}

-- One record in the audit stream (K.audit), trimmed by age at Redis's time.
local function audit(fields)
  local flat = {}
  for k, v in pairs(fields) do
    flat[#flat + 1] = k
    flat[#flat + 1] = tostring(v)
  end
  local minid = string.format('%.0f', SEC * 1000 - p.audit_retention_ms)
  redis.call('XADD', K.audit, 'MINID', '~', minid, '*', unpack(flat))
end
