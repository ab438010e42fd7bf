-- KEYS: the operators' action stream. ARGV[5..]: field pairs
-- Appends one operator action, trimming by age at Redis's time (like the audit stream).
local fields = {}
for i = 5, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('XADD', KEYS[1], 'MINID', '~', audit_minid(), '*', unpack(fields))
return {'ok', ''}
