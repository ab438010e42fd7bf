-- KEYS: vf, outbox, timers. ARGV[5..]: verification id, attempt, status, rank, carrier sid ('' none)
-- The carrier took an attempt (or a channel that sends nothing is ready): its sid and status,
-- its outbox entry gone, and the verification's next timer (the expiry or the delivery
-- deadline, whichever comes first), in one step.
local vf, outbox = KEYS[1], KEYS[2]
TIMERS = KEYS[3]
local id, attempt = ARGV[5], ARGV[6]
local kind, status = move_status(vf, attempt, ARGV[7], tonumber(ARGV[8]), '', ARGV[9])
redis.call('ZREM', outbox, id .. ':' .. attempt)
if kind ~= 'not_found' and is_pending(vf) then set_next_timer(vf) end
-- Kind and status only, not the record (prelude reply()): the sender, its only caller, needs none,
-- and the record answered and decoded on every send cost it 0.03-0.1 ms of CPU per send in-process.
return {kind, status or '', NOW_S}
