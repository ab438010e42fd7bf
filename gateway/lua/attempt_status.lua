-- KEYS: vf. ARGV[5..]: attempt, status, rank, error code ('' none), carrier sid ('' none)
-- Callbacks repeat and arrive out of order: a status only ever moves forward in rank.
local vf = KEYS[1]
local kind, status = move_status(vf, ARGV[5], ARGV[6], tonumber(ARGV[7]), ARGV[8], ARGV[9])
return reply(vf, kind, status)
