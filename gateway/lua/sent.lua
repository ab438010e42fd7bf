-- KEYS: vf, outbox, timers. ARGV[5..]: verification id, attempt, status, rank, carrier sid ('' none)
-- The carrier took an attempt (or a channel that sends nothing is ready): its sid and status,
-- its outbox entry gone, and the verification's next timer (the expiry or the delivery
-- deadline, whichever comes first), in one step.
local vf, outbox = KEYS[1], KEYS[2]
TIMERS = KEYS[3]
local id, attempt = ARGV[5], ARGV[6]
local kind, status = move_status(vf, attempt, ARGV[7], tonumber(ARGV[8]), '', ARGV[9])
redis.call('ZREM', outbox, id .. ':' .. attempt)
if kind ~= 'not_found' and is_pending(vf) then
  set_next_timer(vf)
  -- A text the carrier took is never sent again (its entry left the outbox; a resend is a new
  -- attempt), so its code is needed only as the digest a check compares: the encrypted copy goes
  -- (one copy of the code less, and ~50 bytes of every pending record). A call keeps it: the IVR
  -- reads the code out while the call lasts.
  local channel = hget(vf, 'a' .. attempt .. ':ch')
  if (channel == 'sms' or channel == 'sms_reply') and hget(vf, 'n') == attempt then redis.call('HDEL', vf, 'enc') end
end
-- Kind and status only, not the record (prelude reply()): the sender, its only caller, needs none,
-- and the record answered and decoded on every send cost it 0.03-0.1 ms of CPU per send in-process.
return {kind, status or '', NOW_S}
