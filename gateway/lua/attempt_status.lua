-- KEYS: vf. ARGV[5..]: attempt, status, rank, error code ('' none), carrier sid ('' none), '1' to
-- answer the record too ('' for kind and status only: a status callback needs no record)
-- Callbacks repeat and arrive out of order: a status only ever moves forward in rank.
local vf = KEYS[1]
local kind, status = move_status(vf, ARGV[5], ARGV[6], tonumber(ARGV[7]), ARGV[8], ARGV[9])
if ARGV[10] ~= '1' then return {kind, status or '', NOW_S} end
return reply(vf, kind, status)
