-- KEYS: a schedule (the timers). ARGV[5..]: member, the due time its claim gave it (claim.lua),
-- its next due time ('' = none: drop it)
-- A claimed member's next due time, written only while it still holds its claim's lease: a script
-- that set it meanwhile (advance.lua's new attempt, set_next_timer in sent.lua or set_code.lua,
-- finish() dropping it, another claim) knew of a later change than the run that held the claim,
-- so its time stays. Answers 1 when written, 0 when left.
local schedule, member = KEYS[1], ARGV[5]
local score = redis.call('ZSCORE', schedule, member)
if not score or tonumber(score) ~= tonumber(ARGV[6]) then return 0 end
if ARGV[7] == '' then
  redis.call('ZREM', schedule, member)
else
  redis.call('ZADD', schedule, ARGV[7], member)
end
return 1
